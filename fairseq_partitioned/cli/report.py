"""fairseq-partitioned-report: the sparsity of every prunable matrix of a checkpoint.

    fairseq-partitioned-report CKPT [--prunable REGEX] [--all]

For a GaP checkpoint the masks say what is pruned; for any other checkpoint (dense, exported, ATS),
the exact zeros of the weights do. ``--all`` lists every 2-d weight, not only the prunable ones.
"""
import argparse
import sys

from .. import checkpoints
from ..pruning import format_table, prunable_names, sparsity_table


def sparsity_rows(path: str, prunable=None, every_matrix=False):
    model = checkpoints.load(path)["model"]
    masks = checkpoints.masks(model)
    if masks and not every_matrix:
        return sparsity_table(masks)
    if every_matrix:
        names = [k for k, v in model.items() if hasattr(v, "dim") and v.dim() == 2 and not k.endswith(".mask")]
    else:
        names = prunable_names(list(model), prunable, flag="--prunable")
    return sparsity_table({n: model[n] for n in names})


def cli_main(argv=None):
    parser = argparse.ArgumentParser(prog="fairseq-partitioned-report", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--prunable", default=None, help="regex over weight names (default: attention and FFN)")
    parser.add_argument("--all", action="store_true", help="every 2-d weight")
    args = parser.parse_args(argv)
    try:
        rows = sparsity_rows(args.checkpoint, args.prunable, args.all)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"fairseq-partitioned-report: error: {e}")
    print(format_table(rows))


if __name__ == "__main__":
    cli_main()
