"""Where a run's outputs live, whether one of its steps is done, and the JSON records the scripts keep.

- A run's folder: OUTPUT/NAME/seedN/ (``run_dir``), NAME a run of the papers' tables, a row of the study or
  an arm of the GaP ladder.
- A step (``runner.Job``: a training, a prune, a translation) is done when its marker exists, an empty file
  beside its log (``marker``); a training's marker names its length, so one trained further runs again.
  reproduce.py, the study, the ladder and the quickstart all resume by it.
- A record is a JSON file, written whole or not at all (an interrupted write leaves the previous one) and
  read back as ``default`` when it is absent or cut short: reproduce.py's run.json, the study's
  invocations.json and run records (docs/study-records/), the ladder's ladder.json (docs/gap-ladder.json),
  steps.json and run records (harness/ladder/records.py). ``record_invocation`` keeps the invocations.json of the study and of the ladder.

Importing this module needs neither fairseq nor torch.
"""
import fcntl
import json
import os
import subprocess
import threading
from typing import Optional

from harness.recipe import ROOT

INVOCATIONS = "invocations.json"


def run_dir(output: str, name: str, seed: int) -> str:
    return os.path.join(output, name, f"seed{seed}")


# ------------------------------------------------------------------------------------------ steps


def marker(log: str, updates: Optional[int] = None) -> str:
    """The file that says the step writing ``log`` succeeded (a training's names its length)."""
    length = f"-{updates}" if updates else ""
    return os.path.join(os.path.dirname(log), f".done-{os.path.basename(log)}{length}")


def done(log: str, updates: Optional[int] = None) -> bool:
    return os.path.isfile(marker(log, updates))


def mark_done(log: str, updates: Optional[int] = None):
    open(marker(log, updates), "w").close()


# ---------------------------------------------------------------------------------------- records


def read_record(path: str, default=None):
    """The JSON record at ``path``; ``default`` ({} unless given) if there is none or it is unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return {} if default is None else default


def write_record(path: str, record):
    """Write the record whole (indented one space, a final newline), replacing the previous one at once; the
    temporary file is this process's and thread's own, so two writers of one record never write into one file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}-{threading.get_ident()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    finally:  # a write cut short (Ctrl-C, a record that is not JSON) leaves no file of its own behind
        if os.path.exists(tmp):
            os.remove(tmp)


def read_invocations(output: str) -> list:
    return read_record(os.path.join(output, INVOCATIONS), default=[])


def record_invocation(output: str, entry: dict):
    """Add the invocation to OUTPUT/invocations.json, or update it (the same ``date`` and ``command``): it is
    recorded when it starts, after every command and every 5 minutes, so an interrupted one keeps its time so far.
    Invocations that run at the same time on one OUTPUT take turns (a lock on OUTPUT/invocations.json.lock), so
    none reads the file while another rewrites it and drops the other's entry."""
    same = lambda e: (e["date"], e["command"]) == (entry["date"], entry["command"])  # noqa: E731
    path = os.path.join(output, INVOCATIONS)
    os.makedirs(output, exist_ok=True)
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        entries = sorted([e for e in read_invocations(output) if not same(e)] + [entry], key=lambda e: e["date"])
        write_record(path, entries)


def checkout_commit() -> Optional[str]:
    """The commit of the code that runs (``+changes`` when the checkout has uncommitted changes); None outside git."""
    def git(*args):
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True)

    head = git("rev-parse", "HEAD")
    if head.returncode:
        return None
    return head.stdout.strip() + ("+changes" if git("status", "--porcelain", "--untracked-files=no").stdout.strip() else "")
