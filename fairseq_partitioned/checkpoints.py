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
import argparse
import contextlib
import logging
import os
import pickle
import re
from dataclasses import fields
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from fairseq import checkpoint_utils
from fairseq.tasks.translation import TranslationConfig
from omegaconf import OmegaConf, open_dict

from .config import TASK_NAME, config_value

try:  # numpy >= 2
    from numpy._core import multiarray as np_multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray as np_multiarray
from .errors import MissingCheckpoint, UnreadableCheckpoint, UntrustedCheckpoint, UsageError
from .modules.masked_linear import LEGACY_EXTRA_STATE  # version 0.1: GaP's schedule position on each masked layer

logger = logging.getLogger(__name__)

PLUGIN_KEYS = ("partition", "gap", "counts", "plugin_version")  # this plugin's entries of task_state
ADAM_FIELDS = ("adam_betas", "adam_eps", "weight_decay", "use_old_adam", "fp16_adam_stats", "tpu", "lr")


# ------------------------------------------------------------------------------------ files

# Checkpoints are data from strangers: every load, the plugin's and fairseq's, is torch's weights-only
# unpickler (the default since torch 2.6), which builds tensors and plain values and nothing else. Beyond
# those, fairseq's and this plugin's checkpoints hold the training command's namespace (``cfg["model"]`` of
# a fairseq-train run) and numpy arrays (fairseq's meters, e.g. --eval-bleu's n-gram counts, in
# ``extra_state["metrics"]``): these types are allowed by name, once, when the plugin is imported. An array
# of numbers only: its numeric dtypes are allowed, not the object dtype (whose items would need their own).
NUMERIC_DTYPES = tuple(type(np.dtype(code)) for code in "?" + np.typecodes["AllInteger"] + np.typecodes["AllFloat"])
SAFE_TYPES = (argparse.Namespace, np.ndarray, np.dtype, np_multiarray._reconstruct, np_multiarray.scalar,
              *NUMERIC_DTYPES)
TRUST_VARIABLE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"  # torch's own opt-out: the user's to set, never ours
_UNSAFE_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")


def register_safe_types():
    # numpy < 2 wrote the array's functions under numpy.core: the same functions, by the name a file has
    legacy = [(f, f"numpy.core.multiarray.{f.__name__}") for f in (np_multiarray._reconstruct, np_multiarray.scalar)]
    torch.serialization.add_safe_globals([*dict.fromkeys(SAFE_TYPES), *legacy])


def load(path: str) -> dict:
    """The whole checkpoint, upgraded by fairseq (``cfg`` as an OmegaConf config)."""
    _check_exists(path)
    with _reading(path):
        return checkpoint_utils.load_checkpoint_to_cpu(path)


def load_lazily(path: str) -> dict:
    """The checkpoint as saved, its tensors memory-mapped (cheap for a look at a few fields)."""
    _check_exists(path)
    with _reading(path):
        try:
            return torch.load(path, map_location="cpu", mmap=True)
        except (RuntimeError, ValueError, OSError):  # not a zip-format file (or cannot be mapped): load it whole
            return torch.load(path, map_location="cpu")


def _check_exists(path: str):
    if not os.path.isfile(path):
        raise MissingCheckpoint(f"checkpoint not found: {path}")


@contextlib.contextmanager
def _reading(path: str):
    """A file torch cannot read is one line naming it. A cut-short file fails with RuntimeError, an empty
    one with EOFError, another file with an unpickling or key error: whatever torch raises is the reason.
    A file that asks the weights-only unpickler for a type it does not build is refused as untrusted."""
    try:
        yield
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise UnreadableCheckpoint.at(path, f"UnpicklingError: {_first_sentence(e)}") from e
        raise untrusted(path, e) from None
    except Exception as e:
        raise UnreadableCheckpoint.at(path, f"{type(e).__name__}: {_first_sentence(e)}") from e


def untrusted(path: str, error: Exception) -> UntrustedCheckpoint:
    """The one line for a checkpoint torch's weights-only unpickler refused (``error``)."""
    found = _UNSAFE_GLOBAL.search(str(error))
    what = found.group(1) if found else "an object"
    return UntrustedCheckpoint(
        f"refused to load checkpoint {path}: it asks for {what}, beyond the tensors and plain values of a "
        f"checkpoint (loading it could run code). If you trust this file, run the command with "
        f"{TRUST_VARIABLE}=1 (torch's own switch; docs/deploy.md)")


def _first_sentence(error: Exception) -> str:
    return (str(error).splitlines() or [""])[0].split(". ")[0][:160]


def save(state: dict, path: str):
    """Write ``state`` as fairseq's trainer writes a checkpoint: its config as plain containers (not the
    OmegaConf objects ``load`` gives, which torch's weights-only loading refuses, at several times the size)."""
    if OmegaConf.is_config(state.get("cfg")):
        state["cfg"] = OmegaConf.to_container(state["cfg"], resolve=True, enum_to_str=True)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    checkpoint_utils.torch_persistent_save(state, path)


def restore_path(cfg) -> Optional[str]:
    """The checkpoint a training run with task config ``cfg`` will resume from, as fairseq's
    ``checkpoint_utils.load_checkpoint`` chooses it; None when it starts afresh (or ``cfg`` is not a
    training configuration)."""
    restore_file = config_value(cfg, "restore_file")
    if restore_file is None:
        return None
    if restore_file == "checkpoint_last.pt":
        path = last_path(cfg)
        if not os.path.isfile(path):
            path = config_value(cfg, "continue_once") or config_value(cfg, "finetune_from_model")
    else:
        path = _with_suffix(restore_file, config_value(cfg, "checkpoint_suffix", ""))
        if not os.path.isfile(path):  # fairseq would train from scratch, without a word
            raise MissingCheckpoint(f"--restore-file {restore_file}: no such checkpoint ({path})")
    return path if path and os.path.isfile(path) else None


def last_path(cfg) -> str:
    suffix = config_value(cfg, "checkpoint_suffix", "")
    return os.path.join(config_value(cfg, "save_dir", "."), f"checkpoint_last{suffix}.pt")


def _with_suffix(path: str, suffix: str) -> str:
    return path.replace(".pt", suffix + ".pt") if suffix else path  # as fairseq's load_checkpoint


def read_for_resume(cfg) -> Tuple[Optional[str], Optional[dict]]:
    """The checkpoint a training run resumes from (``restore_path``) and its state (read lazily), or
    (None, None).

    fairseq writes a checkpoint atomically, then *copies* it to ``checkpoint_last.pt``: a kill during
    the copy, or a full disk, leaves that cut short beside the intact original. When
    ``checkpoint_last.pt`` cannot be read, the run resumes from the newest checkpoint of the save dir
    that can (one warning line names both), and fairseq is told to load that one: its
    ``load_checkpoint`` reads ``--restore-file`` after the model is built, so setting it here (in the
    run's configuration, as ``--restore-file`` would) is enough. With none readable: one line, naming it.
    """
    path = restore_path(cfg)
    if path is None:
        return None, None
    try:
        return path, load_lazily(path)
    except UnreadableCheckpoint as error:
        if path != last_path(cfg):
            raise
        broken = error
    save_dir, suffix = os.path.dirname(path) or ".", config_value(cfg, "checkpoint_suffix", "")
    intact, state = _newest_readable(path, suffix)
    if intact is None:
        raise UnreadableCheckpoint.at(path, broken.reason, f"no other checkpoint of {save_dir} can be read "
                                      "either: delete it to train from the start, or pass --restore-file CHECKPOINT")
    restore_file = intact[: len(intact) - len(suffix + ".pt")] + ".pt" if suffix else intact
    root = cfg._get_parent() if OmegaConf.is_config(cfg) else None
    if root is None or "checkpoint" not in root or _with_suffix(restore_file, suffix) != intact:
        # fairseq cannot be pointed at it from here
        raise UnreadableCheckpoint.at(path, broken.reason, f"{intact} can: pass --restore-file {restore_file}")
    logger.warning(f"cannot read checkpoint {path} ({broken.reason}): resuming from {intact}, the newest "
                   f"checkpoint of {save_dir} that can be read")
    with open_dict(root.checkpoint):
        root.checkpoint.restore_file = restore_file
        # fairseq refuses --finetune-from-model beside a --restore-file; it only applies to a first launch,
        # and this one is not
        root.checkpoint.finetune_from_model = None
    return intact, state


def _newest_readable(broken: str, suffix: str) -> Tuple[Optional[str], Optional[dict]]:
    """The checkpoint beside ``broken`` that can be read and is furthest in training, and its state; of
    equals, not ``checkpoint_best``: fairseq writes the file of a save, then copies it there (and to
    ``checkpoint_last``), so the name says where the training was rather than which one was best."""
    save_dir = os.path.dirname(broken) or "."
    found = []
    for name in os.listdir(save_dir):
        path = os.path.join(save_dir, name)
        if not (name.startswith("checkpoint") and name.endswith(suffix + ".pt")) or os.path.samefile(path, broken):
            continue
        try:
            state = load_lazily(path)
        except UnreadableCheckpoint:
            continue
        updates = (state.get("optimizer_history") or [{}])[-1].get("num_updates", 0)
        found.append(((updates, "best" not in name, os.path.getmtime(path)), path, state))
    if not found:
        return None, None
    _, path, state = max(found, key=lambda f: f[0])
    return path, state


# The model's flags that set a tensor's shape (--encoder-ffn-embed-dim, --decoder-layers, ...).
ARCHITECTURE_FIELD = re.compile(r"(^arch$|_name$|dim$|layers$|heads$|positions$|^share_)")


def check_architecture(path: str, state: dict, model: torch.nn.Module, model_cfg):
    """A resumed model whose tensors do not fit the checkpoint's: one line naming the architecture flags
    that differ (fairseq's own error names none). Said only when some do: otherwise fairseq's load
    tells what is wrong."""
    saved = state.get("model") or {}
    ours = dict(model.named_parameters())
    ours.update(model.named_buffers())
    misfit = [(name, tuple(saved[name].shape) if name in saved else None, tuple(t.shape)) for name, t in ours.items()
              if name not in saved or tuple(saved[name].shape) != tuple(t.shape)]
    theirs, mine = _fields((state.get("cfg") or {}).get("model")), _fields(model_cfg)
    changed = [(name, theirs[name], mine[name]) for name in theirs
               if ARCHITECTURE_FIELD.search(name) and name in mine and str(theirs[name]) != str(mine[name])]
    if not misfit or not changed:
        return
    name, saved_shape, shape = misfit[0]
    has = "has no " + name if saved_shape is None else f"has {name} of shape {saved_shape}, this model {shape}"
    was = ", ".join(f"--{n.replace('_', '-')} {a}" for n, a, _ in changed)
    now = ", ".join(f"--{n.replace('_', '-')} {b}" for n, _, b in changed)
    raise UsageError(f"checkpoint {path} {has}: it was trained with {was}, this run uses {now}")


def _fields(cfg) -> dict:
    """A model configuration as a dict: fairseq keeps an argparse Namespace (legacy architectures) or a
    config."""
    if cfg is None:
        return {}
    if OmegaConf.is_config(cfg):
        return {k: config_value(cfg, k) for k in cfg}
    return dict(vars(cfg)) if not isinstance(cfg, dict) else dict(cfg)


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
    # the training's meters (numpy arrays among them, which plain torch does not load by default)
    (state.get("extra_state") or {}).pop("metrics", None)
    return state


def as_partitioned_task(state: dict, **task_overrides) -> dict:
    """``state`` with this plugin's task (from ``translation`` or ours) and the given task settings;
    the task's other settings take their defaults when the task is built."""
    cfg = state["cfg"]
    with open_dict(cfg):
        task = {**OmegaConf.to_container(cfg.task), **task_overrides, "_name": TASK_NAME}
        cfg.task = OmegaConf.create(task)
    return state
