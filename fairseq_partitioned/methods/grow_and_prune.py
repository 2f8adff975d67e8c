"""GaP, scheduled grow-and-prune (Ma et al., ICLR 2022, Algorithms 1-2), and fixed-mask sparse training.

The prunable weights become ``MaskedLinear`` layers with random masks at exactly the target sparsity S
(Algorithm 1 line 1, seeded by ``--seed``). C-GaP (``--alternate``): step k (``GapSchedule``) grows one
partition dense and prunes the one grown before back to S by magnitude (lines 5-7); after K steps the
last dense partition is pruned and the model fine-tuned with fixed masks (lines 10-12). A P-GaP worker
(``--gap-grow-partition i``) grows partition i for its whole run; without ``--alternate`` the masks are
fixed. The update mask of every update is the current masks: the optimizer trains exactly the elements
they keep, and every transition tells it which elements changed (``zero_outside_``), so a pruned weight
is exactly zero and a grown one starts at zero with fresh moments.

Validation during C-GaP sees the model as it would be after pruning its dense partition: the dense
values are set aside (``set_aside``, with their masks), the partition is pruned, and the next update
either puts them back (the step goes on) or keeps the prune (a new step began: it is line 6 anyway).
So every validation, fairseq's ``checkpoint_best.pt``, and every checkpoint written after a validation,
hold a sparse model; the set-aside values travel in the checkpoint's task state, so a run interrupted
there resumes exactly.

The method's state: ``grown`` (prunable weight -> the step that grew it dense; ``WORKER_STEP`` for a
P-GaP worker) and ``set_aside``, saved with the sparsity and the prunable weights as ``task_state["gap"]``.
"""
import logging
from typing import Dict, List, Optional

import torch

from ..checkpoints import config_value, gap_state, masks as checkpoint_masks
from ..modules.masked_linear import mask_layers, masked_layers
from ..optim import find_partitioned_optimizer
from ..pruning import (
    DEFAULT_PRUNABLE,
    check_options,
    parse_granularity,
    partition_names,
    prunable_names,
    prune_to,
    random_masks,
    transformer_partitions,
)
from ..pruning.granularity import unit_width
from ..schedules import GapSchedule
from .base import TrainingMethod

logger = logging.getLogger(__name__)

WORKER_STEP = -1  # the "step" of a P-GaP worker, which grows one partition for its whole run
RESUME_CHECKED = ["gap_sparsity", "gap_partitions", "gap_distribution", "gap_granularity", "gap_prunable"]
RESUME_CHECKED_CGAP = ["gap_steps", "gap_step_epochs", "gap_step_updates", "gap_partition_strategy"]


def check_gap_config(cfg):
    """One-line errors for GaP flags that cannot work, before anything is built."""
    if not 0 <= cfg.gap_sparsity < 1:
        raise ValueError(f"--gap-sparsity must be in [0, 1), got {cfg.gap_sparsity}")
    if cfg.gap_sparsity == 0:
        return
    check_options(cfg.gap_sparsity, cfg.gap_distribution, cfg.gap_granularity)
    if cfg.max_level is not None:
        raise ValueError("--gap-sparsity trains a sparse Transformer: it cannot be combined with --max-level")
    if cfg.gap_partitions < 1:
        raise ValueError(f"--gap-partitions must be >= 1, got {cfg.gap_partitions}")
    if cfg.gap_step_epochs < 0 or cfg.gap_step_updates < 0 or cfg.gap_steps < 0 or cfg.gap_finetune_epochs < 0:
        raise ValueError("--gap-step-epochs, --gap-step-updates, --gap-steps and --gap-finetune-epochs must be >= 0")
    if cfg.alternate:
        if cfg.gap_grow_partition >= 0:
            raise ValueError("--gap-grow-partition (a P-GaP worker) cannot be combined with --alternate (C-GaP)")
        if cfg.gap_steps < 1:
            raise ValueError("C-GaP (--alternate --gap-sparsity) needs --gap-steps K >= 1")
        if (cfg.gap_step_epochs > 0) == (cfg.gap_step_updates > 0):
            raise ValueError("C-GaP needs exactly one of --gap-step-epochs T and --gap-step-updates N")
        if cfg.gap_step_epochs > 0 and cfg.gap_finetune_epochs > 0:
            total = cfg.gap_steps * cfg.gap_step_epochs + cfg.gap_finetune_epochs
            if config_value(cfg, "max_epoch", 0) != total:
                raise ValueError(
                    f"--gap-steps {cfg.gap_steps} x --gap-step-epochs {cfg.gap_step_epochs} + "
                    f"--gap-finetune-epochs {cfg.gap_finetune_epochs} = {total} epochs: set --max-epoch {total}"
                )
        scheduler = config_value(cfg, "lr_scheduler_name")
        if scheduler is not None and scheduler != "gap_inverse_sqrt":
            logger.warning(
                f"--lr-scheduler {scheduler} does not restart at each GaP step (GaP appendix B); "
                "--lr-scheduler gap_inverse_sqrt does"
            )
    elif cfg.gap_steps > 0:
        raise ValueError("--gap-steps needs --alternate (C-GaP); without it the masks are fixed")


class GrowAndPrune(TrainingMethod):
    name = "gap"

    def __init__(self, cfg, seed: int, evaluated: Optional[dict] = None):
        """``evaluated``: the GaP state of a checkpoint to evaluate (``cfg`` then need not be GaP's)."""
        self.cfg = cfg
        self.seed = seed
        self.evaluated = evaluated
        self.schedule: Optional[GapSchedule] = None
        self.names: List[str] = list(evaluated["prunable"]) if evaluated else []  # model order
        self.epoch = 1
        self.grown: Dict[str, int] = {}  # prunable weight -> the step that grew it dense
        self.set_aside: Dict[str, Dict[str, torch.Tensor]] = {}  # dense values kept while validating pruned
        self._valid_sparsity: Optional[float] = None  # of the model being validated
        self._layers_of = None  # (model, {name: MaskedLinear})
        self._update_mask_of = None  # (model, update mask)
        self._index_of = None  # (model, {prunable name: index among the trainable parameters})

    @property
    def cgap(self) -> bool:
        return self.schedule is not None and self.schedule.steps > 0

    # ------------------------------------------------------------------------------ build
    def resume_from(self, path, checkpoint):
        """Resuming GaP: the checkpoint must hold masks, made with the same GaP configuration; the
        schedule position and the set-aside values come from it."""
        if not checkpoint_masks(checkpoint.get("model", {})):
            raise ValueError(
                f"checkpoint {path} has no GaP masks: prune a dense checkpoint first with "
                "fairseq-partitioned-prune, or train from scratch"
            )
        cfg = self.cfg
        saved = (checkpoint.get("cfg") or {}).get("task") or {}
        fields = RESUME_CHECKED + (RESUME_CHECKED_CGAP if saved.get("alternate") and cfg.alternate else [])
        for name in fields:
            if name in saved and str(saved[name]) != str(getattr(cfg, name)):
                flag = "--" + name.replace("_", "-")
                raise ValueError(
                    f"checkpoint {path} was trained with {flag} {saved[name]}, but this run uses {flag} "
                    f"{getattr(cfg, name)}"
                )
        self.load_state_dict({"gap": gap_state(checkpoint)})

    def build_model(self, model, from_checkpoint):
        if from_checkpoint and self.evaluated is not None:  # evaluating: the masks come with the checkpoint
            return mask_layers(model, self.names)
        cfg = self.cfg
        self.names = prunable_names([n for n, _ in model.named_parameters()], cfg.gap_prunable)
        if not self.names:
            raise ValueError(f"--gap-prunable {cfg.gap_prunable or DEFAULT_PRUNABLE!r} matches no weight of the model")
        mask_layers(model, self.names)
        encoder_layers = len(getattr(getattr(model, "encoder", None), "layers", []))
        decoder_layers = len(getattr(getattr(model, "decoder", None), "layers", []))
        layers = transformer_partitions(encoder_layers, decoder_layers, cfg.gap_partitions)
        partitions = partition_names(self.names, layers)
        if cfg.gap_grow_partition >= len(partitions):
            raise ValueError(f"--gap-grow-partition {cfg.gap_grow_partition}: there are {len(partitions)} partitions")
        self.schedule = GapSchedule(
            partitions=partitions,
            steps=cfg.gap_steps if cfg.alternate else 0,
            step_epochs=cfg.gap_step_epochs,
            step_updates=cfg.gap_step_updates,
            strategy=str(cfg.gap_partition_strategy),
            seed=self.seed,
            grow_partition=cfg.gap_grow_partition,
        )
        layers_by_name = self._layers(model)
        generator = torch.Generator().manual_seed(self.seed)
        masks = random_masks(
            {n: m.weight.shape for n, m in layers_by_name.items()},
            cfg.gap_sparsity, str(cfg.gap_distribution), str(cfg.gap_granularity), generator,
        )
        for name, layer in layers_by_name.items():
            layer.set_mask_(masks[name].to(layer.weight.device))
        total = sum(m.mask.numel() for m in layers_by_name.values())
        logger.info(
            f"GaP: {len(self.names)} prunable matrices ({total:,} weights) in {len(partitions)} partitions "
            f"of {[len(p) for p in partitions]} matrices, random masks at sparsity {cfg.gap_sparsity}"
        )
        return model

    def _layers(self, model) -> Dict[str, "torch.nn.Module"]:
        """Prunable weight name -> its MaskedLinear (looked up once per model: used at every step)."""
        model = getattr(model, "module", model)  # a data-parallel wrapper
        if self._layers_of is None or self._layers_of[0] is not model:
            self._layers_of = (model, masked_layers(model, self.names))
        return self._layers_of[1]

    # --------------------------------------------------------------------------- training
    def begin_epoch(self, epoch, model):
        self.epoch = epoch

    def step_key(self, num_updates: int) -> Optional[int]:
        if self.schedule.grow_partition >= 0:
            return WORKER_STEP
        return self.schedule.step_at(self.epoch, num_updates)

    def begin_update(self, model, optimizer, update_num):
        """Bring the masks to what the schedule wants for update ``update_num`` (idempotent)."""
        key = self.step_key(update_num)
        dense = set(self.schedule.dense_at(key)) if key is not None else set()
        layers = self._layers(model)
        changed, kept_prunes = [], []
        for name in list(self.set_aside):  # pruned for a validation
            if name in dense and self.grown.get(name) == key:
                self._restore(layers[name], self.set_aside.pop(name))  # the step goes on
            else:
                del self.set_aside[name]  # a new step: the prune was Algorithm 1 line 6
                self.grown.pop(name, None)
                kept_prunes.append(name)
        changed += kept_prunes
        to_prune = [n for n in self.names if n in self.grown and (n not in dense or self.grown[n] != key)]
        if to_prune:
            for name, mask in self._pruned_masks(layers, to_prune).items():
                layers[name].set_mask_(mask)
                del self.grown[name]
            changed += to_prune
        to_grow = [n for n in self.names if n in dense and self.grown.get(n) != key]
        for name in to_grow:
            layers[name].set_mask_(torch.ones_like(layers[name].mask))
            self.grown[name] = key
        changed += to_grow
        if changed:
            self._tell_optimizer(model, optimizer, layers, changed)
            where = "fine-tune" if key is None else ("worker" if key == WORKER_STEP else f"step {key}")
            logger.info(
                f"GaP {where}: pruned {len(to_prune) + len(kept_prunes)}, grew {len(to_grow)} "
                f"of {len(self.names)} matrices"
            )

    @staticmethod
    @torch.no_grad()
    def _restore(layer, kept: Dict[str, torch.Tensor]):
        layer.weight.copy_(kept["weight"])
        layer.mask.copy_(kept["mask"])

    def _pruned_masks(self, layers, names) -> Dict[str, torch.Tensor]:
        """ArgPruneTo of the named (dense) matrices: magnitude masks at the target sparsity.

        uniform: each matrix at exactly S. non-uniform: one magnitude threshold over the named matrices,
        with the count of pruned units chosen so that the whole model is at exactly S (the matrices not
        pruned now keep their masks, Algorithm 1 line 6 prunes one partition only).
        """
        cfg = self.cfg
        sparsity = cfg.gap_sparsity
        if str(cfg.gap_distribution) == "non-uniform":
            width = unit_width(parse_granularity(str(cfg.gap_granularity)))
            total = sum(m.mask.numel() for m in layers.values()) // width
            pruned_elsewhere = sum(int((~m.mask).sum()) for n, m in layers.items() if n not in names) // width
            units = sum(layers[n].mask.numel() for n in names) // width
            budget = min(units - 1, max(0, round(sparsity * total) - pruned_elsewhere))
            sparsity = budget / units
        weights = {n: layers[n].weight.detach() for n in names}
        return prune_to(weights, sparsity, str(cfg.gap_distribution), str(cfg.gap_granularity),
                        current_masks={n: layers[n].mask for n in names})

    def _parameter_index(self, model) -> Dict[str, int]:
        """Prunable weight name -> its position among the trainable parameters (= the optimizer's)."""
        if self._index_of is None or self._index_of[0] is not model:
            position = {id(p): i for i, p in enumerate(p for p in model.parameters() if p.requires_grad)}
            layers = self._layers(model)
            self._index_of = (model, {n: position[id(layers[n].weight)] for n in self.names})
        return self._index_of[1]

    def _tell_optimizer(self, model, optimizer, layers, names):
        """The optimizer's weights (fp16: its fp32 copies) and moments follow the new masks."""
        inner = find_partitioned_optimizer(optimizer)
        if inner is None:
            raise ValueError("GaP grow-and-prune needs --optimizer adam_for_partitioned_model")
        index = self._parameter_index(model)
        inner.zero_outside_({index[n]: layers[n].mask for n in names})

    def update_mask(self, model, update_num):
        """The current masks for the prunable weights (the buffers themselves: they change in place),
        True for every other parameter."""
        if self._update_mask_of is None or self._update_mask_of[0] is not model:
            mask_of = {id(m.weight): m.mask for m in self._layers(model).values()}
            mask = [mask_of.get(id(p), True) for p in model.parameters() if p.requires_grad]
            self._update_mask_of = (model, mask)
        return self._update_mask_of[1]

    # ------------------------------------------------------------------------- validation
    def begin_validation(self, model):
        """C-GaP: validate the model as it would be after pruning its dense partition."""
        layers = self._layers(model)
        dense = [n for n in self.names if n in self.grown and n not in self.set_aside] if self.cgap else []
        for n in dense:
            self.set_aside[n] = {"weight": layers[n].weight.detach().clone(), "mask": layers[n].mask.clone()}
        if dense:
            for n, mask in self._pruned_masks(layers, dense).items():
                layers[n].set_mask_(mask)
        self._valid_sparsity = self.sparsity(model)

    def sparsity(self, model) -> float:
        layers = self._layers(model).values()
        return sum(int((~m.mask).sum()) for m in layers) / max(1, sum(m.mask.numel() for m in layers))

    def valid_step(self, model, criterion, sample):
        return {"gap_sparsity": self._valid_sparsity} if self._valid_sparsity is not None else {}

    def reduce_metrics(self, logging_outputs):
        from fairseq import metrics

        sparsities = [log["gap_sparsity"] for log in logging_outputs if "gap_sparsity" in log]
        if sparsities:
            metrics.log_scalar("sparsity", sum(sparsities) / len(sparsities), 1, round=4)

    def alignment_setup(self, model, params):
        """The masked network is the sparse model itself (x~ = m * x = x); p is the masks."""
        masks_by_weight = {id(m.weight): m.mask for m in self._layers(model).values()}
        masks = [masks_by_weight.get(id(p), True) for p in params]
        return masks, lambda: None, lambda: None

    # ------------------------------------------------------------------------- checkpoint
    def state_dict(self):
        gap = {"sparsity": self.cfg.gap_sparsity, "prunable": list(self.names),
               "grown": dict(self.grown), "set_aside": dict(self.set_aside)}
        if self._layers_of is None:
            return {"gap": gap}
        model, layers = self._layers_of
        pruned = sum(int((~m.mask).sum()) for m in layers.values())
        return {"gap": gap, "counts": {"sparse": sum(p.numel() for p in model.parameters()) - pruned}}

    def load_state_dict(self, state):
        gap = state.get("gap") or {}
        self.grown = dict(gap.get("grown") or {})
        # copies: a checkpoint read lazily maps its file, which the run overwrites when it saves
        self.set_aside = {n: {k: v.clone() for k, v in kept.items()} for n, kept in (gap.get("set_aside") or {}).items()}
