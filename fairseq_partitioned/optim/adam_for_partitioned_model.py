"""Adam that applies the update mask of partial SGD (ATS paper, Algorithm 2; DESIGN.md).

A parameter outside the update mask is left exactly as it was, and so is its optimizer state (moments,
step count): for the duration of the step it is simply not in the optimizer's parameter groups, so
fairseq's own Adam (AdamW-style decoupled weight decay) never sees it. With every parameter active the
update is bit for bit fairseq's ``--optimizer adam``.

The mask is a list aligned with the optimizer's parameters, which are the model's trainable parameters
in order, or, with ``--fp16``/``--bf16``, fp32 copies of them in the same order (DESIGN.md: no lookup by
identity). The task sets it before every update (``set_update_mask``); it is used for one step only.
"""
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Union

import torch
from fairseq.optim import register_optimizer
from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig
from omegaconf import II

logger = logging.getLogger(__name__)

TASK_NAME = "translation_with_partitioned_model"

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


@register_optimizer("adam_for_partitioned_model", dataclass=AdamForPartitionedModelConfig)
class AdamForPartitionedModel(FairseqAdam):
    def __init__(self, cfg: AdamForPartitionedModelConfig, params):
        _check_config(cfg)
        super().__init__(cfg, params)
        self._update_mask: Optional[List[Mask]] = None

    def set_update_mask(self, mask: Optional[Sequence[Mask]]):
        """Mask for the next step: per parameter, True (update), False (leave untouched) or a 0/1
        tensor of the parameter's shape (update only those elements). None: update everything."""
        if mask is not None:
            n = sum(len(g["params"]) for g in self.param_groups)
            if len(mask) != n:
                raise ValueError(
                    f"update mask has {len(mask)} entries but the optimizer holds {n} parameters; "
                    "with --fp16/--bf16 pass --fp16-no-flatten-grads"
                )
        self._update_mask = None if mask is None else list(mask)

    def step(self, closure=None, scale=1.0, groups=None):
        with self._only_active():
            super().step(closure, scale=scale, groups=groups)

    @contextmanager
    def _only_active(self):
        mask, self._update_mask = self._update_mask, None
        if mask is None:
            yield
            return
        saved = [g["params"] for g in self.param_groups]
        i = 0
        for g in self.param_groups:
            active = []
            for p in g["params"]:
                m = mask[i]
                i += 1
                if isinstance(m, torch.Tensor):
                    if p.grad is not None:
                        p.grad.mul_(m.to(p.grad.dtype))
                    active.append(p)
                elif m:
                    active.append(p)
            g["params"] = active
        try:
            yield
        finally:
            for g, params in zip(self.param_groups, saved):
                g["params"] = params


def _check_config(cfg):
    try:
        task_name = cfg.task_name
    except Exception:  # no task in this configuration (e.g. the optimizer built on its own)
        task_name = None
    if task_name is not None and task_name != TASK_NAME:
        raise ValueError(
            f"--optimizer adam_for_partitioned_model needs --task {TASK_NAME} (got --task {task_name})"
        )
    if getattr(cfg, "fp16_adam_stats", False):
        raise ValueError("--fp16-adam-stats is not supported by --optimizer adam_for_partitioned_model")
    half = _get(cfg, "fp16") or _get(cfg, "bf16")
    memory_efficient = _get(cfg, "memory_efficient_fp16") or _get(cfg, "memory_efficient_bf16")
    if half and not memory_efficient and not _get(cfg, "fp16_no_flatten_grads"):
        raise ValueError(
            "--optimizer adam_for_partitioned_model with --fp16/--bf16 needs --fp16-no-flatten-grads "
            "(flattened fp32 copies cannot be masked per parameter)"
        )


def _get(cfg, name):
    try:
        return bool(getattr(cfg, name, False))
    except Exception:
        return False


def find_partitioned_optimizer(optimizer) -> Optional[AdamForPartitionedModel]:
    """Our optimizer inside fairseq's wrappers (FP16Optimizer, MemoryEfficientFP16Optimizer, AMP)."""
    seen = 0
    while optimizer is not None and seen < 4:
        if isinstance(optimizer, AdamForPartitionedModel):
            return optimizer
        optimizer = getattr(optimizer, "fp32_optimizer", None) or getattr(optimizer, "wrapped_optimizer", None)
        seen += 1
    return None
