"""In-place distillation of the core from the full network, on the core updates of ATS.

A sub-network trained jointly with its super-network can learn from the super-network's own output
distribution on the same batch, detached (in-place distillation: universally slimmable networks, Yu &
Huang 2019; BigNAS, Once-for-All). ATS has that teacher for free: the full network is the same model
at its top level. On an update of a level below the top (``--alternate``'s core updates), from update
``--core-distill-start`` on (0-based, as fairseq's ``update_num``), with ALPHA = ``--core-distill`` and
T = ``--core-distill-temperature``, over the target tokens that are not padding:

    loss = (1 - ALPHA) * criterion(core) + ALPHA * T^2 * sum_tokens CE(softmax(z_top / T), log_softmax(z_core / T))

z_core are the core's logits (the forward pass the criterion runs), z_top the top level's logits on the
same micro-batch, computed without gradient. T^2 (Hinton, Vinyals, Dean 2015, sec. 2): the soft term's
gradient scales as 1 / T^2, so the factor keeps ALPHA its share of the update at any T (none at T = 1).

Choices, stated:
- The teacher's forward runs in eval mode (no dropout): its targets are its best estimate, not a noisy
  one, and it draws no random numbers, so the core's dropout draws what it would without distillation.
  ``--core-distill-teacher-dropout`` runs it in train mode instead (the slimmable networks' teacher is
  the widest network's own training forward, with dropout); its dropout then draws before the core's.
  Either way a run before the start is bit for bit ATS, and resume stays exact (fairseq seeds every
  update from ``--seed`` and the update number).
- With nested cores every level learns from the top level, not from the level above: the strongest
  teacher, and one teacher forward per update whatever the level.
- The teacher runs on the model inside any data-parallel wrapper: it is no part of the gradient, so
  the wrapper (``--find-unused-parameters``) sees the core's forward only.
- Logging keeps fairseq's meaning: ``loss`` and ``nll_loss`` are the criterion's (the core's
  label-smoothed cross-entropy and NLL on the data), comparable with ATS without distillation;
  ``distill_loss`` is the cross-entropy against the teacher at T, in bits per token, over the
  distilled updates only.
- Gradient-alignment diagnostics (ATS Theorem 2) measure the criterion's loss, the task's objective.
"""
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from .choice import is_gap

DISTILL_KEY = "distill_loss"


def check_distill_config(cfg):
    """One-line errors for values out of range, flags without effect, and GaP (no core to distil)."""
    alpha, temperature, start = cfg.core_distill, cfg.core_distill_temperature, cfg.core_distill_start
    if not 0 <= alpha <= 1:
        raise UsageError(f"--core-distill must be in [0, 1], got {alpha}")
    if not temperature > 0:
        raise UsageError(f"--core-distill-temperature must be > 0, got {temperature}")
    if start < 0:
        raise UsageError(f"--core-distill-start must be >= 0, got {start}")
    if alpha == 0:
        for flag, value, default in (("--core-distill-temperature", temperature, 1.0),
                                     ("--core-distill-start", start, 0),
                                     ("--core-distill-teacher-dropout", cfg.core_distill_teacher_dropout, False)):
            if value != default:
                raise UsageError(f"{flag} has no effect without --core-distill > 0")
        return
    if is_gap(cfg):
        raise UsageError("--core-distill distils an ATS core, GaP has none: drop --core-distill or --gap-sparsity")
    if cfg.alternate or cfg.core_loss_weight > 0:  # a training run: evaluation and export drop --alternate
        check_teacher(cfg)


def check_teacher(cfg):
    """A training run with --core-distill needs the full network trained beside the core. Without
    --alternate it is checked when a training run builds its model: evaluating or exporting a distilled
    checkpoint drops --alternate or sets --max-level 1, and needs no teacher."""
    if cfg.core_distill == 0:
        return
    if cfg.max_level == 1:
        raise UsageError("--core-distill needs the full network as its teacher: drop --max-level 1")
    if not (cfg.alternate or cfg.core_loss_weight > 0):
        raise UsageError("--core-distill distils the full network into the core on the core updates of "
                         "--alternate, or at every update with --core-loss-weight: add one of them")


@dataclass(frozen=True)
class CoreDistillation:
    alpha: float = 0.0
    temperature: float = 1.0
    start: int = 0
    teacher_dropout: bool = False  # the teacher's forward in train mode

    def active(self, update_num: int) -> bool:
        """Whether a (core) update distils; with ALPHA = 0 never, so no teacher forward ever runs."""
        return self.alpha > 0 and update_num >= self.start

    def criterion(self, criterion, set_teacher: Callable[[], None], set_student: Callable[[], None]):
        """``criterion`` with the distillation term; ``set_teacher``/``set_student`` set the model's level."""
        return DistillingCriterion(self, criterion, set_teacher, set_student)

    def targets(self, teacher_logits: torch.Tensor, criterion) -> torch.Tensor:
        """softmax(z_top / T) over the target positions ``criterion`` scores (no gradient through it)."""
        return F.softmax(_scored(teacher_logits.detach(), criterion).float() / self.temperature, dim=-1)

    def soft_loss(self, logits: torch.Tensor, targets: torch.Tensor, sample, criterion) -> torch.Tensor:
        """sum over non-padding target tokens of CE(targets, log_softmax(logits / T))."""
        lprobs = F.log_softmax(_scored(logits, criterion).float() / self.temperature, dim=-1)  # (B, T, V)
        keep = _scored(sample["target"], criterion).ne(criterion.padding_idx)  # (B, T)
        return -(targets * lprobs).sum(-1).masked_select(keep).sum()

    def mix(self, loss: torch.Tensor, soft_loss: torch.Tensor) -> torch.Tensor:
        """(1 - ALPHA) x the criterion's loss + ALPHA x T^2 x the soft loss."""
        return (1 - self.alpha) * loss + self.alpha * self.temperature * self.temperature * soft_loss


def _scored(x: torch.Tensor, criterion) -> torch.Tensor:
    """Without the target positions the criterion ignores (``--ignore-prefix-size``)."""
    n = getattr(criterion, "ignore_prefix_size", 0)
    return x[:, n:] if n > 0 else x


def criterion_and_output(criterion, model: nn.Module, sample, flag: str):
    """``criterion(model, sample)`` and the model's output of the forward pass it ran (one, or ``flag``'s
    one-line error)."""
    net = unwrapped(model)
    outputs = []
    hook = net.register_forward_hook(lambda module, args, output: outputs.append(output))
    try:
        result = criterion(model, sample)
    finally:
        hook.remove()
    if len(outputs) != 1:
        raise UsageError(f"{flag} needs a criterion with one forward pass per batch, such as "
                         "label_smoothed_cross_entropy")
    return result, outputs[0]


def unwrapped(model: nn.Module) -> nn.Module:
    """The model inside fairseq's data-parallel wrappers (each holds what it wraps as ``.module``)."""
    from fairseq.models import BaseFairseqModel

    while not isinstance(model, BaseFairseqModel) and isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    return model


class DistillingCriterion:
    """Called as fairseq's ``train_step`` calls a criterion: ``(model, sample) -> loss, sample_size, log``."""

    def __init__(self, distill: CoreDistillation, criterion, set_teacher, set_student):
        self.distill, self.criterion = distill, criterion
        self.set_teacher, self.set_student = set_teacher, set_student

    def __call__(self, model, sample):
        net = unwrapped(model)
        if getattr(net.decoder, "adaptive_softmax", None) is not None:
            raise UsageError("--core-distill needs the decoder's logits: drop --adaptive-softmax-cutoff")
        targets = self.teacher_probs(net, sample)
        (loss, sample_size, logging_output), output = criterion_and_output(
            self.criterion, model, sample, "--core-distill")
        distill = self.distill.soft_loss(output[0], targets, sample, self.criterion)
        logging_output[DISTILL_KEY] = distill.data
        return self.distill.mix(loss, distill), sample_size, logging_output

    def teacher_probs(self, net: nn.Module, sample) -> torch.Tensor:
        """softmax(z_top / T): the top level, no gradient, in eval mode (or as the model is, with
        ``teacher_dropout``); the model is set back as it was."""
        training = net.training
        self.set_teacher()
        if not self.distill.teacher_dropout:
            net.eval()
        try:
            with torch.no_grad():
                return self.distill.targets(net(**sample["net_input"])[0], self.criterion)
        finally:
            net.train(training)
            self.set_student()


def reduce_distill_metrics(logging_outputs: Sequence[dict]):
    """``distill_loss`` in bits per target token over the logs of distilled updates (as ``nll_loss``)."""
    logs = [log for log in logging_outputs if DISTILL_KEY in log]
    if not logs:
        return
    from fairseq import metrics

    ntokens = sum(log.get("ntokens", 0) for log in logs)
    total = sum(float(log[DISTILL_KEY]) for log in logs)
    metrics.log_scalar(DISTILL_KEY, total / max(ntokens, 1) / math.log(2), ntokens, round=3)
