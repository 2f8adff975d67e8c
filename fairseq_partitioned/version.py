"""Which fairseq distribution this plugin runs on (the fork fairseq-fixed, or fairseq itself)."""
from importlib import metadata
from typing import Tuple


def fairseq_distribution() -> Tuple[str, str]:
    for dist in ("fairseq-fixed", "fairseq"):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    import fairseq

    return "fairseq (unpackaged)", getattr(fairseq, "__version__", "unknown")
