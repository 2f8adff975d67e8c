"""``python -m fairseq_partitioned``: report the plugin and the fairseq it found."""
import torch

from . import fairseq_distribution

if __name__ == "__main__":
    dist, version = fairseq_distribution()
    print(f"fairseq_partitioned 0.1.0 on {dist} {version}, torch {torch.__version__}")
