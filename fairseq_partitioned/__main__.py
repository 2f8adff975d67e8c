"""``python -m fairseq_partitioned``: report the plugin and the fairseq it found."""
import torch

from .version import __version__, fairseq_distribution

if __name__ == "__main__":
    dist, version = fairseq_distribution()
    print(f"fairseq_partitioned {__version__} on {dist} {version}, torch {torch.__version__}")
