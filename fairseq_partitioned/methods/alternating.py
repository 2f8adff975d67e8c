"""ATS, alternating training (Mohtashami, Jaggi, Stich, AISTATS 2022, Algorithm 1), and standard
training of a partitioned model.

The model has a predefined core (level 1) inside the full network (level L): its FFN and key/query
projections are partitioned layers (``modules/``). Update t trains one level, ``level_for_update``:
with ``--alternate`` the full network on even updates and the core on odd ones (levels L, L-1, ..., 1
with nested cores); without it always the top level built (``--max-level``: 1 = the core alone). The
forward pass runs at that level; the update mask holds the parameters that level uses, so a core
update leaves the extension, and its optimizer state, untouched. ``--alternate-lr-coef`` scales the
learning rate of the updates below the top level. Validation reports the loss of every level.
``--core-distill`` adds in-place distillation from the top level to the updates below it
(``distillation.py``).

The core's kind is chosen here, once (``PartitionSpec``): low-rank or small-width
(``--partitioned-linear-module-name``, ``--small-ratio``), or the first K layers of the decoder
(``--core-decoder-layers K``). A depth core can also be trained from every update instead of in turns
(``--core-loss-weight w``, ``early_exit.py``): every update is then at the top level, its update mask
every parameter, and its criterion adds the core's loss, read from the same forward.
"""
import logging
import math
from dataclasses import replace
from typing import Dict, List, Optional

import torch

from ..checkpoints import gap_state, masks as checkpoint_masks
from ..errors import UsageError
from ..modules import DEPTH_KIND, PartitionSpec, parameter_counts, partition_model, partitioned_modules, set_level
from .base import TrainingMethod
from .distillation import CoreDistillation, check_teacher, reduce_distill_metrics
from .early_exit import EarlyExitCriterion, check_both_networks, check_early_exit_config

logger = logging.getLogger(__name__)


def parse_small_ratios(value) -> tuple:
    try:
        ratios = tuple(float(r) for r in str(value).split(","))
    except ValueError:
        raise UsageError(f"--small-ratio must be a number or a comma-separated list, got {value!r}")
    for r in ratios:
        if not 0 < r <= 1:
            raise UsageError(f"--small-ratio must be in (0, 1], got {r:g}")
    if any(b <= a for a, b in zip(ratios, ratios[1:])):
        raise UsageError(f"--small-ratio list must be strictly increasing, got {value}")
    return ratios


def level_name(level: int) -> str:
    return "core" if level == 1 else f"level{level}"


def level_for_update(update_num: int, max_level: int, alternate: bool) -> int:
    """The level update t trains (ATS Algorithm 1): the full network on even t, the core on odd t. With
    nested cores (levels 1..L) the cycle runs from the top level down, t -> L - (t mod L), Algorithm 1 for
    L = 2. Keyed on fairseq's update number, so every micro-batch of an update (``--update-freq``) trains
    the same level, and a resumed run goes on where it stopped."""
    if update_num < 0:
        raise ValueError(f"update number must be >= 0, got {update_num}")
    if not alternate:
        return max_level
    return max_level - (update_num % max_level)


class AlternatingTraining(TrainingMethod):
    name = "ats"

    def __init__(self, cfg):
        self.cfg = cfg
        self.small_ratios = parse_small_ratios(cfg.small_ratio)
        if cfg.max_level is not None and cfg.max_level < 1:
            raise UsageError(f"--max-level must be >= 1 (1 = the core), got {cfg.max_level}")
        if cfg.alternate and cfg.max_level == 1:
            raise UsageError("--alternate needs a network above the core: drop --max-level 1")
        if not cfg.alternate_lr_coef > 0:
            raise UsageError(f"--alternate-lr-coef must be > 0, got {cfg.alternate_lr_coef}")
        if cfg.gradient_alignment_interval > 0 and cfg.max_level == 1:
            raise UsageError("--gradient-alignment-interval compares the full network with the core: drop --max-level 1")
        if cfg.core_decoder_layers < 0:  # its upper bound is the model's (partition_model)
            raise UsageError(f"--core-decoder-layers must be >= 1 (0 = no depth core), got {cfg.core_decoder_layers}")
        check_early_exit_config(cfg)
        self.spec: Optional[PartitionSpec] = None  # of the model built last
        self.counts: Dict[str, int] = {}
        self._checkpoint_spec: Optional[PartitionSpec] = None  # of the checkpoint being evaluated (None: a plain one)
        self._layers_of = None  # (model, its partitioned layers)
        self._update_masks: Dict[int, List[bool]] = {}
        self.distill = CoreDistillation(cfg.core_distill, cfg.core_distill_temperature, cfg.core_distill_start,
                                        cfg.core_distill_teacher_dropout)

    @property
    def top_level(self) -> int:
        return self.spec.built_levels if self.spec is not None else 1

    # ------------------------------------------------------------------------------ build
    def _spec_for_build(self, from_checkpoint: bool) -> PartitionSpec:
        cfg = self.cfg
        if cfg.core_decoder_layers:
            ours = PartitionSpec.depth(cfg.core_decoder_layers)
        else:
            ours = PartitionSpec(str(cfg.partitioned_linear_module_name), self.small_ratios, len(self.small_ratios) + 1,
                                 str(cfg.low_rank_init), str(cfg.core_attention_scale))
        if from_checkpoint and self._checkpoint_spec is not None:
            saved = self._checkpoint_spec
            if saved != replace(ours, built_levels=saved.built_levels):
                logger.info(f"using the checkpoint's partitioning: {saved.describe()}")
            ours = saved
        top = ours.built_levels if cfg.max_level is None else cfg.max_level
        if not from_checkpoint and top > ours.num_levels:
            kind = (f"--core-decoder-layers {ours.core_decoder_layers}" if ours.module_name == DEPTH_KIND
                    else f"--small-ratio {cfg.small_ratio}")
            raise UsageError(f"--max-level must be in 1..{ours.num_levels} for {kind}, got {top}")
        if top > ours.num_levels:
            raise UsageError(f"--max-level {top}: the checkpoint has levels 1..{ours.num_levels} (1 = the core, "
                             f"{ours.num_levels} = the full network); use --max-level 1..{ours.num_levels}")
        if top > ours.built_levels:
            raise UsageError(
                f"--max-level {top}: the checkpoint holds only levels 1..{ours.built_levels} of {ours.num_levels} "
                f"({'the core' if ours.built_levels == 1 else 'no full network'}); use --max-level {ours.built_levels}"
            )
        return replace(ours, built_levels=top)

    def resume_from(self, path: str, checkpoint: dict):
        """A run resumed from a checkpoint of another partitioning fails here, before training."""
        spec = self._spec_for_build(from_checkpoint=False)
        if checkpoint_masks(checkpoint.get("model") or {}):
            sparsity = (gap_state(checkpoint) or {}).get("sparsity")
            if "last_optimizer_state" in checkpoint:
                raise UsageError(f"checkpoint {path} is a GaP (sparse) checkpoint, trained with --gap-sparsity {sparsity}: "
                                 f"resume it with --gap-sparsity {sparsity}")
            raise UsageError(f"checkpoint {path} holds a pruned model (GaP masks at sparsity {sparsity}): fine-tune it "
                             f"with --gap-sparsity {sparsity}")
        saved = (checkpoint.get("task_state") or {}).get("partition")
        if saved is None:
            raise UsageError(f"checkpoint {path} holds a plain Transformer, not a partitioned one: ATS trains a "
                             "partitioned model from scratch (fairseq-partitioned-prune makes a GaP start of it)")
        if PartitionSpec.from_dict(saved) != spec:
            raise UsageError(
                f"checkpoint {path} was trained with {PartitionSpec.from_dict(saved).describe()}, but this run uses "
                f"{spec.describe()}"
            )

    def build_model(self, model, from_checkpoint):
        if from_checkpoint and self._checkpoint_spec is None:
            return self._as_plain_transformer(model)
        if not from_checkpoint:  # a training run
            check_teacher(self.cfg)
            check_both_networks(self.cfg)
        spec = self._spec_for_build(from_checkpoint)
        partition_model(model, spec)
        self.spec = spec
        counts = parameter_counts(model)
        self.counts = {level_name(int(k[len("level"):])): v for k, v in counts.items() if k != "merged_full"}
        if counts["merged_full"]:
            self.counts["full"] = counts["merged_full"]
        levels = ", ".join(f"{k} {v:,}" for k, v in self.counts.items() if k != "full")
        logger.info(
            f"partitioned model ({spec.describe()}): parameters {levels}"
            + (f"; full network as a standard Transformer {self.counts['full']:,}" if "full" in self.counts else "")
        )
        return model

    def _as_plain_transformer(self, model):
        """A checkpoint of a plain Transformer (fairseq's translation task), evaluated through this task:
        it is evaluated as what it is. --max-level would be ignored: it is an error."""
        if self.cfg.max_level is not None:
            raise UsageError(f"--max-level {self.cfg.max_level}: the checkpoint holds a plain Transformer, which has "
                             "no core; drop --max-level")
        logger.info("the checkpoint holds a plain Transformer (no partitioned layers): evaluated as one")
        self.spec = None
        return model

    def _layers(self, model) -> List:
        """The partitioned layers of ``model`` (looked up once per model: used at every step)."""
        if self._layers_of is None or self._layers_of[0] is not model:
            self._layers_of = (model, list(partitioned_modules(model)))
            self._update_masks = {}
        return self._layers_of[1]

    # --------------------------------------------------------------------------- training
    def level(self, update_num: int) -> int:
        return level_for_update(update_num, self.top_level, self.cfg.alternate)

    def begin_update(self, model, optimizer, update_num):
        set_level(self._layers(model), self.level(update_num))

    def update_mask(self, model, update_num):
        """Per trainable parameter: whether an update of this level may change it (cached per level)."""
        level = self.level(update_num)
        self._layers(model)  # resets the cache for a new model
        if level not in self._update_masks:
            self._update_masks[level] = [
                getattr(p, "partition_level", 1) <= level for p in model.parameters() if p.requires_grad
            ]
        return self._update_masks[level]

    def lr_coef(self, update_num):
        return self.cfg.alternate_lr_coef if self.level(update_num) < self.top_level else 1.0

    def training_criterion(self, model, criterion, update_num):
        """An update below the top level, once distillation is on, learns from the top level too. With
        --core-loss-weight every update is at the top level and adds the core's loss (early_exit.py)."""
        if self.cfg.core_loss_weight > 0:
            return EarlyExitCriterion(criterion, self.cfg.core_loss_weight, self.spec.core_decoder_layers, self.distill,
                                      self.distill.active(update_num))
        level = self.level(update_num)
        if level == self.top_level or not self.distill.active(update_num):
            return criterion
        layers = self._layers(model)
        return self.distill.criterion(criterion, lambda: set_level(layers, self.top_level),
                                      lambda: set_level(layers, level))

    # ------------------------------------------------------------------------- evaluation
    def valid_step(self, model, criterion, sample):
        """The loss of every level below the top; leaves the model at the top level."""
        layers = self._layers(model)
        lower = {}
        for level in range(1, self.top_level):
            set_level(layers, level)
            with torch.no_grad():
                _, _, log = criterion(model, sample)
            name = level_name(level)
            lower[f"{name}_loss"] = log["loss"]
            if "nll_loss" in log:
                lower[f"{name}_nll_loss"] = log["nll_loss"]
        set_level(layers, self.top_level)
        return lower

    def reduce_metrics(self, logging_outputs):
        from fairseq import metrics

        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        for level in range(1, self.top_level):
            name = level_name(level)
            if not any(f"{name}_loss" in log for log in logging_outputs):
                continue
            loss = sum(log.get(f"{name}_loss", 0) for log in logging_outputs)
            metrics.log_scalar(f"{name}_loss", loss / max(sample_size, 1) / math.log(2), sample_size, round=3)
            if any(f"{name}_nll_loss" in log for log in logging_outputs):
                nll = sum(log.get(f"{name}_nll_loss", 0) for log in logging_outputs)
                metrics.log_scalar(f"{name}_nll_loss", nll / max(ntokens, 1) / math.log(2), ntokens, round=3)
        reduce_distill_metrics(logging_outputs)

    def begin_inference(self, models):
        for model in models:
            set_level(partitioned_modules(model), self.top_level)

    def alignment_setup(self, model, params):
        layers = self._layers(model)
        masks = [getattr(p, "partition_level", 1) == 1 for p in params]
        return masks, lambda: set_level(layers, self.top_level), lambda: set_level(layers, 1)

    # ------------------------------------------------------------------------- checkpoint
    def state_dict(self):
        return {} if self.spec is None else {"partition": self.spec.to_dict(), "counts": dict(self.counts)}

    def load_state_dict(self, state):
        saved = state.get("partition")
        self._checkpoint_spec = None if saved is None else PartitionSpec.from_dict(saved)
