"""What the scripts read back from a fairseq-train log written with ``--log-format json``.

Every progress, validation and end-of-epoch line of such a log ends in one JSON record (``valid_loss``,
``valid_num_updates``, ``train_num_updates``, ``num_updates``, ... as strings or numbers); the study, the
GaP ladder and the runner's progress lines read these records here. A line cut short or not JSON is
skipped. Importing this module needs neither fairseq nor torch.
"""
import datetime
import json
import os
import re
from typing import Iterable, Iterator, List, Optional, Tuple

from harness import console


def records(lines: Iterable[str], containing: str = "") -> Iterator[dict]:
    """The JSON record of every line that has one (and holds the text ``containing``)."""
    for line in lines:
        start = line.find("{")
        if start < 0 or containing not in line:
            continue
        try:
            yield json.loads(line[start:])
        except json.JSONDecodeError:
            continue


STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \|")


def wall_seconds(lines: Iterable[str]) -> Tuple[Optional[float], int]:
    """The wall time of a training and its number of invocations: a resumed run's log holds one invocation per
    start, each headed by its command line (``# ...``), and fairseq's own ``wall`` restarts from 0 on resume.
    The sum, over the invocations, of the time from the first to the last timestamped line (None: no line)."""
    spans, first, last = [], None, None
    for line in list(lines) + ["#"]:
        if line.startswith("#"):
            if first is not None:
                spans.append((last - first).total_seconds())
            first = last = None
            continue
        stamp = STAMP.match(line)
        if stamp:
            last = datetime.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")
            first = first or last
    return (sum(spans) if spans else None), len(spans)


def valid_losses(log: str, key: str = "valid_loss") -> List[Tuple[int, float]]:
    """(update, ``key``) of every validation in a fairseq-train JSON log (none if there is no log)."""
    if not os.path.isfile(log):
        return []
    with open(log, errors="replace") as f:
        points = [(int(r["valid_num_updates"]), float(r[key])) for r in records(f, "valid_loss")
                  if key in r and "valid_num_updates" in r]
    return sorted(dict(points).items())


def updates_per_epoch(log: str):
    """Updates in the first epoch of a training (its end-of-epoch record); None before it ends."""
    if not os.path.isfile(log):
        return None
    with open(log, errors="replace") as f:
        return next((int(r["train_num_updates"]) for r in records(f, '"train_num_updates"') if r.get("epoch") == 1), None)


def updates_done(log: str) -> int:
    """The last update count a training log reports (for the progress lines)."""
    found = [r["num_updates"] for r in records(console.log_tail(log, 200).splitlines(), '"num_updates": "')]
    return int(found[-1]) if found else 0
