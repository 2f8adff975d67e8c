"""What a checkpoint of this plugin holds, and the one place that reads and writes checkpoints.

A checkpoint is fairseq's: ``model`` (the weights, and for GaP a bool ``<layer>.mask`` beside every
prunable ``<layer>.weight``), ``cfg``, ``last_optimizer_state``, ``extra_state`` and ``task_state``. The
plugin's own state is in ``task_state``:

- ``partition``: how an ATS model is partitioned (module kind, ratios, levels built);
- ``gap``: GaP's sparsity, prunable weights and schedule position (the grown partition, and the dense
  values set aside while the model is validated pruned);
- ``counts``: the parameter counts of the networks the checkpoint holds (read by the scripts; never
  parsed from a log);
- ``plugin_version``: the version of this plugin that wrote it.

Checkpoints of version 0.1 kept GaP's schedule position on the layers (``<layer>._extra_state``);
``gap_state`` reads it from there.
"""
import os
from dataclasses import fields
from typing import Dict, List, Optional

import torch
from fairseq import checkpoint_utils
from fairseq.tasks.translation import TranslationConfig
from omegaconf import OmegaConf, open_dict

TASK_NAME = "translation_with_partitioned_model"
LEGACY_EXTRA_STATE = "._extra_state"  # version 0.1: GaP's schedule position on each masked layer
PLUGIN_KEYS = ("partition", "gap", "counts", "plugin_version")  # this plugin's entries of task_state
ADAM_FIELDS = ("adam_betas", "adam_eps", "weight_decay", "use_old_adam", "fp16_adam_stats", "tpu", "lr")


# ------------------------------------------------------------------------------------ files


def load(path: str) -> dict:
    """The whole checkpoint, upgraded by fairseq (``cfg`` as an OmegaConf config)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return checkpoint_utils.load_checkpoint_to_cpu(path)


def load_lazily(path: str) -> dict:
    """The checkpoint as saved, its tensors memory-mapped (cheap for a look at a few fields)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except (RuntimeError, ValueError):  # not a zip-format file: load it whole
        return torch.load(path, map_location="cpu", weights_only=False)


def save(state: dict, path: str):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    checkpoint_utils.torch_persistent_save(state, path)


def restore_path(cfg) -> Optional[str]:
    """The checkpoint a training run with task config ``cfg`` will resume from, as fairseq's
    ``checkpoint_utils.load_checkpoint`` chooses it; None when it starts afresh (or ``cfg`` is not a
    training configuration)."""
    restore_file = config_value(cfg, "restore_file")
    if restore_file is None:
        return None
    suffix = config_value(cfg, "checkpoint_suffix", "")
    if restore_file == "checkpoint_last.pt":
        path = os.path.join(config_value(cfg, "save_dir", "."), f"checkpoint_last{suffix}.pt")
        if not os.path.isfile(path):
            path = config_value(cfg, "continue_once") or config_value(cfg, "finetune_from_model")
    else:
        path = restore_file.replace(".pt", suffix + ".pt") if suffix else restore_file
    return path if path and os.path.isfile(path) else None


def config_value(cfg, name: str, default=None):
    """``cfg.name``; ``default`` if it is missing, None, or an interpolation this config cannot
    resolve (a task config outside a training configuration reads nothing from the other groups)."""
    try:
        value = getattr(cfg, name)
    except Exception:  # omegaconf's interpolation errors have no common base class
        return default
    return default if value is None else value


# ------------------------------------------------------------------------------- task state


def task_state(state: dict) -> dict:
    return state.get("task_state") or {}


def task_name(state: dict) -> Optional[str]:
    cfg = state.get("cfg") or {}
    return (cfg.get("task") or {}).get("_name")


def gap_state(state: dict) -> Optional[dict]:
    """GaP's state of a checkpoint (None for a checkpoint without masks). A version 0.1 checkpoint
    kept the schedule position on the layers: it is read from there."""
    gap = task_state(state).get("gap")
    if gap is None:
        return None
    gap = {"grown": {}, "set_aside": {}, **gap}
    for key, value in state["model"].items():
        if key.endswith(LEGACY_EXTRA_STATE) and isinstance(value, dict):
            weight = key[: -len(LEGACY_EXTRA_STATE)] + ".weight"
            if value.get("grown_at") is not None:
                gap["grown"][weight] = value["grown_at"]
            if value.get("stash") is not None:
                gap["set_aside"][weight] = value["stash"]
    return gap


def sparse_counts(model_state: Dict[str, torch.Tensor]) -> Dict[str, int]:
    """A GaP model's parameters that are not masked out (the weights a sparse deployment stores)."""
    pruned = sum(int((~m).sum()) for m in masks(model_state).values())
    return {"sparse": count_tensors(model_state) - pruned}


def parameter_counts(state: dict) -> Dict[str, int]:
    """Parameters of the networks a checkpoint holds, as its task state records them: ``core`` and
    ``full`` (ATS: the full network counted as the standard Transformer it converts to), ``sparse``
    (GaP: the weights its masks keep). A checkpoint without them (plain fairseq: ``full``; a GaP one
    of version 0.1: ``sparse``) is counted from its tensors (tied tensors once)."""
    counts = task_state(state).get("counts")
    if counts is not None:
        return dict(counts)
    if masks(state["model"]):
        return sparse_counts(state["model"])
    return {"full": count_tensors(state["model"])}


def count_tensors(model_state: Dict[str, torch.Tensor]) -> int:
    """Parameters in a model state (tied tensors once; masks, GaP state and fairseq's version buffers
    are not parameters)."""
    seen, total = set(), 0
    for name, value in model_state.items():
        if not torch.is_tensor(value) or not value.is_floating_point():
            continue
        if name.endswith((".version", "._float_tensor")):
            continue
        key = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape))
        if key in seen:
            continue
        seen.add(key)
        total += value.numel()
    return total


# ------------------------------------------------------------------------------------ masks


def masks(model_state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Prunable weight name -> its GaP mask (``<layer>.mask`` beside ``<layer>.weight``)."""
    return {
        k[: -len("mask")] + "weight": v for k, v in model_state.items()
        if k.endswith(".mask") and k[: -len("mask")] + "weight" in model_state
    }


def set_masks(model_state: Dict[str, torch.Tensor], new_masks: Dict[str, torch.Tensor]):
    """Give the named weights these masks: a masked weight becomes exactly zero (in place of the dict)."""
    for name, mask in new_masks.items():
        model_state[name] = model_state[name].masked_fill(~mask, 0)
        model_state[name[: -len("weight")] + "mask"] = mask
        model_state.pop(name[: -len("weight")] + LEGACY_EXTRA_STATE[1:], None)


def with_set_aside(state: dict) -> Dict[str, torch.Tensor]:
    """A GaP checkpoint's model state with its set-aside dense values (and masks) put back: the model as
    training held it (a grown partition dense), not as saved (at S)."""
    model_state = without_legacy_state(state["model"])
    for name, kept in (gap_state(state) or {}).get("set_aside", {}).items():
        model_state[name] = kept["weight"]
        model_state[name[: -len("weight")] + "mask"] = kept["mask"]
    return model_state


def without_legacy_state(model_state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The model state without version 0.1's GaP state on the layers."""
    return {k: v for k, v in model_state.items() if not k.endswith(LEGACY_EXTRA_STATE)}


def without_masks(model_state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The model state of a plain fairseq Transformer: masks (and version 0.1 GaP state) dropped."""
    masked = masks(model_state)
    return {
        k: v for k, v in without_legacy_state(model_state).items()
        if not (k.endswith(".mask") and k[: -len("mask")] + "weight" in masked)
    }


def nonzero_where_masked(model_state: Dict[str, torch.Tensor]) -> List[str]:
    """The prunable weights that hold nonzero values where their mask is False (there should be none)."""
    return [name for name, mask in masks(model_state).items() if torch.any(model_state[name][~mask] != 0)]


# ------------------------------------------------------------------------------ conversions


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
    state["task_state"] = {k: v for k, v in task_state(state).items() if k not in PLUGIN_KEYS}
    state.pop("last_optimizer_state", None)  # per-parameter state of another model: does not apply
    return state


def as_partitioned_task(state: dict, **task_overrides) -> dict:
    """``state`` with this plugin's task (from ``translation`` or ours) and the given task settings;
    the task's other settings take their defaults when the task is built."""
    cfg = state["cfg"]
    with open_dict(cfg):
        task = {**OmegaConf.to_container(cfg.task), **task_overrides, "_name": TASK_NAME}
        cfg.task = OmegaConf.create(task)
    return state
