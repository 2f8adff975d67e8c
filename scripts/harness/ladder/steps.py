"""What each step of a C-GaP run keeps: the new mask's share of grown weights, valid loss dense and at S.

Used by the ladder's report (harness/ladder/report.py, ``gap_ladder.py --report-only``). A run
directory holds a C-GaP run split into processes, one per step (scripts/gap_ladder.py:
checkpoints/stepK/checkpoint_last.pt). For every step k, from the checkpoint at its end (the model at S,
with the grown partition's dense values set aside in it):

- ``grown share``: of the weights that the end-of-step magnitude prune keeps in the grown partition, the
  share that the step grew (outside the partition's mask before the step: the mask of step k-1's
  checkpoint; for step 0, the run's random initial mask, drawn again from ``--seed``);
- ``valid dense``: the valid loss (bits per token, label-smoothed, as fairseq-train logs it) of the model
  as the step ended, its partition dense;
- ``valid at S``: the same after the prune (the checkpoint's model), and ``lost``: the difference.
"""
import glob
import math
import os
import re
from typing import TYPE_CHECKING, Dict, List

if TYPE_CHECKING:
    import torch


def grown_share(new: Dict[str, "torch.Tensor"], before: Dict[str, "torch.Tensor"]) -> float:
    """Of the weights the new masks keep, the share the old masks did not hold (bool masks by name)."""
    kept = sum(int(new[n].sum()) for n in new)
    grown = sum(int((new[n] & ~before[n]).sum()) for n in new)
    return grown / max(1, kept)


def step_checkpoints(run_dir: str) -> List[str]:
    found = glob.glob(os.path.join(run_dir, "checkpoints", "step*", "checkpoint_last.pt"))
    return sorted(found, key=lambda p: int(re.search(r"step(\d+)", p).group(1)))


def initial_masks(state: dict) -> Dict[str, "torch.Tensor"]:
    """The random masks a run from scratch starts with (GrowAndPrune.build_model), drawn again."""
    import torch

    from fairseq_partitioned import checkpoints
    from fairseq_partitioned.pruning import random_masks

    task = state["cfg"]["task"]
    shapes = {name: mask.shape for name, mask in checkpoints.masks(state["model"]).items()}
    return random_masks(shapes, task["gap_sparsity"], str(task["gap_distribution"]), str(task["gap_granularity"]),
                        torch.Generator().manual_seed(int(state["cfg"]["common"]["seed"])))


class ValidLoss:
    """The valid loss of model states of one architecture, as fairseq-train's validation computes it."""

    def __init__(self, checkpoint: str, data: str):
        from harness import in_process

        model, cfg, self.task = in_process.from_checkpoint(checkpoint, data)
        self.model = model.eval()
        self.criterion = self.task.build_criterion(cfg.criterion)
        subset = cfg.dataset.valid_subset.split(",")[0]
        self.task.load_dataset(subset)
        from fairseq import utils

        self.batches = list(self.task.get_batch_iterator(  # as fairseq's Trainer.get_valid_iterator
            dataset=self.task.dataset(subset), max_tokens=cfg.dataset.max_tokens_valid,
            max_sentences=cfg.dataset.batch_size_valid,
            max_positions=utils.resolve_max_positions(self.task.max_positions(), self.model.max_positions()),
            ignore_invalid_inputs=cfg.dataset.skip_invalid_size_inputs_valid_test,
            required_batch_size_multiple=cfg.dataset.required_batch_size_multiple, seed=cfg.common.seed,
            num_workers=0, epoch=1, skip_remainder_batch=False,
        ).next_epoch_itr(shuffle=False))

    def __call__(self, model_state) -> float:
        import torch

        self.model.load_state_dict(model_state, strict=True)
        loss = size = 0.0
        with torch.no_grad():
            for sample in self.batches:
                _, sample_size, log = self.criterion(self.model, sample)
                loss, size = loss + float(log["loss"]), size + sample_size
        return loss / size / math.log(2)


def analyse(run_dir: str, data: str) -> List[dict]:
    from fairseq_partitioned import checkpoints

    paths = step_checkpoints(run_dir)
    if not paths:
        return []
    valid = ValidLoss(paths[0], data)
    rows, before = [], None
    for k, path in enumerate(paths):
        state = checkpoints.load(path)
        masks = checkpoints.masks(state["model"])
        grown = sorted((checkpoints.gap_state(state) or {}).get("set_aside", {}))
        before = before if before is not None else initial_masks(state)
        dense, at_s = valid(checkpoints.with_set_aside(state)), valid(checkpoints.without_legacy_state(state["model"]))
        rows.append({"step": k, "matrices": len(grown),
                     "grown_share": grown_share({n: masks[n] for n in grown}, {n: before[n] for n in grown}),
                     "valid_dense": dense, "valid_at_s": at_s, "lost": at_s - dense})
        before = masks
        print(f"gap-ladder: {run_dir}, step {k}: {rows[-1]['grown_share']:.3f} of the kept weights grown, valid loss "
              f"{dense:.3f} dense, {at_s:.3f} at S", flush=True)
    return rows
