"""What the scripts say and read on the console: progress, a one-line error, a log's tail, tables, --seeds.

Every script of scripts/ says these the same way: ``PROG: what`` before each step, ``PROG: error:
message`` as the last line of a failure (after the tail of the log that explains it), tables in aligned
plain-text columns on the console and as markdown in the reports, a mean over seeds as "mean (std)".
"""
import argparse
import collections
import logging
import os
import statistics
import sys
import warnings
from typing import List, Sequence

LOG_TAIL_LINES = 40
# fairseq's import tells everyone, at INFO, to install tensorboardX (used by none of these scripts)
logging.getLogger("fairseq.tasks.text_to_speech").setLevel(logging.WARNING)


# third-party warnings these scripts are known to trigger, none of them about what a user did: hydra's
# deprecations when fairseq parses a command line, torch's notes on fairseq's data loader, attention and
# autocast
KNOWN_WARNINGS = (r"\s*The version_base parameter", r"\s*'config' is validated against ConfigStore",
                  r"\s*The strict flag in the compose API", "Support for mismatched key_padding_mask",
                  "hydra.experimental.",
                  "In 'config': Usage of deprecated keyword in package header", "'pin_memory' argument is set as true",
                  r"`torch.cuda.amp.autocast\(args...\)` is deprecated")


def quiet_third_party():
    """Hide KNOWN_WARNINGS and fairseq's INFO lines (its imports set the root logger to INFO) in this
    process: for a script whose main loads models itself. Its main calls it; never done on import."""
    for message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    import fairseq.tasks  # noqa: F401  (its import sets the root logger to INFO: first, then ours)

    logging.getLogger().setLevel(logging.WARNING)


def shown(path: str) -> str:
    """A path as a user reads it on the console: relative to the working directory when inside it."""
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


def fail(prog: str, message: str):
    """Exit (status 1) with one line: ``PROG: error: message``."""
    sys.exit(f"{prog}: error: {message}")


def log_tail(log: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file ("" if there is none)."""
    try:
        with open(log, errors="replace") as f:
            return "".join(collections.deque(f, maxlen=lines))
    except FileNotFoundError:
        return ""


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned plain-text columns, a rule under the header: the first column (the row's name)
    left-aligned, the others (numbers) right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(row) for row in rows])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table (the reports' study.md, ladder.md)."""
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                      + ["| " + " | ".join(row) + " |" for row in rows])


def mean_std(values: Sequence[float]) -> str:
    """The mean over seeds, and the sample standard deviation in parentheses when there are two or more."""
    return f"{statistics.mean(values):.2f}" + (f" ({statistics.stdev(values):.2f})" if len(values) > 1 else "")


def seed_list(text: str) -> List[int]:
    """--seeds: comma-separated integers (an argparse type)."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers, got {text!r}")
    if not seeds:
        raise argparse.ArgumentTypeError("is empty")
    return seeds
