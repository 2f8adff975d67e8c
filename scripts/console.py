"""What the scripts say on the console: progress, a one-line error, a command run into a log, a table.

Every script of scripts/ says these the same way: ``PROG: what`` before each step, ``PROG: error:
message`` as the last line of a failure (after the tail of the log that explains it), tables in aligned
plain-text columns.
"""
import collections
import logging
import os
import shlex
import subprocess
import sys
from typing import Optional, Sequence

LOG_TAIL_LINES = 40
# fairseq's import tells everyone, at INFO, to install tensorboardX (used by none of these scripts)
logging.getLogger("fairseq.tasks.text_to_speech").setLevel(logging.WARNING)


def shown(path: str) -> str:
    """A path as a user reads it on the console: relative to the working directory when inside it."""
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


def fail(prog: str, message: str):
    """Exit (status 1) with one line: ``PROG: error: message``."""
    sys.exit(f"{prog}: error: {message}")


def run_logged(prog: str, what: str, argv: Sequence[str], log: str, env: Optional[dict] = None,
               append: bool = False, stderr_to_console: bool = False):
    """Run ``argv`` with its output into the file ``log``, after ``PROG: what`` on the console.

    The log starts with the command (``append``: a resumed run adds to its log, each attempt marked by
    its command line). If the command fails, the log's last lines go to stderr and the script exits
    with one line that names the step and the log. ``stderr_to_console``: the command's stderr stays on
    the console (fairseq's progress bar), only its stdout goes into the log.
    """
    print(f"{prog}: {what}", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
    with open(log, "a" if append else "w") as f:
        f.write(f"# {prog}: {shlex.join(argv)}\n")
        f.flush()
        stderr = None if stderr_to_console else subprocess.STDOUT
        rc = subprocess.run(list(argv), stdout=f, stderr=stderr, env=env).returncode
    if rc != 0:
        print(log_tail(log), end="", file=sys.stderr)
        fail(prog, f"{what} failed (exit {rc}), log: {log}")


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
