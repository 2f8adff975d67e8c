"""Adam that applies the update mask of partial SGD (ATS paper, Algorithm 2; docs/design.md).

The one place where an update mask is applied, for both methods. Per parameter the mask is

- True: update it, as fairseq's ``--optimizer adam`` would;
- False (ATS: the extension on a core update): leave it exactly as it was, and its optimizer state
  (moments, step count): for the step it is simply not in the parameter groups, so fairseq's Adam,
  with its decoupled weight decay, never sees it;
- a bool tensor of the parameter's shape (GaP: a sparse weight): update only those elements. The
  gradient elsewhere is zeroed before the gradient norm is taken (clipping sees the gradient of the
  masked network) and before the step; the values and moments there are zero (``zero_outside_``), and
  an Adam step with zero gradient leaves zero values and zero moments exactly zero.

With every parameter active the update is bit for bit fairseq's ``--optimizer adam``.

The mask is a list aligned with the optimizer's parameters, which are the model's trainable parameters
in order, or, with ``--fp16``/``--bf16``, fp32 copies of them in the same order (docs/design.md: no lookup by
identity). The task hands it over before every update (``set_update_mask``); it holds until the step.
When a method changes which elements it trains (GaP grows or prunes a partition), it tells the
optimizer which: ``zero_outside_`` resets the values (of the fp32 copies) and moments outside the new
masks, so a grown weight starts at zero with fresh moments; ``copy_from_model_`` hands the fp32 copies
values the method put back into the model (GaP's set-aside values after a resume).
"""
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import torch
from fairseq.optim import register_optimizer
from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig
from omegaconf import II

from ..config import TASK_NAME, config_value
from ..errors import UsageError

logger = logging.getLogger(__name__)

OPTIMIZER_NAME = "adam_for_partitioned_model"
MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

Mask = Union[bool, torch.Tensor]


@dataclass
class AdamForPartitionedModelConfig(FairseqAdamConfig):
    # Read from the rest of the configuration (no flags of their own), to reject what cannot work
    # before any training starts.
    task_name: Optional[str] = II("task._name")
    fp16: bool = II("common.fp16")
    bf16: bool = II("common.bf16")
    fp16_no_flatten_grads: bool = II("common.fp16_no_flatten_grads")
    memory_efficient_fp16: bool = II("common.memory_efficient_fp16")
    memory_efficient_bf16: bool = II("common.memory_efficient_bf16")


@register_optimizer(OPTIMIZER_NAME, dataclass=AdamForPartitionedModelConfig)
class AdamForPartitionedModel(FairseqAdam):
    def __init__(self, cfg: AdamForPartitionedModelConfig, params):
        _check_config(cfg)
        super().__init__(cfg, params)
        self._update_mask: Optional[List[Mask]] = None
        self._grads_masked = False

    def set_update_mask(self, mask: Optional[Sequence[Mask]]):
        """Mask for the next step: per parameter, True (update), False (leave untouched) or a bool
        tensor of the parameter's shape (update only those elements). None: update everything."""
        if mask is not None:
            n = self.num_parameters
            if len(mask) != n:
                raise ValueError(
                    f"update mask has {len(mask)} entries but the optimizer holds {n} parameters; "
                    "with --fp16/--bf16 pass --fp16-no-flatten-grads"
                )
        self._update_mask = None if mask is None else list(mask)
        self._grads_masked = False

    def clip_grad_norm(self, max_norm, aggregate_norm_fn=None):
        # fairseq's fp16/AMP wrappers call this on the fp32 copies too, after their grads are synced
        self._mask_grads()
        return super().clip_grad_norm(max_norm, aggregate_norm_fn)

    def step(self, closure=None, scale=1.0, groups=None):
        self._mask_grads()
        with self._only_active():
            super().step(closure, scale=scale, groups=groups)

    @property
    def num_parameters(self) -> int:
        return sum(len(g["params"]) for g in self.param_groups)

    def _flat_params(self) -> List[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def _mask_grads(self):
        """Zero the gradient outside every element mask (once per update)."""
        if self._update_mask is None or self._grads_masked:
            return
        for p, m in zip(self._flat_params(), self._update_mask):
            if isinstance(m, torch.Tensor) and p.grad is not None:
                p.grad.masked_fill_(~m, 0)
        self._grads_masked = True

    @contextmanager
    def _only_active(self):
        mask, self._update_mask = self._update_mask, None
        if mask is None:
            yield
            return
        saved = [g["params"] for g in self.param_groups]
        masks = iter(mask)
        for g in self.param_groups:
            g["params"] = [p for p in g["params"] if next(masks) is not False]
        try:
            yield
        finally:
            for g, params in zip(self.param_groups, saved):
                g["params"] = params

    @torch.no_grad()
    def zero_outside_(self, masks: Dict[int, torch.Tensor]):
        """Parameter index -> its new element mask: outside it, the values (of the optimizer's copies:
        the model's weights themselves in fp32) and the Adam moments become zero."""
        params = self._flat_params()
        for i, keep in masks.items():
            p = params[i]
            keep = keep.to(p.device)
            p.masked_fill_(~keep, 0)
            state = self.optimizer.state.get(p, {})
            for key in MOMENTS:
                if key in state:
                    state[key].masked_fill_(~keep, 0)


    @torch.no_grad()
    def copy_from_model_(self, indices: Sequence[int], weights: Sequence[torch.Tensor]):
        """The optimizer's copies of these parameters take the model's values (fp16/bf16: the fp32
        copies, which fairseq rebuilt from the model when it loaded a checkpoint; fp32: the weights
        themselves, nothing changes)."""
        params = self._flat_params()
        for i, weight in zip(indices, weights):
            if params[i] is not weight:
                params[i].copy_(weight)


def _check_config(cfg):
    task_name = config_value(cfg, "task_name")  # None: the optimizer built on its own
    if task_name is not None and task_name != TASK_NAME:
        raise UsageError(f"--optimizer {OPTIMIZER_NAME} needs --task {TASK_NAME} (got --task {task_name})")
    if getattr(cfg, "fp16_adam_stats", False):
        raise UsageError(f"--fp16-adam-stats is not supported by --optimizer {OPTIMIZER_NAME}")
    half = config_value(cfg, "fp16", False) or config_value(cfg, "bf16", False)
    memory_efficient = config_value(cfg, "memory_efficient_fp16", False) or config_value(cfg, "memory_efficient_bf16", False)
    if half and not memory_efficient and not config_value(cfg, "fp16_no_flatten_grads", False):
        raise UsageError(
            f"--optimizer {OPTIMIZER_NAME} with --fp16/--bf16 needs --fp16-no-flatten-grads "
            "(flattened fp32 copies cannot be masked per parameter)"
        )


def find_partitioned_optimizer(optimizer) -> Optional[AdamForPartitionedModel]:
    """Our optimizer inside fairseq's wrappers (FP16Optimizer, MemoryEfficientFP16Optimizer, AMP)."""
    seen = 0
    while optimizer is not None and seen < 4:
        if isinstance(optimizer, AdamForPartitionedModel):
            return optimizer
        optimizer = getattr(optimizer, "fp32_optimizer", None) or getattr(optimizer, "wrapped_optimizer", None)
        seen += 1
    return None
