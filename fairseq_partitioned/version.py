"""This plugin's version (setup.py reads it from here), and the fairseq distribution it runs on."""
from importlib import metadata
from typing import Tuple

__version__ = "0.2.0"


def fairseq_distribution() -> Tuple[str, str]:
    """The fork fairseq-fixed, or fairseq itself: (distribution, version)."""
    for dist in ("fairseq-fixed", "fairseq"):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    import fairseq

    return "fairseq (unpackaged)", getattr(fairseq, "__version__", "unknown")
