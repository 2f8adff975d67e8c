"""GaP, scheduled grow-and-prune (Ma et al., ICLR 2022, Algorithms 1-2), and fixed-mask sparse training.

The prunable weights become ``MaskedLinear`` layers with random masks at exactly the target sparsity S
(Algorithm 1 line 1, seeded by ``--seed``). C-GaP (``--alternate``): step k (``GapSchedule``) grows one
partition dense and prunes the one grown before back to S by magnitude (lines 5-7); after K steps the
last dense partition is pruned and the model fine-tuned with fixed masks for T' epochs or N' updates
(lines 10-12); the run stops there by itself. With ``--gap-first-step dense`` (the official code) the
partition grown first starts at its random initial values, not masked. A single-step run grows one set
for its whole run (a P-GaP worker, ``--gap-grow-partition i``, or one step of a C-GaP run split into
processes, ``--gap-grow-step k``); without any of these the masks are fixed. The update mask of every
update is the current masks: the optimizer trains exactly the elements they keep, and every
transition tells it which elements changed (``zero_outside_``), so a pruned weight is exactly zero and
a grown one starts at zero with fresh moments.

A validation, and every checkpoint, sees the model at S: the dense values of a grown partition are set
aside (``set_aside``, with their masks), the partition is pruned by magnitude, and the next update
either puts them back (the step goes on) or keeps the prune (a new step began: it is line 6 anyway).
So fairseq's ``checkpoint_best.pt`` is the best sparse model, and every checkpoint fairseq writes holds
the model at S; the set-aside values travel in the checkpoint's task state, so a run interrupted
anywhere resumes exactly (fp16: the optimizer's fp32 copies are given them back too).

The method's state: ``grown`` (prunable weight -> the step that grew it dense; ``SINGLE_STEP`` in a
single-step run) and ``set_aside``, saved with the sparsity and the prunable weights as
``task_state["gap"]``.
"""
import logging
from dataclasses import replace
from typing import Dict, List, Optional, Tuple

import torch

from ..checkpoints import gap_state, masks as checkpoint_masks
from ..config import config_value
from ..errors import UsageError
from ..modules.masked_linear import mask_layers, masked_layers
from ..optim import find_partitioned_optimizer
from ..pruning import DEFAULT_PRUNABLE, PruningSpec, partition_names, prune, random_start, transformer_partitions
from ..pruning.granularity import unit_width
from ..schedules.gap import SINGLE_STEP, GapSchedule
from .base import TrainingMethod
from .choice import is_gap

logger = logging.getLogger(__name__)

RESUME_CHECKED = ["gap_sparsity", "gap_partitions", "gap_distribution", "gap_granularity", "gap_prunable",
                  "gap_partition_layout", "gap_block_score"]
RESUME_CHECKED_CGAP = ["gap_steps", "gap_step_epochs", "gap_step_updates", "gap_partition_strategy"]


def check_gap_config(cfg) -> Optional[PruningSpec]:
    """One-line errors for GaP flags that cannot work, before anything is built; the run's pruning
    options (None without ``--gap-sparsity``)."""
    if not 0 <= cfg.gap_sparsity < 1:
        raise UsageError(f"--gap-sparsity must be in [0, 1), got {cfg.gap_sparsity}")
    if not is_gap(cfg):
        return None
    spec = PruningSpec.from_args(cfg)
    if cfg.max_level is not None:
        raise UsageError("--gap-sparsity trains a sparse Transformer: it cannot be combined with --max-level")
    if cfg.gap_partitions < 1:
        raise UsageError(f"--gap-partitions must be >= 1, got {cfg.gap_partitions}")
    lengths = ("gap_step_epochs", "gap_step_updates", "gap_steps", "gap_finetune_epochs", "gap_finetune_updates")
    for name in lengths:
        if getattr(cfg, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    single = [f for f in ("gap_grow_partition", "gap_grow_step") if getattr(cfg, f) >= 0]
    if len(single) > 1:
        raise UsageError("--gap-grow-partition (a P-GaP worker) and --gap-grow-step (one C-GaP step) exclude each other")
    if cfg.alternate:
        if single:
            raise UsageError(f"--{single[0].replace('_', '-')} (a single-step run) cannot be combined with --alternate (C-GaP)")
        if cfg.gap_steps < 1:
            raise UsageError("C-GaP (--alternate --gap-sparsity) needs --gap-steps K >= 1")
        if (cfg.gap_step_epochs > 0) == (cfg.gap_step_updates > 0):
            raise UsageError("C-GaP needs exactly one of --gap-step-epochs T and --gap-step-updates N")
        if cfg.gap_step_epochs > 0 and cfg.gap_finetune_updates > 0:
            raise UsageError("--gap-step-epochs counts in epochs: give the fine-tune in --gap-finetune-epochs")
        if cfg.gap_step_updates > 0 and cfg.gap_finetune_epochs > 0:
            raise UsageError("--gap-step-updates counts in updates: give the fine-tune in --gap-finetune-updates")
        _check_the_end(cfg)
        scheduler = config_value(cfg, "lr_scheduler_name")
        if scheduler is not None and scheduler != "gap_inverse_sqrt":
            logger.warning(
                f"--lr-scheduler {scheduler} does not restart at each GaP step (GaP appendix B); "
                "--lr-scheduler gap_inverse_sqrt does"
            )
        return spec
    for name in ("gap_steps", "gap_step_epochs", "gap_step_updates", "gap_finetune_epochs", "gap_finetune_updates"):
        if getattr(cfg, name) > 0:
            raise UsageError(f"--{name.replace('_', '-')} is C-GaP's: it needs --alternate (without it the masks are fixed)")
    return spec


def schedule_end(cfg) -> Tuple[str, int]:
    """Where a C-GaP run ends: (``--max-epoch``, K T + T') or (``--max-update``, K N + N')."""
    if cfg.gap_step_epochs > 0:
        return "--max-epoch", cfg.gap_steps * cfg.gap_step_epochs + cfg.gap_finetune_epochs
    return "--max-update", cfg.gap_steps * cfg.gap_step_updates + cfg.gap_finetune_updates


def schedule_length(cfg) -> str:
    """How ``schedule_end`` adds up, in words."""
    flag, end = schedule_end(cfg)
    unit = "epochs" if flag == "--max-epoch" else "updates"
    return (f"--gap-steps {cfg.gap_steps} x --gap-step-{unit} {cfg.gap_step_epochs or cfg.gap_step_updates} + "
            f"--gap-finetune-{unit} {cfg.gap_finetune_epochs or cfg.gap_finetune_updates} = {end} {unit}")


def _check_the_end(cfg):
    """A --max-epoch/--max-update that disagrees with the schedule is an error (when neither is given,
    the task sets the one that fits: ``stop_where_cgap_ends``)."""
    flag, end = schedule_end(cfg)
    lengths = {"--max-epoch": config_value(cfg, "max_epoch", 0), "--max-update": config_value(cfg, "max_update", 0)}
    other = "--max-update" if flag == "--max-epoch" else "--max-epoch"
    if lengths[other]:
        raise UsageError(f"C-GaP ends after {schedule_length(cfg)}: drop {other} {lengths[other]} (the run stops by "
                         f"itself, or set {flag} {end})")
    if lengths[flag] and lengths[flag] != end:
        raise UsageError(f"C-GaP ends after {schedule_length(cfg)}: set {flag} {end} (or drop it), not {lengths[flag]}")


class GrowAndPrune(TrainingMethod):
    name = "gap"

    def __init__(self, cfg, spec: PruningSpec, seed: int, evaluated: Optional[dict] = None):
        """``spec``: the run's pruning options (``PruningSpec.from_args(cfg)``); ``evaluated``: the GaP state
        of a checkpoint to evaluate (``cfg`` then need not be GaP's)."""
        self.cfg = cfg
        self.spec = spec
        self.seed = seed
        self.evaluated = evaluated
        self.schedule: Optional[GapSchedule] = None
        self.names: List[str] = list(evaluated["prunable"]) if evaluated else []  # model order
        self.epoch = 1
        self.grown: Dict[str, int] = {}  # prunable weight -> the step that grew it dense
        self.set_aside: Dict[str, Dict[str, torch.Tensor]] = {}  # dense values kept while the model is at S
        self._set_aside_from_checkpoint = False  # fp16: the optimizer's copies are then rebuilt from the model
        self._valid_sparsity: Optional[float] = None  # of the model being validated
        self._layers_of = None  # (model, {name: MaskedLinear})
        self._update_mask_of = None  # (model, update mask)
        self._index_of = None  # (model, {prunable name: index among the trainable parameters})

    # ------------------------------------------------------------------------------ build
    def resume_from(self, path, checkpoint):
        """Resuming GaP: the checkpoint must hold masks, made with the same GaP configuration; the
        schedule position and the set-aside values come from it."""
        if not checkpoint_masks(checkpoint.get("model", {})):
            if (checkpoint.get("task_state") or {}).get("partition"):
                raise UsageError(
                    f"checkpoint {path} holds a partitioned model (ATS), not a sparse one: resume it without "
                    "--gap-sparsity, or export it (fairseq-partitioned-export --level full) and prune that"
                )
            raise UsageError(
                f"checkpoint {path} has no GaP masks: prune a dense checkpoint first with "
                "fairseq-partitioned-prune, or train from scratch"
            )
        cfg = self.cfg
        saved = (checkpoint.get("cfg") or {}).get("task") or {}
        fields = RESUME_CHECKED + (RESUME_CHECKED_CGAP if saved.get("alternate") and cfg.alternate else [])
        for name in fields:
            if name in saved and str(saved[name]) != str(getattr(cfg, name)):
                flag = "--" + name.replace("_", "-")
                raise UsageError(
                    f"checkpoint {path} was trained with {flag} {saved[name]}, but this run uses {flag} "
                    f"{getattr(cfg, name)}"
                )
        self.load_state_dict({"gap": gap_state(checkpoint)})
        self._set_aside_from_checkpoint = bool(self.set_aside)

    def build_model(self, model, from_checkpoint):
        if from_checkpoint and self.evaluated is not None:  # evaluating: the masks come with the checkpoint
            return mask_layers(model, self.names)
        cfg = self.cfg
        self.names = self.spec.prunable_names([n for n, _ in model.named_parameters()])
        if not self.names:
            raise UsageError(f"--gap-prunable {self.spec.prunable or DEFAULT_PRUNABLE!r} matches no weight of the model")
        mask_layers(model, self.names)
        encoder_layers = len(getattr(getattr(model, "encoder", None), "layers", []))
        decoder_layers = len(getattr(getattr(model, "decoder", None), "layers", []))
        layers = transformer_partitions(encoder_layers, decoder_layers, cfg.gap_partitions, str(cfg.gap_partition_layout))
        partitions = partition_names(self.names, layers)
        if cfg.gap_grow_partition >= len(partitions):
            raise UsageError(f"--gap-grow-partition {cfg.gap_grow_partition}: there are {len(partitions)} partitions")
        self.schedule = GapSchedule(
            partitions=partitions,
            steps=cfg.gap_steps if cfg.alternate else 0,
            step_epochs=cfg.gap_step_epochs,
            step_updates=cfg.gap_step_updates,
            strategy=str(cfg.gap_partition_strategy),
            seed=self.seed,
            grow_partition=cfg.gap_grow_partition,
            grow_step=cfg.gap_grow_step,
        )
        layers_by_name = self._layers(model)
        generator = torch.Generator().manual_seed(self.seed)
        masks = random_start({n: m.weight.shape for n, m in layers_by_name.items()}, self.spec, generator)
        # --gap-first-step dense: what the run grows first keeps its random initial values (a resumed
        # run's masks and weights come with its checkpoint)
        first = set(self.schedule.first_grown) if str(cfg.gap_first_step) == "dense" else set()
        for name, layer in layers_by_name.items():
            mask = torch.ones_like(layer.mask) if name in first else masks[name].to(layer.weight.device)
            layer.set_mask_(mask)
        model.register_state_dict_pre_hook(self._before_saving)
        total = sum(m.mask.numel() for m in layers_by_name.values())
        logger.info(
            f"GaP: {len(self.names)} prunable matrices ({total:,} weights) in {len(partitions)} partitions "
            f"of {[len(p) for p in partitions]} matrices ({cfg.gap_partition_layout} layout), random masks at "
            f"sparsity {self.spec.sparsity}" + (f"; {len(first)} matrices grown first start dense" if first else "")
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

    def begin_update(self, model, optimizer, update_num):
        """Bring the masks to what the schedule wants for update ``update_num`` (idempotent)."""
        key = self.schedule.step_at(self.epoch, update_num)
        dense = set(self.schedule.dense_at(key))
        layers = self._layers(model)
        changed, kept_prunes, restored = [], [], []
        for name in list(self.set_aside):  # pruned for a validation or a checkpoint
            if name in dense and self.grown.get(name) == key:
                self._restore(layers[name], self.set_aside.pop(name))  # the step goes on
                restored.append(name)
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
        if restored and self._set_aside_from_checkpoint:
            # fp16/bf16 rebuilt the optimizer's fp32 copies from the (pruned) model when it loaded the
            # checkpoint: they take the set-aside values back too (in fp32 they are the weights themselves)
            self._optimizer(optimizer).copy_from_model_(self._indices(model, restored), [layers[n].weight for n in restored])
        self._set_aside_from_checkpoint = False
        if changed:
            index = self._parameter_index(model)
            self._optimizer(optimizer).zero_outside_({index[n]: layers[n].mask for n in changed})
            where = "fine-tune" if key is None else ("single step" if key == SINGLE_STEP else f"step {key}")
            logger.info(
                f"GaP {where}: pruned {len(to_prune) + len(kept_prunes)}, grew {len(to_grow)} "
                f"of {len(self.names)} matrices"
            )

    @staticmethod
    @torch.no_grad()
    def _restore(layer, kept: Dict[str, torch.Tensor]):
        layer.weight.copy_(kept["weight"])
        layer.mask.copy_(kept["mask"])

    def _set_dense_aside(self, model):
        """Bring the model to S: set the dense values of a grown partition aside, prune it (once)."""
        layers = self._layers(model)
        dense = [n for n in self.names if n in self.grown and n not in self.set_aside]
        for n in dense:
            self.set_aside[n] = {"weight": layers[n].weight.detach().clone(), "mask": layers[n].mask.clone()}
        if dense:
            for n, mask in self._pruned_masks(layers, dense).items():
                layers[n].set_mask_(mask)

    def _before_saving(self, model, prefix, keep_vars):
        """A state-dict pre-hook of the model: every checkpoint holds the model at S."""
        self._set_dense_aside(model)

    def _pruned_masks(self, layers, names) -> Dict[str, torch.Tensor]:
        """ArgPruneTo of the named (dense) matrices: magnitude masks at the target sparsity.

        uniform: each matrix at exactly S. non-uniform: one magnitude threshold over the named matrices,
        with the count of pruned units chosen so that the whole model is at exactly S (the matrices not
        pruned now keep their masks, Algorithm 1 line 6 prunes one partition only).
        """
        spec = self.spec
        if spec.distribution == "non-uniform":
            width = unit_width(spec.granularity)
            total = sum(m.mask.numel() for m in layers.values()) // width
            pruned_elsewhere = sum(int((~m.mask).sum()) for n, m in layers.items() if n not in names) // width
            units = sum(layers[n].mask.numel() for n in names) // width
            budget = min(units - 1, max(0, round(spec.sparsity * total) - pruned_elsewhere))
            spec = replace(spec, sparsity=budget / units)
        weights = {n: layers[n].weight.detach() for n in names}
        return prune(weights, spec, current_masks={n: layers[n].mask for n in names})

    def _parameter_index(self, model) -> Dict[str, int]:
        """Prunable weight name -> its position among the trainable parameters (= the optimizer's)."""
        if self._index_of is None or self._index_of[0] is not model:
            position = {id(p): i for i, p in enumerate(p for p in model.parameters() if p.requires_grad)}
            layers = self._layers(model)
            self._index_of = (model, {n: position[id(layers[n].weight)] for n in self.names})
        return self._index_of[1]

    def _indices(self, model, names) -> List[int]:
        index = self._parameter_index(model)
        return [index[n] for n in names]

    @staticmethod
    def _optimizer(optimizer):
        inner = find_partitioned_optimizer(optimizer)
        if inner is None:
            raise UsageError("GaP grow-and-prune needs --optimizer adam_for_partitioned_model")
        return inner

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
        """Validate the model as it would be after pruning its dense partition."""
        self._set_dense_aside(model)
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
        gap = {"sparsity": self.spec.sparsity, "prunable": list(self.names),
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
