"""Translation with a partitioned model: ATS (Mohtashami, Jaggi, Stich, AISTATS 2022) and GaP (Ma et al.,
ICLR 2022) as partial SGD (docs/design.md).

fairseq's translation task, whose every update trains a masked part of the model. Which part is the
business of one method object, chosen from the flags when the task is set up (as
``translation_moe`` turns its ``--method`` into one code path): ``AlternatingTraining`` (ATS; also
standard training of a partitioned model, or of its core alone) or ``GrowAndPrune`` (``--gap-sparsity
> 0``: C-GaP, a P-GaP worker, or fixed masks). The task's fairseq hooks only hand over to it
(``methods/base.py``), pass its update mask to the optimizer, and measure ATS Theorem 2's quantities
when asked.

Two words mean two ideas each here, so every flag's help says which. *Partitioned* (ATS): each layer
is split into a core and an extension (``--partitioned-linear-module-name``: a low-rank core,
``PartitionedRankLinear``, or a small-width one, ``PartitionedLinear``; ``modules.PartitionSpec``).
*Partitions* (GaP): groups of contiguous layers that GaP grows in turn (``--gap-partitions``;
``pruning/partitions.py``). And ``--alternate`` trains in turns: full and core updates (ATS), or one
GaP partition after another (C-GaP).
"""
import logging
import time
from dataclasses import dataclass, field
from typing import Optional

from fairseq import metrics
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II, OmegaConf, open_dict

from .. import checkpoints
from ..checkpoints import PLUGIN_KEYS
from ..config import TASK_NAME, config_value
from ..diagnostics import measure_alignment
from ..errors import UsageError
from ..methods import AlternatingTraining, GrowAndPrune, check_gap_config, is_gap, schedule_end, schedule_length
from ..methods.distillation import check_distill_config
from ..modules import MODULE_KINDS
from ..modules.partitioning import CORE_ATTENTION_SCALES, LOW_RANK_INITS
from ..optim import find_partitioned_optimizer
from ..optim.adam_for_partitioned_model import OPTIMIZER_NAME
from ..pruning import PruningSpec
from ..version import __version__, fairseq_distribution
from .gap_pruning_config import GapPruningConfig
from .checks import check_evaluated_checkpoints, check_flags_are_used, warn_if_alternate_changed

logger = logging.getLogger(__name__)

ALIGNMENT_KEYS = ("grad_overlap", "grad_norm_ratio", "grad_alignment", "grad_alpha", "grad_q", "grad_measure_seconds")


@dataclass
class TranslationWithPartitionedModelConfig(GapPruningConfig, TranslationConfig):
    """The flags of the task: fairseq's translation task's, GaP's pruning options and partitions
    (``GapPruningConfig``), and those below."""

    alternate: bool = field(
        default=False,
        metadata={"help": "train in turns; its meaning depends on the method. ATS (partitioned model): alternate "
                          "updates of the full network (even updates) and of the core (odd). GaP (--gap-sparsity > 0): "
                          "C-GaP, grow the GaP partitions one after another (--gap-steps); without it the masks are "
                          "fixed"},
    )
    alternate_lr_coef: float = field(
        default=1.0, metadata={"help": "ATS: the learning-rate multiplier on the core updates of --alternate"}
    )
    max_level: Optional[int] = field(
        default=None,
        metadata={
            "help": "ATS: the highest level to build, train and evaluate: 1 = the core alone, "
            "default = the full network"
        },
    )
    small_ratio: str = field(
        default="0.25",
        metadata={
            "help": "ATS: the core's size r in (0, 1], as a fraction of the full layer: its rank (low-rank "
            "core, PartitionedRankLinear) or width (small-width core, PartitionedLinear); a comma-separated "
            "increasing list gives nested cores (levels 1..L-1)"
        },
    )
    partitioned_linear_module_name: ChoiceEnum(list(MODULE_KINDS)) = field(
        default="PartitionedRankLinear",
        metadata={"help": "ATS: the core's kind: PartitionedRankLinear = low-rank core (y = (V U + W) x + b, the "
                          "core is U, V), PartitionedLinear = small-width core (the first r of the FFN units and of "
                          "each head's key/query dimension)"},
    )
    low_rank_init: ChoiceEnum(list(LOW_RANK_INITS)) = field(
        default="xavier",
        metadata={"help": "ATS, low-rank core (PartitionedRankLinear): U and V xavier-initialised each (the "
                          "product V U starts smaller than a dense layer), or scaled so that V U starts as a dense "
                          "layer (dense)"},
    )
    core_attention_scale: ChoiceEnum(list(CORE_ATTENTION_SCALES)) = field(
        default="full",
        metadata={"help": "ATS, small-width core (PartitionedLinear): a core attention head scales q.k by 1/sqrt "
                          "of the full head's width (full) or of its own (core)"},
    )
    core_decoder_layers: int = field(
        default=0,
        metadata={"help": "ATS, depth core: K >= 1, the core is the model whose decoder has its first K layers "
                          "(then the decoder's final layer norm and the same output projection; the encoder is "
                          "shared whole), a third kind beside --partitioned-linear-module-name's. 0 = off"},
    )
    core_loss_weight: float = field(
        default=0.0,
        metadata={"help": "depth core (--core-decoder-layers), every update instead of --alternate: w > 0, each "
                          "update minimises the full network's loss + w x the core's, the core's logits read from "
                          "the full forward's decoder state after layer K (0 = off)"},
    )
    gradient_alignment_interval: int = field(
        default=0,
        metadata={"help": "diagnostics: every N updates, log the gradient overlap, norm ratio, alignment, alpha "
                          "and q of ATS Theorem 2 between the full and the masked network (0 = off)"},
    )
    gap_step_epochs: int = field(default=0, metadata={"help": "C-GaP: T, the epochs of one step"})
    gap_step_updates: int = field(default=0, metadata={"help": "C-GaP: N, the updates of one step (instead of T)"})
    gap_steps: int = field(default=0, metadata={"help": "C-GaP: K, the grow-and-prune steps before the final prune"})
    gap_finetune_epochs: int = field(
        default=0, metadata={"help": "C-GaP: T', the fine-tune epochs after the last step (with --gap-step-epochs)"}
    )
    gap_finetune_updates: int = field(
        default=0, metadata={"help": "C-GaP: N', the fine-tune updates after the last step (with --gap-step-updates)"}
    )
    gap_first_step: ChoiceEnum(["dense", "masked"]) = field(
        default="dense",
        metadata={"help": "GaP: where what a run from scratch grows first starts. dense: at its random initial "
                          "values (the official code); masked: at the random mask's zeros, like every later step"},
    )
    gap_partition_strategy: ChoiceEnum(["cyclic", "random"]) = field(
        default="cyclic",
        metadata={"help": "C-GaP: what a step grows. cyclic: the GaP partitions in turn; random: 1/kappa of the "
                          "matrices at random, not those of the step before (the official code's draw)"},
    )
    gap_grow_partition: int = field(
        default=-1, metadata={"help": "P-GaP worker: grow this GaP partition (0-based) for the whole run"}
    )
    gap_grow_step: int = field(
        default=-1,
        metadata={"help": "C-GaP split into processes (the official code runs each step as its own process): "
                          "grow what step k grows, for the whole run"},
    )
    # Read from the rest of the configuration (no flags of their own).
    restore_file: str = II("checkpoint.restore_file")
    save_dir: str = II("checkpoint.save_dir")
    checkpoint_suffix: str = II("checkpoint.checkpoint_suffix")
    finetune_from_model: Optional[str] = II("checkpoint.finetune_from_model")
    continue_once: Optional[str] = II("checkpoint.continue_once")
    distributed_world_size: int = II("distributed_training.distributed_world_size")
    ddp_backend: str = II("distributed_training.ddp_backend")
    find_unused_parameters: bool = II("distributed_training.find_unused_parameters")
    max_epoch: int = II("optimization.max_epoch")
    max_update: int = II("optimization.max_update")
    lr_scheduler_name: Optional[str] = II("lr_scheduler._name")
    seed: int = II("common.seed")
    eval_path: Optional[str] = II("common_eval.path")  # fairseq-generate's --path
    # In-place distillation of the core from the full network (methods/distillation.py).
    core_distill: float = field(
        default=0.0,
        metadata={"help": "ATS, in-place distillation: ALPHA in [0, 1]: the core updates of --alternate minimise "
                          "(1 - ALPHA) x the criterion + ALPHA x the cross-entropy against the full network's output "
                          "on the same batch (0 = off: no teacher forward)"},
    )
    core_distill_temperature: float = field(
        default=1.0, metadata={"help": "--core-distill: T > 0, teacher and core distributions at temperature T "
                                       "(the term x T^2)"}
    )
    core_distill_start: int = field(
        default=0, metadata={"help": "--core-distill: no distillation in the first U updates (update numbers 0..U-1)"}
    )
    core_distill_teacher_dropout: bool = field(
        default=False, metadata={"help": "--core-distill: the teacher's forward in train mode, with dropout (default: "
                                         "eval mode, its best estimate)"}
    )


@register_task(TASK_NAME, dataclass=TranslationWithPartitionedModelConfig)
class TranslationWithPartitionedModelTask(TranslationTask):
    cfg: TranslationWithPartitionedModelConfig

    def __init__(self, cfg: TranslationWithPartitionedModelConfig, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        check_flags_are_used(cfg, TranslationWithPartitionedModelConfig)
        spec = check_gap_config(cfg)
        stop_where_cgap_ends(cfg)
        check_distill_config(cfg)
        check_evaluated_checkpoints(cfg)
        self.method = GrowAndPrune(cfg, spec, seed=_seed(cfg)) if is_gap(cfg) else AlternatingTraining(cfg)
        if cfg.gradient_alignment_interval < 0:
            raise UsageError(f"--gradient-alignment-interval must be >= 0, got {cfg.gradient_alignment_interval}")
        if cfg.alternate or is_gap(cfg):
            _check_data_parallel(cfg)
        self._optimizer_checked = False
        self._last_measured_update = -1
        dist, version = fairseq_distribution()
        logger.info(f"fairseq_partitioned {__version__} on {dist} {version}")

    # ----------------------------------------------------------------------------- model
    def build_model(self, cfg, from_checkpoint=False):
        path, state = (None, None) if from_checkpoint else checkpoints.read_for_resume(self.cfg)
        if path is not None:  # a training run that resumes from a checkpoint
            self.method.resume_from(path, state)
            warn_if_alternate_changed(self.cfg, path, state)
        model = self.method.build_model(super().build_model(cfg, from_checkpoint), from_checkpoint)
        if path is not None:
            checkpoints.check_architecture(path, state, model, cfg)
        return model

    def state_dict(self):
        return {**super().state_dict(), **self.method.state_dict(), "plugin_version": __version__}

    def load_state_dict(self, state_dict):
        """The task state of a checkpoint about to be evaluated (fairseq-generate, export)."""
        state = dict(state_dict)
        ours = {k: state.pop(k) for k in PLUGIN_KEYS if k in state}
        if "gap" in ours and self.cfg.max_level is not None:
            raise UsageError(f"--max-level {self.cfg.max_level}: the checkpoint holds a GaP (sparse) model, which has "
                             "no core; drop --max-level")
        if "gap" not in ours and is_gap(self.cfg):
            raise UsageError(f"--gap-sparsity {self.cfg.gap_sparsity}: the checkpoint has no GaP masks (the masks of "
                             "a GaP checkpoint come with it); drop --gap-sparsity")
        if "gap" in ours and not isinstance(self.method, GrowAndPrune):
            self.method = GrowAndPrune(self.cfg, PruningSpec.from_args(self.cfg), seed=_seed(self.cfg), evaluated=ours["gap"])
        self.method.load_state_dict(ours)
        super().load_state_dict(state)

    # -------------------------------------------------------------------------- training
    def begin_epoch(self, epoch, model):
        super().begin_epoch(epoch, model)
        self.method.begin_epoch(epoch, model)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        inner = find_partitioned_optimizer(optimizer)
        if not self._optimizer_checked:  # once: the optimizer does not change during training
            self._check_optimizer(inner)
        self.method.begin_update(model, optimizer, update_num)
        if inner is not None:
            self.hand_over_update_mask(inner, model, update_num)
        alignment = self._measure_alignment(sample, model, criterion, optimizer, update_num)
        criterion = self.method.training_criterion(model, criterion, update_num)
        loss, sample_size, logging_output = super().train_step(
            sample, model, criterion, optimizer, update_num, ignore_grad
        )
        logging_output.update(alignment)
        return loss, sample_size, logging_output

    def hand_over_update_mask(self, inner, model, update_num):
        """Give our optimizer (``inner``) the update mask of update ``update_num``: it holds until its
        next step."""
        mask = self.method.update_mask(model, update_num)
        extra = max(0, inner.num_parameters - len(mask))  # the criterion's parameters, if it has any
        inner.set_update_mask(list(mask) + [True] * extra)

    def _check_optimizer(self, inner):
        """Partial training needs our optimizer: it applies the update mask (docs/design.md)."""
        if inner is None and (self.cfg.alternate or is_gap(self.cfg)):
            flag = "--gap-sparsity" if is_gap(self.cfg) else "--alternate"
            raise UsageError(f"{flag} needs --optimizer {OPTIMIZER_NAME}")
        self._optimizer_checked = True

    def _measure_alignment(self, sample, model, criterion, optimizer, update_num) -> dict:
        """ATS Theorem 2's quantities on this update's first micro-batch, every N updates (off the
        training trajectory: see diagnostics.gradient_alignment)."""
        interval = self.cfg.gradient_alignment_interval
        if interval <= 0 or update_num % interval or update_num == self._last_measured_update:
            return {}
        self._last_measured_update = update_num
        start = time.perf_counter()
        params = [p for p in model.parameters() if p.requires_grad]
        model.train()
        masks, set_full, set_masked = self.method.alignment_setup(model, params)
        quantities = measure_alignment(
            model, lambda: criterion(model, sample)[0], set_full, set_masked, params, masks
        )
        self.method.begin_update(model, optimizer, update_num)  # the forward mask of this update again
        quantities["grad_measure_seconds"] = time.perf_counter() - start
        return quantities

    def optimizer_step(self, optimizer, model, update_num):
        coef = self.method.lr_coef(update_num)
        if coef == 1.0:
            return optimizer.step()
        lr = optimizer.get_lr()
        optimizer.set_lr(lr * coef)
        try:
            optimizer.step()
        finally:
            optimizer.set_lr(lr)

    # ------------------------------------------------------------------------ evaluation
    def begin_valid_epoch(self, epoch, model):
        super().begin_valid_epoch(epoch, model)
        self.method.begin_validation(model)

    def valid_step(self, sample, model, criterion):
        model.eval()
        extra = self.method.valid_step(model, criterion, sample)
        loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        logging_output.update(extra)
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        for key in ALIGNMENT_KEYS:
            values = [log[key] for log in logging_outputs if key in log]
            if values:
                metrics.log_scalar(key, sum(values) / len(values), 1, round=4)
        self.method.reduce_metrics(logging_outputs)

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        self.method.begin_inference(models)
        return super().inference_step(generator, models, sample, prefix_tokens, constraints)


def _seed(cfg) -> int:
    return int(config_value(cfg, "seed", 1))


def stop_where_cgap_ends(cfg):
    """The one place the plugin writes fairseq's configuration: C-GaP's length, K T + T' epochs or K N + N'
    updates, is fairseq's --max-epoch or --max-update; when it is not given (check_gap_config has checked
    one that is), it is set here in the run's configuration, which fairseq reads after setting up the task."""
    if not (is_gap(cfg) and cfg.alternate):
        return
    flag, end = schedule_end(cfg)
    name = flag[2:].replace("-", "_")
    root = cfg._get_parent() if OmegaConf.is_config(cfg) else None
    if not config_value(cfg, name, 0) and root is not None and "optimization" in root:
        with open_dict(root.optimization):
            root.optimization[name] = end
        logger.info(f"GaP: C-GaP ends after {schedule_length(cfg)}: training stops there ({flag} {end})")


def _check_data_parallel(cfg):
    """A core update leaves the extension out of the graph (docs/design.md)."""
    world = config_value(cfg, "distributed_world_size", 1)
    backend = config_value(cfg, "ddp_backend")
    if world <= 1:
        return
    if backend in ("c10d", "pytorch_ddp") and not config_value(cfg, "find_unused_parameters", False):
        raise UsageError(
            f"--alternate with --ddp-backend {backend} needs --find-unused-parameters "
            "(or use --ddp-backend legacy_ddp)"
        )
    if backend in ("fully_sharded", "slowmo"):
        raise UsageError(f"--alternate does not support --ddp-backend {backend}; use legacy_ddp or c10d")
