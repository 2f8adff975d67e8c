"""Files generated from the tables' definitions and committed (configs/, paper-tables/): written, or checked.

Importing this module needs neither fairseq nor torch.
"""
import os
from typing import Iterable, List, Tuple


def write_or_check(files: Iterable[Tuple[str, str]], check: bool, mode: int = 0o644) -> List[str]:
    """Write each (path, text) (printing its path), or with ``check`` only compare: the paths whose file
    differs from its text, or is missing."""
    stale = []
    for path, text in files:
        if check:
            if not os.path.isfile(path) or _read(path) != text:
                stale.append(path)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        print(path)
    return stale


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()
