"""GaP inside fairseq's training loop (Ma et al., ICLR 2022, Algorithms 1-2, appendix B).

The task owns one ``GapController``. It makes the prunable weights ``MaskedLinear`` layers with random
masks at the target sparsity (Algorithm 1 line 1), and before every training step brings the masks to
what the schedule wants at that point: the partition of the current step grown dense, the one of the
previous step pruned back by magnitude (lines 5-7), nothing dense in the fine-tune (lines 10-12).
Every transition also applies the new masks to the optimizer's copy of the weights and zeroes the Adam
moments of the elements whose mask changed, so a pruned weight is exactly zero and a grown one starts
at zero with fresh moments. After every backward pass the gradients of masked weights are zeroed.

Validation during C-GaP sees the model as it would be after pruning the dense partition: the dense
values are set aside (``MaskedLinear.stash``), the partition is pruned, and the next training step
either restores them (the step goes on) or keeps the prune (a new step began: it is line 6 anyway).
So every validation, and fairseq's ``checkpoint_best.pt``, is of a sparse model.
"""
import logging
from typing import Dict, List, Optional

import torch
from torch import nn

from ..modules import MaskedLinear
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

logger = logging.getLogger(__name__)

WORKER_STEP = -1  # the "step" of a P-GaP worker, which grows one partition for its whole run


def gap_enabled(cfg) -> bool:
    return cfg.gap_sparsity > 0


def check_gap_config(cfg):
    if not 0 <= cfg.gap_sparsity < 1:
        raise ValueError(f"--gap-sparsity must be in [0, 1), got {cfg.gap_sparsity}")
    if not gap_enabled(cfg):
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
            max_epoch = _get(cfg, "max_epoch", 0)
            if max_epoch != total:
                raise ValueError(
                    f"--gap-steps {cfg.gap_steps} x --gap-step-epochs {cfg.gap_step_epochs} + "
                    f"--gap-finetune-epochs {cfg.gap_finetune_epochs} = {total} epochs: set --max-epoch {total}"
                )
        scheduler = _get(cfg, "lr_scheduler_name", None)
        if scheduler is not None and scheduler != "gap_inverse_sqrt":
            logger.warning(
                f"--lr-scheduler {scheduler} does not restart at each GaP step (GaP appendix B); "
                "--lr-scheduler gap_inverse_sqrt does"
            )
    elif cfg.gap_steps > 0:
        raise ValueError("--gap-steps needs --alternate (C-GaP); without it the masks are fixed")


def _get(cfg, name, default):
    try:
        value = getattr(cfg, name)
    except Exception:  # an interpolation this configuration cannot resolve
        return default
    return default if value is None else value


class GapController:
    def __init__(self, cfg, seed: int):
        self.cfg = cfg
        self.seed = seed
        self.schedule: Optional[GapSchedule] = None
        self.names: List[str] = []  # prunable weight names, model order
        self.epoch = 1
        self._modules_of = None

    # ------------------------------------------------------------------------------ build
    def attach(self, model: nn.Module) -> nn.Module:
        """Make the prunable weights of ``model`` MaskedLinear layers with random masks at S."""
        cfg = self.cfg
        self.names = prunable_names([n for n, _ in model.named_parameters()], cfg.gap_prunable)
        if not self.names:
            raise ValueError(f"--gap-prunable {cfg.gap_prunable or DEFAULT_PRUNABLE!r} matches no weight of the model")
        attach_masks(model, self.names)
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
        modules = self.modules(model)
        generator = torch.Generator().manual_seed(self.seed)
        masks = random_masks(
            {n: m.weight.shape for n, m in modules.items()},
            cfg.gap_sparsity, str(cfg.gap_distribution), str(cfg.gap_granularity), generator,
        )
        for name, module in modules.items():
            module.set_mask_(masks[name].to(module.weight.device))
            module.grown_at = None
        total = sum(m.mask.numel() for m in modules.values())
        logger.info(
            f"GaP: {len(self.names)} prunable matrices ({total:,} weights) in {len(partitions)} partitions "
            f"of {[len(p) for p in partitions]} matrices, random masks at sparsity {cfg.gap_sparsity}"
        )
        return model

    def modules(self, model: nn.Module) -> Dict[str, MaskedLinear]:
        """Prunable weight name -> its MaskedLinear (looked up once per model: called every step)."""
        model = getattr(model, "module", model)  # a data-parallel wrapper
        if self._modules_of is None or self._modules_of[0] is not model:
            found = {n + ".weight": m for n, m in model.named_modules() if isinstance(m, MaskedLinear)}
            self._modules_of = (model, {n: found[n] for n in self.names})
        return self._modules_of[1]

    # --------------------------------------------------------------------------- training
    def step_key(self, num_updates: int) -> Optional[int]:
        if self.schedule.grow_partition >= 0:
            return WORKER_STEP
        return self.schedule.step_at(self.epoch, num_updates)

    def before_train_step(self, model, optimizer, num_updates: int):
        """Bring the masks to what the schedule wants for update ``num_updates`` (idempotent)."""
        key = self.step_key(num_updates)
        dense = set(self.schedule.dense_at(key)) if key is not None else set()
        modules = self.modules(model)
        changed, kept_prunes = [], []
        for name, m in modules.items():
            if m.stash is not None:  # pruned for a validation
                if name in dense and m.grown_at == key:
                    m.restore_()  # the step goes on
                else:
                    m.stash = None  # a new step: the prune was Algorithm 1 line 6
                    m.grown_at = None
                    kept_prunes.append(name)
        changed += kept_prunes
        to_prune = [n for n, m in modules.items() if m.grown_at is not None and (n not in dense or m.grown_at != key)]
        if to_prune:
            self._prune(modules, to_prune)
            changed += to_prune
        to_grow = [n for n in self.names if n in dense and modules[n].grown_at != key]
        for name in to_grow:
            modules[name].set_mask_(torch.ones_like(modules[name].mask))
            modules[name].grown_at = key
        changed += to_grow
        if changed:
            self._sync_optimizer(model, optimizer, modules, changed)
            where = "fine-tune" if key is None else ("worker" if key == WORKER_STEP else f"step {key}")
            logger.info(
                f"GaP {where}: pruned {len(to_prune) + len(kept_prunes)}, grew {len(to_grow)} "
                f"of {len(self.names)} matrices"
            )

    def _prune(self, modules, names):
        for name, mask in self._pruned_masks(modules, names).items():
            modules[name].set_mask_(mask)
            modules[name].grown_at = None

    def _pruned_masks(self, modules, names) -> Dict[str, torch.Tensor]:
        """ArgPruneTo of the named (dense) matrices: magnitude masks at the target sparsity.

        uniform: each matrix at exactly S. non-uniform: one magnitude threshold over the named matrices,
        with the count of pruned units chosen so that the whole model is at exactly S (the matrices not
        pruned now keep their masks, Algorithm 1 line 6 prunes one partition only).
        """
        cfg = self.cfg
        sparsity = cfg.gap_sparsity
        if str(cfg.gap_distribution) == "non-uniform":
            width = unit_width(parse_granularity(str(cfg.gap_granularity)))
            total = sum(m.mask.numel() for m in modules.values()) // width
            pruned_elsewhere = sum(int((~m.mask).sum()) for n, m in modules.items() if n not in names) // width
            units = sum(modules[n].mask.numel() for n in names) // width
            budget = min(units - 1, max(0, round(sparsity * total) - pruned_elsewhere))
            sparsity = budget / units
        weights = {n: modules[n].weight.detach() for n in names}
        return prune_to(weights, sparsity, str(cfg.gap_distribution), str(cfg.gap_granularity),
                        current_masks={n: modules[n].mask for n in names})

    def _sync_optimizer(self, model, optimizer, modules, names):
        """The optimizer's weights and Adam moments follow the new masks (fp16: its fp32 copies)."""
        inner = find_partitioned_optimizer(optimizer)
        if inner is None:
            raise ValueError("GaP grow-and-prune needs --optimizer adam_for_partitioned_model")
        index = {id(p): i for i, p in enumerate(p for p in model.parameters() if p.requires_grad)}
        opt_params = [p for g in inner.param_groups for p in g["params"]]
        for name in names:
            m = modules[name]
            p = opt_params[index[id(m.weight)]]
            keep = m.mask.to(p.device)
            with torch.no_grad():
                if p is not m.weight:
                    p.data.masked_fill_(~keep, 0)
                state = inner.optimizer.state.get(p, {})
                for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                    if key in state:
                        state[key].masked_fill_(~keep, 0)
                if p is not m.weight and p.grad is not None:
                    p.grad.masked_fill_(~keep, 0)

    def after_backward(self, model):
        for m in self.modules(model).values():
            if m.grown_at is None or m.stash is not None:
                m.mask_grad_()

    # ------------------------------------------------------------------------- validation
    def before_validation(self, model):
        """C-GaP: validate the model as it would be after pruning its dense partition."""
        if self.schedule.steps <= 0:
            return
        modules = self.modules(model)
        dense = [n for n, m in modules.items() if m.grown_at is not None and m.stash is None]
        if not dense:
            return
        for n in dense:
            modules[n].stash_()
        for n, mask in self._pruned_masks(modules, dense).items():
            modules[n].set_mask_(mask)

    def sparsity(self, model) -> float:
        modules = self.modules(model).values()
        return sum(int((~m.mask).sum()) for m in modules) / max(1, sum(m.mask.numel() for m in modules))


def attach_masks(model: nn.Module, names: List[str]) -> nn.Module:
    """Make the named weights MaskedLinear layers (masks come with the checkpoint loaded next)."""
    for name in names:
        if not name.endswith(".weight"):
            raise ValueError(f"prunable weight {name} is not the weight of an nn.Linear")
        parent, attr = _parent(model, name[: -len(".weight")])
        linear = getattr(parent, attr)
        if type(linear) is not nn.Linear:
            raise ValueError(f"--gap-prunable matched {name}, which is not the weight of an nn.Linear")
        setattr(parent, attr, MaskedLinear.from_linear(linear))
    return model


def _parent(model: nn.Module, path: str):
    parent_path, _, attr = path.rpartition(".")
    return (model.get_submodule(parent_path) if parent_path else model), attr
