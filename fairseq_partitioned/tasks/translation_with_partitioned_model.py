"""Translation with a partitioned model: ATS (Mohtashami, Jaggi, Stich, AISTATS 2022, Algorithm 1).

fairseq's translation task, whose model has a predefined core (level 1) inside the full network
(level L). Each update trains one level, chosen by the schedule from the update number; the forward
pass runs at that level and the optimizer's update mask leaves the other parameters untouched.
Validation reports the loss of the full network and of the core (``valid_core_loss``).
"""
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import List, Optional

import torch
from fairseq import metrics
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II

from ..diagnostics import measure_alignment
from ..modules import (
    MODULE_KINDS,
    PartitionSpec,
    parameter_counts,
    partition_model,
    partitioned_modules,
    set_level,
)
from ..optim import find_partitioned_optimizer
from ..schedules import level_for_update
from ..version import fairseq_distribution
from .gap import GapController, attach_masks, check_gap_config, gap_enabled

logger = logging.getLogger(__name__)

TASK_NAME = "translation_with_partitioned_model"
ALIGNMENT_KEYS = ("grad_overlap", "grad_norm_ratio", "grad_alignment", "grad_alpha", "grad_q", "grad_measure_seconds")


@dataclass
class TranslationWithPartitionedModelConfig(TranslationConfig):
    alternate: bool = field(
        default=False,
        metadata={"help": "alternate updates of the full network (even updates) and of the core (odd)"},
    )
    alternate_lr_coef: float = field(
        default=1.0, metadata={"help": "learning-rate multiplier on core updates of --alternate"}
    )
    max_level: Optional[int] = field(
        default=None,
        metadata={
            "help": "highest level to build, train and evaluate: 1 = the core alone, "
            "default = the full network"
        },
    )
    small_ratio: str = field(
        default="0.25",
        metadata={
            "help": "r in (0, 1]: rank (PartitionedRankLinear) or width (PartitionedLinear) of the core "
            "as a fraction of the full layer; a comma-separated increasing list gives nested cores "
            "(levels 1..L-1)"
        },
    )
    partitioned_linear_module_name: ChoiceEnum(list(MODULE_KINDS)) = field(
        default="PartitionedRankLinear",
        metadata={"help": "low-rank core (PartitionedRankLinear) or small-width core (PartitionedLinear)"},
    )
    gradient_alignment_interval: int = field(
        default=0,
        metadata={"help": "every N updates, log the gradient overlap, norm ratio, alignment, alpha and q of "
                          "ATS Theorem 2 between the full and the masked network (0 = off)"},
    )
    gap_sparsity: float = field(
        default=0.0,
        metadata={"help": "GaP target sparsity S in [0, 1); > 0 trains a sparse Transformer (masks on)"},
    )
    gap_partitions: int = field(
        default=3,
        metadata={"help": "kappa: 3 = encoder, decoder first half, decoder second half; 6 = 2 + 4 parts"},
    )
    gap_step_epochs: int = field(default=0, metadata={"help": "T: epochs per C-GaP step"})
    gap_step_updates: int = field(default=0, metadata={"help": "N: updates per C-GaP step (instead of T)"})
    gap_steps: int = field(default=0, metadata={"help": "K: grow-and-prune steps before the final prune"})
    gap_finetune_epochs: int = field(
        default=0, metadata={"help": "T': fine-tune epochs after the last step (checked against --max-epoch)"}
    )
    gap_partition_strategy: ChoiceEnum(["cyclic", "random"]) = field(
        default="cyclic", metadata={"help": "grow partitions in turn, or a random subset of the same size"}
    )
    gap_distribution: ChoiceEnum(["uniform", "non-uniform"]) = field(
        default="uniform", metadata={"help": "S in every matrix, or S overall by one magnitude threshold"}
    )
    gap_granularity: str = field(
        default="unstructured", metadata={"help": "unstructured, block-1x8 (all-zero 1x8 blocks) or 2:4"}
    )
    gap_prunable: Optional[str] = field(
        default=None,
        metadata={"help": "regex over parameter names of the prunable weights (default: attention q/k/v/out "
                          "and FFN fc1/fc2 weights of every layer)"},
    )
    gap_grow_partition: int = field(
        default=-1, metadata={"help": "P-GaP worker: grow this partition (0-based) for the whole run"}
    )
    # Read from the rest of the configuration (no flags of their own).
    restore_file: str = II("checkpoint.restore_file")
    save_dir: str = II("checkpoint.save_dir")
    distributed_world_size: int = II("distributed_training.distributed_world_size")
    ddp_backend: str = II("distributed_training.ddp_backend")
    find_unused_parameters: bool = II("distributed_training.find_unused_parameters")
    max_epoch: int = II("optimization.max_epoch")
    lr_scheduler_name: Optional[str] = II("lr_scheduler._name")
    seed: int = II("common.seed")


def parse_small_ratios(value) -> tuple:
    try:
        ratios = tuple(float(r) for r in str(value).split(","))
    except ValueError:
        raise ValueError(f"--small-ratio must be a number or a comma-separated list, got {value!r}")
    for r in ratios:
        if not 0 < r <= 1:
            raise ValueError(f"--small-ratio must be in (0, 1], got {r:g}")
    if any(b <= a for a, b in zip(ratios, ratios[1:])):
        raise ValueError(f"--small-ratio list must be strictly increasing, got {value}")
    return ratios


@register_task(TASK_NAME, dataclass=TranslationWithPartitionedModelConfig)
class TranslationWithPartitionedModelTask(TranslationTask):
    cfg: TranslationWithPartitionedModelConfig

    def __init__(self, cfg: TranslationWithPartitionedModelConfig, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        self.small_ratios = parse_small_ratios(cfg.small_ratio)
        if cfg.max_level is not None and cfg.max_level < 1:
            raise ValueError(f"--max-level must be >= 1 (1 = the core), got {cfg.max_level}")
        if cfg.alternate and cfg.max_level == 1:
            raise ValueError("--alternate needs a network above the core: drop --max-level 1")
        if not cfg.alternate_lr_coef > 0:
            raise ValueError(f"--alternate-lr-coef must be > 0, got {cfg.alternate_lr_coef}")
        check_gap_config(cfg)
        self.gap = GapController(cfg, seed=_seed(cfg)) if gap_enabled(cfg) else None
        if cfg.alternate or self.gap is not None:
            _check_data_parallel(cfg)
        if cfg.gradient_alignment_interval < 0:
            raise ValueError(f"--gradient-alignment-interval must be >= 0, got {cfg.gradient_alignment_interval}")
        if cfg.gradient_alignment_interval > 0 and cfg.max_level == 1:
            raise ValueError("--gradient-alignment-interval compares the full network with the core: drop --max-level 1")
        self._last_measured_update = -1
        self._optimizer_checked = False
        self._partitioned_of = None
        self._update_masks = {}
        self.spec: Optional[PartitionSpec] = None  # of the model built last
        self._checkpoint_spec: Optional[PartitionSpec] = None
        self._checkpoint_gap: Optional[dict] = None
        dist, version = fairseq_distribution()
        logger.info(f"fairseq_partitioned on {dist} {version}")

    # ----------------------------------------------------------------------------- model
    def build_model(self, cfg, from_checkpoint=False):
        if self.gap is not None:
            if not from_checkpoint:
                self._check_restore_file(None)
            return self.gap.attach(super().build_model(cfg, from_checkpoint))
        if from_checkpoint and self._checkpoint_gap is not None:  # evaluating a GaP checkpoint
            return attach_masks(super().build_model(cfg, from_checkpoint), self._checkpoint_gap["prunable"])
        spec = self._spec_for_build(from_checkpoint)
        if not from_checkpoint:
            self._check_restore_file(spec)
        model = super().build_model(cfg, from_checkpoint)
        partition_model(model, spec)
        self.spec = spec
        counts = parameter_counts(model)
        levels = ", ".join(
            f"{'core' if k == 'level1' else k} {v:,}" for k, v in counts.items() if k != "merged_full"
        )
        merged = counts["merged_full"]
        logger.info(
            f"partitioned model ({spec.describe()}): parameters {levels}"
            + (f"; full network as a standard Transformer {merged:,}" if merged else "")
        )
        return model

    def _spec_for_build(self, from_checkpoint: bool) -> PartitionSpec:
        cfg = self.cfg
        ours = PartitionSpec(
            str(cfg.partitioned_linear_module_name), self.small_ratios, len(self.small_ratios) + 1
        )
        if from_checkpoint and self._checkpoint_spec is not None:
            saved = self._checkpoint_spec
            if (saved.module_name, saved.small_ratios) != (ours.module_name, ours.small_ratios):
                logger.info(f"using the checkpoint's partitioning: {saved.describe()}")
            ours = saved
        top = ours.built_levels if cfg.max_level is None else cfg.max_level
        if not from_checkpoint and top > ours.num_levels:
            raise ValueError(
                f"--max-level must be in 1..{ours.num_levels} for --small-ratio {cfg.small_ratio}, got {top}"
            )
        if top > ours.built_levels:
            raise ValueError(
                f"--max-level {top}: the checkpoint holds only levels 1..{ours.built_levels} "
                f"({'the core' if ours.built_levels == 1 else 'a partial network'}); "
                f"use --max-level {ours.built_levels}"
            )
        return replace(ours, built_levels=top)

    def _check_restore_file(self, spec: Optional[PartitionSpec]):
        """A run resumed from a checkpoint of another partitioning fails here, before training."""
        try:
            restore_file, save_dir = self.cfg.restore_file, self.cfg.save_dir
        except Exception:  # not part of a training configuration
            return
        if restore_file is None:
            return
        path = os.path.join(save_dir, restore_file) if restore_file == "checkpoint_last.pt" else restore_file
        if not os.path.isfile(path):
            return
        if spec is None:
            return check_gap_checkpoint(path, self.cfg)
        saved = read_checkpoint_spec(path)
        if saved is not None and saved != spec:
            raise ValueError(
                f"checkpoint {path} was trained with {saved.describe()}, but this run uses "
                f"{spec.describe()}"
            )

    def state_dict(self):
        state = dict(super().state_dict())
        if self.spec is not None:
            state["partition"] = self.spec.to_dict()
        if self.gap is not None:
            state["gap"] = {"sparsity": self.cfg.gap_sparsity, "prunable": self.gap.names}
        return state

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        saved = state_dict.pop("partition", None)
        self._checkpoint_spec = None if saved is None else PartitionSpec.from_dict(saved)
        self._checkpoint_gap = state_dict.pop("gap", None)
        super().load_state_dict(state_dict)

    # -------------------------------------------------------------------------- training
    @property
    def top_level(self) -> int:
        return self.spec.built_levels if self.spec is not None else 1

    def begin_epoch(self, epoch, model):
        super().begin_epoch(epoch, model)
        if self.gap is not None:
            self.gap.epoch = epoch

    def begin_valid_epoch(self, epoch, model):
        super().begin_valid_epoch(epoch, model)
        if self.gap is not None:
            self.gap.before_validation(model)
            self._valid_sparsity = self.gap.sparsity(model)

    def level_for_update(self, update_num: int) -> int:
        return level_for_update(update_num, self.top_level, self.cfg.alternate)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        if not self._optimizer_checked:  # once: the optimizer does not change during training
            if self.cfg.alternate and find_partitioned_optimizer(optimizer) is None:
                raise ValueError("--alternate needs --optimizer adam_for_partitioned_model")
            self._optimizer_checked = True
        if self.gap is not None:
            self.gap.before_train_step(model, optimizer, update_num)
        alignment = self._measure_alignment(sample, model, criterion, update_num)
        if self.gap is None:
            set_level(self._partitioned(model), self.level_for_update(update_num))
        loss, sample_size, logging_output = super().train_step(
            sample, model, criterion, optimizer, update_num, ignore_grad
        )
        if self.gap is not None:
            self.gap.after_backward(model)
        logging_output.update(alignment)
        return loss, sample_size, logging_output

    def _measure_alignment(self, sample, model, criterion, update_num) -> dict:
        """ATS Theorem 2's quantities on this update's first micro-batch, every N updates (off the
        training trajectory: see diagnostics.gradient_alignment)."""
        interval = self.cfg.gradient_alignment_interval
        if interval <= 0 or update_num % interval or update_num == self._last_measured_update:
            return {}
        self._last_measured_update = update_num
        start = time.perf_counter()
        params = [p for p in model.parameters() if p.requires_grad]
        model.train()
        if self.gap is not None:  # the masked network is the sparse model itself (x~ = m * x = x)
            masks_by_weight = {id(m.weight): m.mask for m in self.gap.modules(model).values()}
            masks = [masks_by_weight.get(id(p), True) for p in params]
            set_full = set_masked = lambda: None  # noqa: E731
        else:
            modules = self._partitioned(model)
            masks = [getattr(p, "partition_level", 1) == 1 for p in params]
            set_full = lambda: set_level(modules, self.top_level)  # noqa: E731
            set_masked = lambda: set_level(modules, 1)  # noqa: E731
        quantities = measure_alignment(
            model, lambda: criterion(model, sample)[0], set_full, set_masked, params, masks
        )
        quantities["grad_measure_seconds"] = time.perf_counter() - start
        return quantities

    def optimizer_step(self, optimizer, model, update_num):
        level = self.level_for_update(update_num)
        inner = find_partitioned_optimizer(optimizer)
        if inner is None:  # every parameter is active at every update (checked in train_step)
            return super().optimizer_step(optimizer, model, update_num)
        inner.set_update_mask(self._update_mask(model, inner, level))
        coef = self.cfg.alternate_lr_coef if level < self.top_level else 1.0
        if coef == 1.0:
            return optimizer.step()
        lr = optimizer.get_lr()
        optimizer.set_lr(lr * coef)
        try:
            optimizer.step()
        finally:
            optimizer.set_lr(lr)

    def _partitioned(self, model) -> List:
        """The partitioned layers of ``model`` (looked up once per model: used at every step)."""
        if self._partitioned_of is None or self._partitioned_of[0] is not model:
            self._partitioned_of = (model, list(partitioned_modules(model)))
            self._update_masks = {}
        return self._partitioned_of[1]

    def _update_mask(self, model, inner, level: int) -> List[bool]:
        """Per optimizer parameter: whether an update of ``level`` may change it (cached per level)."""
        self._partitioned(model)  # resets the cache for a new model
        if level not in self._update_masks:
            mask = [getattr(p, "partition_level", 1) <= level for p in model.parameters() if p.requires_grad]
            n_opt = sum(len(g["params"]) for g in inner.param_groups)
            mask += [True] * max(0, n_opt - len(mask))  # the criterion's parameters, if it has any
            self._update_masks[level] = mask
        return self._update_masks[level]

    # ------------------------------------------------------------------------ evaluation
    def valid_step(self, sample, model, criterion):
        modules = self._partitioned(model)
        lower = {}
        model.eval()
        for level in range(1, self.top_level):
            set_level(modules, level)
            with torch.no_grad():
                _, _, log = criterion(model, sample)
            name = _level_name(level)
            lower[f"{name}_loss"] = log["loss"]
            if "nll_loss" in log:
                lower[f"{name}_nll_loss"] = log["nll_loss"]
        set_level(modules, self.top_level)
        loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        logging_output.update(lower)
        if self.gap is not None and getattr(self, "_valid_sparsity", None) is not None:
            logging_output["gap_sparsity"] = self._valid_sparsity
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        for key in ALIGNMENT_KEYS:
            values = [log[key] for log in logging_outputs if key in log]
            if values:
                metrics.log_scalar(key, sum(values) / len(values), 1, round=4)
        sparsities = [log["gap_sparsity"] for log in logging_outputs if "gap_sparsity" in log]
        if sparsities:
            metrics.log_scalar("sparsity", sum(sparsities) / len(sparsities), 1, round=4)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        for level in range(1, (self.top_level if self.spec else 1)):
            name = _level_name(level)
            if not any(f"{name}_loss" in log for log in logging_outputs):
                continue
            loss = sum(log.get(f"{name}_loss", 0) for log in logging_outputs)
            metrics.log_scalar(f"{name}_loss", loss / max(sample_size, 1) / math.log(2), sample_size, round=3)
            if any(f"{name}_nll_loss" in log for log in logging_outputs):
                nll = sum(log.get(f"{name}_nll_loss", 0) for log in logging_outputs)
                metrics.log_scalar(f"{name}_nll_loss", nll / max(ntokens, 1) / math.log(2), ntokens, round=3)

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        for model in models:
            set_level(partitioned_modules(model), self.top_level if self.spec else 1)
        return super().inference_step(generator, models, sample, prefix_tokens, constraints)


def _seed(cfg) -> int:
    try:
        return int(cfg.seed)
    except Exception:
        return 1


def check_gap_checkpoint(path: str, cfg):
    """Resuming GaP from a checkpoint: it must hold masks, made with the same GaP configuration."""
    state = _load_lazily(path)
    keys = state.get("model", {}).keys()
    if not any(k.endswith(".mask") for k in keys):
        raise ValueError(
            f"checkpoint {path} has no GaP masks: prune a dense checkpoint first with "
            "fairseq-partitioned-prune, or train from scratch"
        )
    saved = (state.get("cfg") or {}).get("task") or {}
    fields = ["gap_sparsity", "gap_partitions", "gap_distribution", "gap_granularity", "gap_prunable"]
    if saved.get("alternate") and cfg.alternate:
        fields += ["gap_steps", "gap_step_epochs", "gap_step_updates", "gap_partition_strategy"]
    for name in fields:
        if name in saved and str(saved[name]) != str(getattr(cfg, name)):
            flag = "--" + name.replace("_", "-")
            raise ValueError(
                f"checkpoint {path} was trained with {flag} {saved[name]}, but this run uses {flag} "
                f"{getattr(cfg, name)}"
            )


def _level_name(level: int) -> str:
    return "core" if level == 1 else f"level{level}"


def _check_data_parallel(cfg):
    """A core update leaves the extension out of the graph (DESIGN.md)."""
    try:
        world, backend, find_unused = (
            cfg.distributed_world_size,
            cfg.ddp_backend,
            cfg.find_unused_parameters,
        )
    except Exception:
        return
    if world is None or world <= 1:
        return
    if backend in ("c10d", "pytorch_ddp") and not find_unused:
        raise ValueError(
            f"--alternate with --ddp-backend {backend} needs --find-unused-parameters "
            "(or use --ddp-backend legacy_ddp)"
        )
    if backend in ("fully_sharded", "slowmo"):
        raise ValueError(f"--alternate does not support --ddp-backend {backend}; use legacy_ddp or c10d")


def _load_lazily(path: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except (RuntimeError, ValueError):  # not a zip-format file: load it whole
        return torch.load(path, map_location="cpu", weights_only=False)


def read_checkpoint_spec(path: str) -> Optional[PartitionSpec]:
    """The partitioning a checkpoint was trained with (None for a checkpoint of another task)."""
    state = _load_lazily(path)
    saved = (state.get("task_state") or {}).get("partition")
    return None if saved is None else PartitionSpec.from_dict(saved)
