"""fairseq-partitioned-prune: the prune-from-dense baseline of GaP (Ma et al., appendix B.5).

    fairseq-partitioned-prune DENSE.pt --sparsity 0.9 [--distribution uniform] [--granularity
        unstructured] [--prunable REGEX] --output PRUNED.pt

One-shot magnitude pruning of a dense checkpoint (fairseq's ``translation`` task or this plugin's) to
the target sparsity. The output is a checkpoint of ``translation_with_partitioned_model`` with the
GaP masks; fine-tune it with fixed masks:

    fairseq-train ... --task translation_with_partitioned_model --gap-sparsity 0.9 \\
        --finetune-from-model PRUNED.pt

(``--finetune-from-model``: a relaunched fine-tune resumes from its own checkpoint_last.pt; ``--restore-file
PRUNED.pt`` with the four ``--reset-*`` flags trains the same but starts over from PRUNED.pt when relaunched.)
"""
import argparse
import sys

from .. import checkpoints
from ..errors import UsageError
from ..pruning import DISTRIBUTIONS, PruningFlags, PruningSpec, format_table, prune, sparsity_table

# this script's names of the pruning options (it has no --block-score: blocks score l1, the task's default)
FLAGS = PruningFlags("--sparsity", "--distribution", "--granularity", "--block-score", "--prunable")


def prune_checkpoint(path: str, sparsity: float, output: str, distribution="uniform",
                     granularity="unstructured", prunable=None) -> dict:
    # checked before the checkpoint is read
    spec = PruningSpec.of(sparsity, distribution, granularity, prunable=prunable, flags=FLAGS)
    state = checkpoints.load(path)
    model = state["model"]
    if checkpoints.masks(model):
        raise UsageError(f"{path} already holds GaP masks: prune a dense checkpoint")
    if checkpoints.task_state(state).get("partition"):
        raise UsageError(f"{path} is an ATS checkpoint: export it first (fairseq-partitioned-export --level full)")
    names = spec.prunable_names(list(model))
    if not names:
        raise UsageError(f"--prunable matches no weight of {path}")
    checkpoints.set_masks(model, prune({n: model[n].float() for n in names}, spec))
    checkpoints.as_partitioned_task(
        state, gap_sparsity=sparsity, gap_distribution=distribution, gap_granularity=granularity,
        gap_prunable=prunable, alternate=False, gap_steps=0,
    )
    state.pop("last_optimizer_state", None)  # moments of the dense model: the fine-tune starts afresh
    state["task_state"] = {
        **checkpoints.task_state(state),
        "gap": {"sparsity": sparsity, "prunable": names, "grown": {}, "set_aside": {}},
        "counts": checkpoints.sparse_counts(model),
    }
    checkpoints.save(state, output)
    return {n: model[n] for n in names}


def cli_main(argv=None):
    parser = argparse.ArgumentParser(prog="fairseq-partitioned-prune", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a dense checkpoint")
    parser.add_argument("--sparsity", type=float, required=True, help="target sparsity S in [0, 1)")
    parser.add_argument("--distribution", default="uniform", choices=list(DISTRIBUTIONS),
                        help="how S is spread: uniform = S in every matrix, non-uniform = S overall by one threshold")
    parser.add_argument("--granularity", default="unstructured",
                        help="what one pruning decision removes: unstructured, block-1x8 or 2:4")
    parser.add_argument("--prunable", default=None,
                        help="which weights are pruned: a regex over weight names (default: attention and FFN)")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    try:
        pruned = prune_checkpoint(args.checkpoint, args.sparsity, args.output, args.distribution,
                                  args.granularity, args.prunable)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"fairseq-partitioned-prune: error: {e}")
    print(format_table(sparsity_table(pruned)))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    cli_main()
