"""What the console scripts share: reading checkpoints, and the configuration of plain fairseq."""
import os
from dataclasses import fields
from typing import Dict, List

import torch
from fairseq import checkpoint_utils
from fairseq.tasks.translation import TranslationConfig
from omegaconf import OmegaConf, open_dict

from ..tasks.translation_with_partitioned_model import TASK_NAME, TranslationWithPartitionedModelConfig

ADAM_FIELDS = ("adam_betas", "adam_eps", "weight_decay", "use_old_adam", "fp16_adam_stats", "tpu", "lr")


def load_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return checkpoint_utils.load_checkpoint_to_cpu(path)


def save_checkpoint(state: dict, path: str):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    checkpoint_utils.torch_persistent_save(state, path)


def mask_keys(model_state: Dict[str, torch.Tensor]) -> List[str]:
    """The GaP mask buffers of a model state (``<layer>.mask``, beside ``<layer>.weight``)."""
    return [k for k in model_state if k.endswith(".mask") and k[: -len("mask")] + "weight" in model_state]


def is_gap_checkpoint(state: dict) -> bool:
    return bool(mask_keys(state["model"]))


def as_plain_translation(state: dict) -> dict:
    """``state`` with the configuration of fairseq's own ``translation`` task and ``adam`` optimizer."""
    cfg = state["cfg"]
    with open_dict(cfg):
        names = {f.name for f in fields(TranslationConfig)}
        task_cfg = {k: v for k, v in OmegaConf.to_container(cfg.task).items() if k in names}
        cfg.task = OmegaConf.create({**task_cfg, "_name": "translation"})
        if cfg.optimizer is not None:
            optimizer = OmegaConf.to_container(cfg.optimizer)
            cfg.optimizer = OmegaConf.create({"_name": "adam", **{k: optimizer[k] for k in ADAM_FIELDS if k in optimizer}})
        cfg.common.user_dir = None
    state["task_state"] = {k: v for k, v in (state.get("task_state") or {}).items() if k not in ("partition", "gap")}
    state.pop("last_optimizer_state", None)  # per-parameter state of another model: does not apply
    return state


def as_partitioned_task(state: dict, **task_overrides) -> dict:
    """``state`` with the configuration of this plugin's task (from ``translation`` or ours)."""
    cfg = state["cfg"]
    with open_dict(cfg):
        # our fields at their defaults (not those read from other groups, "${...}"), then the saved
        # task's values, then the overrides
        defaults = {
            f.name: f.default for f in fields(TranslationWithPartitionedModelConfig)
            if not (isinstance(f.default, str) and f.default.startswith("${"))
        }
        task = {**defaults, **OmegaConf.to_container(cfg.task), **task_overrides, "_name": TASK_NAME}
        cfg.task = OmegaConf.create({k: (v.value if hasattr(v, "value") else v) for k, v in task.items()})
    return state
