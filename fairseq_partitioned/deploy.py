"""What a deployed model is: a plain fairseq Transformer, and its CTranslate2 conversion.

A deployment engine rebuilds a fairseq checkpoint from its configuration: CTranslate2's
``FairseqConverter`` reads ``checkpoint["cfg"]["model"]`` (the training command's flags), sets up the
task it names and builds the model ``--arch`` names. So an export must be a plain fairseq Transformer in
every field, those flags included: fairseq's ``translation`` task, ``adam``, ``inverse_sqrt``, no
``--user-dir`` and none of this plugin's flags. An export holds nothing but tensors and plain values:
the flags are a dict, not fairseq's argparse namespace, so plain fairseq loads it with torch's
weights-only guard on and nothing allowed beyond torch's defaults. The converter wants the namespace:
it reads a temporary copy that has one (``convert_to_ctranslate2``).

Which networks are standard Transformers:

- the full network of an ATS model (each partitioned layer merged into its nn.Linear) and a GaP model
  (its zeros in place): the original shapes;
- the core of a small-width model (``PartitionedLinear``): a narrow Transformer, exactly. Its FFN has
  the core's round(r ffn) hidden units. Its q/k heads have round(r head_dim) dimensions while v keeps
  head_dim; a standard attention layer (and CTranslate2, which fuses q, k, v and splits them into equal
  heads) holds that as q/k rows of zeros, which add nothing to q . k. fairseq scales q . k by
  1 / sqrt(head_dim), which is the core's default scale; with ``--core-attention-scale core`` the core
  scales by 1 / sqrt(its own width) instead, and that factor sqrt(head_dim / n) is folded into q.
- the core of a depth model (``--core-decoder-layers K``): the Transformer with the first K decoder
  layers, the same final layer norm and output projection: the full network's tensors, the layers from
  K on left out, and ``--decoder-layers K``;
- not the core of a low-rank model (``PartitionedRankLinear``): no engine has a factorized linear, and
  the merged V U has the full network's shapes and speed.

The ``ctranslate2`` package is the plugin's optional extra ``deploy`` (setup.py; ``make setup`` installs it).
"""
import argparse
import math
import os
import tempfile
from dataclasses import fields

import torch
import torch.nn.functional as F
from fairseq.optim.adam import FairseqAdamConfig
from fairseq.optim.lr_scheduler.inverse_square_root_schedule import InverseSquareRootLRScheduleConfig
from fairseq.tasks.translation import TranslationConfig
from omegaconf import OmegaConf, open_dict
from torch import nn

from . import checkpoints
from .config import TASK_NAME
from .modules import LevelledModule, PartitionedDecoderLayers, PartitionedLinear, PartitionedRankLinear
from .optim.adam_for_partitioned_model import OPTIMIZER_NAME, AdamForPartitionedModelConfig
from .optim.gap_inverse_sqrt import GapInverseSqrtConfig
from .tasks.translation_with_partitioned_model import TranslationWithPartitionedModelConfig

CTRANSLATE2_REQUIREMENT = "ctranslate2>=4.8,<4.9"  # the pin of setup.py's deploy extra
INSTALL_HINT = f"pip install '{CTRANSLATE2_REQUIREMENT}' (the plugin's deploy extra: pip install -e '.[deploy]'; make setup installs it)"
LOW_RANK_REFUSAL = (
    "a low-rank core (PartitionedRankLinear) is no standard Transformer: no engine has a factorized "
    "linear, and merged (V U) it has the full network's shapes and speed; convert --level full, or deploy "
    "a small-width (PartitionedLinear) core"
)

# The training command's namespace (cfg.model) names each component by its registry name and holds the
# flags of all of them: this plugin's component -> (fairseq's, its config dataclass, fairseq's dataclass).
PLUGIN_COMPONENTS = {
    "task": (TASK_NAME, "translation", TranslationWithPartitionedModelConfig, TranslationConfig),
    "optimizer": (OPTIMIZER_NAME, "adam", AdamForPartitionedModelConfig, FairseqAdamConfig),
    "lr_scheduler": ("gap_inverse_sqrt", "inverse_sqrt", GapInverseSqrtConfig, InverseSquareRootLRScheduleConfig),
}


# ------------------------------------------------------------------------------ plain fairseq
def as_plain_fairseq(state: dict) -> dict:
    """``state`` as a checkpoint of plain fairseq in every field fairseq or a converter reads.

    ``checkpoints.as_plain_translation`` makes the task and optimizer configs fairseq's; here, besides,
    the learning-rate scheduler config and the training command's flags (``cfg.model``, as a dict of
    them); ``checkpoints.save`` writes the config as plain containers, so the file holds nothing but
    tensors and plain values.
    """
    checkpoints.as_plain_translation(state)
    cfg = state["cfg"]
    ours, fairseq_scheduler, _, theirs = PLUGIN_COMPONENTS["lr_scheduler"]
    scheduler = cfg.get("lr_scheduler")
    if scheduler is not None and scheduler.get("_name") == ours:
        kept = {k: v for k, v in OmegaConf.to_container(scheduler).items() if k in _field_names(theirs)}
        with open_dict(cfg):
            cfg.lr_scheduler = OmegaConf.create({**kept, "_name": fairseq_scheduler})
    if isinstance(cfg.get("model"), argparse.Namespace):  # a fairseq-hydra-train config has none
        cfg.model = vars(plain_namespace(cfg.model))
    state["args"] = None
    return state


def plain_namespace(args: argparse.Namespace) -> argparse.Namespace:
    """A copy of a training command's namespace with fairseq's components in place of this plugin's,
    without this plugin's flags and without ``--user-dir``."""
    values = dict(vars(args))
    for component, (plugin_name, fairseq_name, ours, theirs) in PLUGIN_COMPONENTS.items():
        for name in _field_names(ours) - _field_names(theirs):
            values.pop(name, None)
        if values.get(component) == plugin_name:
            values[component] = fairseq_name
    values["user_dir"] = None
    return argparse.Namespace(**values)


def _field_names(dataclass) -> set:
    return {f.name for f in fields(dataclass)}


# ------------------------------------------------------------------------------ narrow core
def check_convertible(state: dict, level: str):
    """Raise (one line) if the ``level`` network of this checkpoint is no standard Transformer."""
    partition = checkpoints.task_state(state).get("partition") or {}
    if level == "core" and partition.get("module_name") == PartitionedRankLinear.__name__:
        raise ValueError(LOW_RANK_REFUSAL)


# ------------------------------------------------------------------------------ shallow core
def to_shallow_transformer(model: nn.Module, cfg_model):
    """Replace, in place, the decoder's layers of a depth model built at level 1 (its core: the first K
    layers) by the plain list of them, and set ``--decoder-layers`` of ``cfg_model`` (the training
    namespace) to K."""
    layers = model.decoder.layers
    if not isinstance(layers, PartitionedDecoderLayers) or layers.built_levels != 1:
        raise ValueError("to_shallow_transformer: build the depth model at level 1 (its core)")
    model.decoder.layers = nn.ModuleList(layers.built())
    cfg_model.decoder_layers = len(layers)


def to_narrow_transformer(model: nn.Module, cfg_model) -> int:
    """Replace, in place, every partitioned layer of a small-width model built at level 1 (its core) by
    the nn.Linear of the narrow Transformer that computes the same (module docstring), and set the
    FFN widths of ``cfg_model`` (the training namespace) to the core's. Returns the number of zeros
    the q/k heads are padded with (parameters of the narrow Transformer that are not the core's)."""
    ffn, zeros = {}, 0
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, LevelledModule):
                continue
            if not isinstance(child, PartitionedLinear):
                raise ValueError(LOW_RANK_REFUSAL)
            if child.level != 1:
                raise ValueError("to_narrow_transformer: build the model at level 1 (its core)")
            weight, bias = narrow_weights(child)
            zeros += weight.numel() + (0 if bias is None else bias.numel()) - sum(p.numel() for p in child.parameters())
            linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
            with torch.no_grad():
                linear.weight.copy_(weight)
                if bias is not None:
                    linear.bias.copy_(bias)
            setattr(parent, name, linear)
            if name == "fc1":
                side = parent_name.split(".")[0]  # encoder | decoder
                ffn.setdefault(side, set()).add(linear.out_features)
    for side, widths in ffn.items():
        if len(widths) != 1:
            raise ValueError(f"the {side}'s layers have cores of FFN widths {sorted(widths)}: no single --{side}-ffn-embed-dim")
        setattr(cfg_model, f"{side}_ffn_embed_dim", widths.pop())
    return zeros


def narrow_weights(layer: PartitionedLinear):
    """(weight, bias) of the standard layer that computes what ``layer`` computes at level 1."""
    weight, bias = layer.weight_at(1), layer.bias_at(1)  # fc1: (n, in); fc2: (out, n); q/k: (H n, in)
    if layer.groups == 1:
        return weight, bias
    n, width = layer.sizes[0], layer.group_dim
    if layer.rescale_core:  # --core-attention-scale core: the core's queries are scaled by sqrt(width / n)
        scale = math.sqrt(width / n)
        weight, bias = weight * scale, None if bias is None else bias * scale
    # each head's n rows, then width - n rows of zeros: (H n, in) -> (H, n, in) -> (H, width, in) -> (H width, in)
    weight = F.pad(weight.unflatten(0, (layer.groups, n)), (0, 0, 0, width - n)).flatten(0, 1)
    if bias is not None:
        bias = F.pad(bias.unflatten(0, (layer.groups, n)), (0, width - n)).flatten()
    return weight, bias


# ------------------------------------------------------------------------------ CTranslate2
def require_ctranslate2():
    """The ctranslate2 module; a one-line error naming what to install when it is missing."""
    try:
        import ctranslate2
    except ImportError:
        raise ValueError(f"--ctranslate2 needs the ctranslate2 package: {INSTALL_HINT}") from None
    return ctranslate2


def check_quantization(quantization):
    """Raise (one line) unless CTranslate2 knows ``quantization`` (None: the checkpoint's float32)."""
    if quantization is None:
        return
    from ctranslate2.specs.model_spec import ACCEPTED_MODEL_TYPES

    if quantization not in ACCEPTED_MODEL_TYPES:
        raise ValueError(f"--quantization must be one of {', '.join(ACCEPTED_MODEL_TYPES)}, got {quantization!r}")


def check_output_dir(output_dir: str):
    """The converter replaces its output directory: only a new or empty one, or a CTranslate2 model."""
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not os.path.isfile(os.path.join(output_dir, "model.bin")):
        raise ValueError(f"--ctranslate2 {output_dir} is a directory that holds no CTranslate2 model: choose a new one")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"--ctranslate2 {output_dir} is a file: choose a new directory")


def dictionary_dir(state: dict, data: str = None) -> str:
    """The data directory whose dictionaries the checkpoint was trained with: ``data``, else the
    checkpoint's own ``data`` (its first, for a colon-separated list), checked to hold them."""
    from fairseq.data.data_utils import infer_language_pair

    task = state["cfg"]["task"] or {}
    path = data or str(task.get("data") or "").split(os.pathsep)[0]
    source, target = task.get("source_lang"), task.get("target_lang")
    if source is None or target is None:  # as fairseq's translation task finds them
        source, target = infer_language_pair(path) if os.path.isdir(path) else (None, None)
    names = [f"dict.{source}.txt", f"dict.{target}.txt"] if source and target else ["dict.SRC.txt"]
    missing = [n for n in names if not os.path.isfile(os.path.join(path, n))]
    if missing:
        where = f"--data {path}" if data else f"the checkpoint's data directory {path or '(none)'}"
        raise ValueError(f"{where} has no {missing[0]}: pass --data, the data-bin the model was trained on")
    return path


def convert_to_ctranslate2(plain_checkpoint: str, data: str, output_dir: str, quantization: str = None) -> str:
    """CTranslate2's own FairseqConverter on a plain fairseq checkpoint; returns ``output_dir``.

    The converter sets attributes on ``cfg["model"]``, so it reads a temporary copy of the checkpoint
    whose flags are fairseq's argparse namespace (it loads with ``weights_only=True``: the plugin allows
    the namespace, ``checkpoints.SAFE_TYPES``); the export itself keeps them as a dict.
    """
    require_ctranslate2()
    check_quantization(quantization)
    check_output_dir(output_dir)
    from ctranslate2.converters import FairseqConverter

    with tempfile.TemporaryDirectory() as tmp:
        state = checkpoints.load_lazily(plain_checkpoint)
        if isinstance(state["cfg"].get("model"), dict):
            state["cfg"]["model"] = argparse.Namespace(**state["cfg"]["model"])
        with_namespace = os.path.join(tmp, "with-namespace.pt")
        checkpoints.save(state, with_namespace)
        return FairseqConverter(with_namespace, data).convert(output_dir, quantization=quantization, force=True)
