"""The plugin's errors for a user's mistake (a flag, a file), shown as one line.

``UsageError`` is a ``ValueError`` (callers that catch ``ValueError`` still do). The plugin's own console
scripts catch it and exit with ``PROG: error: MESSAGE``. ``fairseq-train`` and ``fairseq-generate`` are
fairseq's: the exception leaves their ``main`` and Python would print its traceback, 25 lines of fairseq
frames above the one line that says what to fix. So, when the plugin is imported, a ``sys.excepthook``
is installed that prints a ``UsageError`` that nothing caught as that one line (exit status 1, as for
any uncaught exception); every other exception goes to the hook there was before, traceback and all.
Nothing else of fairseq or Python changes. (A run that fairseq spawns one process per GPU for gets the
error back from torch's process wrapper, which prints the child's traceback.)
"""
import os
import sys


class UsageError(ValueError):
    """A flag or file of the user's that cannot work: the message says which, and what to do."""


class MissingCheckpoint(UsageError, FileNotFoundError):
    """A checkpoint file that is not there."""


class UnreadableCheckpoint(UsageError):
    """A checkpoint file that torch cannot read (cut short by a kill or a full disk, or not a checkpoint)."""

    path: str = ""
    reason: str = ""  # what torch said

    @classmethod
    def at(cls, path: str, reason: str, advice: str = None) -> "UnreadableCheckpoint":
        advice = advice or "it was cut short (a kill or a full disk while it was written) or is not a checkpoint"
        error = cls(f"cannot read checkpoint {path} ({reason}): {advice}")
        error.path, error.reason = path, reason  # (kept when pickled, as an exception's __dict__ is)
        return error


class UntrustedCheckpoint(UsageError):
    """A checkpoint that holds more than tensors and plain values: torch's weights-only loading refuses it."""


def program_name(argv0: str) -> str:
    """``fairseq-train`` for ``.../fairseq_cli/train.py`` (``python -m fairseq_cli.train``), else the
    script's own name."""
    head, name = os.path.split(argv0)
    if os.path.basename(head) == "fairseq_cli" and name.endswith(".py"):
        return "fairseq-" + name[: -len(".py")]
    return name or "python"


def _one_line_hook(previous):
    def hook(kind, error, traceback):
        if isinstance(error, UsageError):
            sys.stdout.flush()  # fairseq logs to stdout: what it said comes first in a log of both
            print(f"{program_name(sys.argv[0] if sys.argv else '')}: error: {error}", file=sys.stderr, flush=True)
        else:
            previous(kind, error, traceback)

    hook.one_line_usage_errors = True  # installed once, however often the plugin is imported
    return hook


def install_excepthook():
    if not getattr(sys.excepthook, "one_line_usage_errors", False):
        sys.excepthook = _one_line_hook(sys.excepthook)
