"""Turn any fairseq Transformer into a partitioned one (ATS paper sec. 5, docs/design.md).

A low-rank or small-width core (``--partitioned-linear-module-name``): partitioned are fc1/fc2 of every
encoder and decoder layer and the key/query projections of every attention layer. A depth core
(``--core-decoder-layers K``): the decoder's layers, the core running the first K of them. Shared with
the core (level 1): everything else.
"""
import logging
from dataclasses import dataclass
from typing import Dict, Iterator, Optional, Tuple

from fairseq.modules import LayerDropModuleList, MultiheadAttention
from fairseq.modules.transformer_layer import TransformerDecoderLayerBase
from torch import nn

from ..errors import UsageError
from .levels import LevelledModule
from .partitioned_decoder_layers import PartitionedDecoderLayers
from .partitioned_linear import PartitionedLinear
from .partitioned_rank_linear import PartitionedRankLinear

logger = logging.getLogger(__name__)

MODULE_KINDS = ("PartitionedLinear", "PartitionedRankLinear")  # --partitioned-linear-module-name
DEPTH_KIND = PartitionedDecoderLayers.__name__  # --core-decoder-layers K


LOW_RANK_INITS = ("xavier", "dense")
CORE_ATTENTION_SCALES = ("full", "core")


@dataclass(frozen=True)
class PartitionSpec:
    """How a model is partitioned; saved in every checkpoint (task state) and checked on load."""

    module_name: str  # one of MODULE_KINDS, or DEPTH_KIND
    small_ratios: Tuple[float, ...]  # MODULE_KINDS: the core's (nested cores') size; DEPTH_KIND: ()
    built_levels: int
    low_rank_init: str = "xavier"  # PartitionedRankLinear: U, V xavier each, or scaled to a dense layer's V U
    core_attention_scale: str = "full"  # PartitionedLinear: a core head's q.k scaled by 1/sqrt of the full or its own width
    core_decoder_layers: int = 0  # DEPTH_KIND: K, the decoder layers of the core

    @classmethod
    def depth(cls, core_decoder_layers: int, built_levels: int = 2) -> "PartitionSpec":
        return cls(DEPTH_KIND, (), built_levels, core_decoder_layers=core_decoder_layers)

    @property
    def num_levels(self) -> int:
        return len(self.small_ratios) + 1 if self.module_name != DEPTH_KIND else 2

    def to_dict(self) -> Dict:
        return {
            "module_name": self.module_name,
            "small_ratios": list(self.small_ratios),
            "built_levels": self.built_levels,
            "low_rank_init": self.low_rank_init,
            "core_attention_scale": self.core_attention_scale,
            "core_decoder_layers": self.core_decoder_layers,
        }

    @classmethod
    def from_dict(cls, d: Dict) -> "PartitionSpec":
        # checkpoints of version 0.1 hold neither choice, those before the depth core no K: the defaults
        return cls(d["module_name"], tuple(float(r) for r in d["small_ratios"]), int(d["built_levels"]),
                   d.get("low_rank_init", "xavier"), d.get("core_attention_scale", "full"),
                   int(d.get("core_decoder_layers", 0)))

    def describe(self) -> str:
        if self.module_name == DEPTH_KIND:
            return f"--core-decoder-layers {self.core_decoder_layers} (levels 1..{self.built_levels} of 2)"
        ratios = ",".join(f"{r:g}" for r in self.small_ratios)
        choices = "".join(
            f" --{flag.replace('_', '-')} {value}" for flag, value, default in (
                ("low_rank_init", self.low_rank_init, "xavier"),
                ("core_attention_scale", self.core_attention_scale, "full")) if value != default)
        return (
            f"--partitioned-linear-module-name {self.module_name} --small-ratio {ratios}{choices} "
            f"(levels 1..{self.built_levels} of {self.num_levels})"
        )


def _make(spec: PartitionSpec, linear: nn.Linear, partition="out", groups=1, query=False) -> LevelledModule:
    if spec.module_name == "PartitionedRankLinear":
        return PartitionedRankLinear.from_linear(linear, spec.small_ratios, spec.built_levels, init=spec.low_rank_init)
    return PartitionedLinear.from_linear(
        linear, spec.small_ratios, partition=partition, groups=groups, built_levels=spec.built_levels,
        rescale_core=query and spec.core_attention_scale == "core",
    )


def _plain_linear(module) -> bool:
    return type(module) is nn.Linear


def partition_model(model: nn.Module, spec: PartitionSpec) -> nn.Module:
    """Replace, in place, the FFN and key/query projections of ``model`` by partitioned layers (a depth
    core: its decoder's layers by ``PartitionedDecoderLayers``), and tag every parameter with its level."""
    if spec.module_name == DEPTH_KIND:
        _partition_decoder_depth(model, spec)
    else:
        _partition_linear_layers(model, spec)
    # Tag every parameter with the lowest level that uses it (1 = core and shared). fairseq itself tags
    # parameters with attributes (``param_group``, ``expert``); the tags survive .to()/.half().
    for p in model.parameters():
        p.partition_level = 1
    for module in partitioned_modules(model):
        levels = module.param_levels()
        for local, p in module.named_parameters():
            p.partition_level = levels[local]
    return model


def _partition_decoder_depth(model: nn.Module, spec: PartitionSpec):
    decoder = getattr(model, "decoder", None)
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList) or not all(isinstance(layer, TransformerDecoderLayerBase) for layer in layers):
        raise UsageError(f"--core-decoder-layers needs a Transformer decoder (decoder.layers): {type(model).__name__} "
                         "has none")
    if isinstance(layers, LayerDropModuleList):
        raise UsageError("--core-decoder-layers cannot be combined with --decoder-layerdrop, whose layer list it would "
                         "replace; drop --decoder-layerdrop")
    k, n = spec.core_decoder_layers, len(layers)
    if not 1 <= k < n:
        raise UsageError(f"--core-decoder-layers must be in 1..{n - 1} for a decoder of {n} layers (--decoder-layers "
                         f"{n}), got {k}")
    decoder.layers = PartitionedDecoderLayers(layers, k, spec.built_levels)
    decoder.num_layers = len(decoder.layers)  # the last layer built gives the alignment, as in a K-layer decoder


def _partition_linear_layers(model: nn.Module, spec: PartitionSpec):
    if spec.module_name not in MODULE_KINDS:
        raise UsageError(
            f"--partitioned-linear-module-name must be one of {', '.join(MODULE_KINDS)}, "
            f"got {spec.module_name!r}"
        )
    n_ffn = n_attn = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, MultiheadAttention):
            for proj in ("q_proj", "k_proj"):
                linear = getattr(module, proj)
                if not _plain_linear(linear):
                    raise UsageError(
                        f"{name}.{proj} is {type(linear).__name__}, not nn.Linear: quantization noise "
                        "(--quant-noise-pq) cannot be combined with a partitioned model"
                    )
                setattr(module, proj, _make(spec, linear, "out", module.num_heads, query=proj == "q_proj"))
            # fairseq's documented switch away from the fused torch attention, which reads
            # q_proj.weight directly; the partitioned projections must be called as modules.
            module._set_skip_embed_dim_check()
            n_attn += 1
        elif hasattr(module, "fc1") and hasattr(module, "fc2"):
            if not (_plain_linear(module.fc1) and _plain_linear(module.fc2)):
                raise UsageError(
                    f"{name}.fc1/fc2 are not nn.Linear: quantization noise (--quant-noise-pq) cannot "
                    "be combined with a partitioned model"
                )
            if spec.module_name == "PartitionedLinear" and getattr(module, "ffn_layernorm", None) is not None:
                raise UsageError(
                    f"{name}: --scale-fc (a LayerNorm over the FFN hidden units) cannot be combined with "
                    "--partitioned-linear-module-name PartitionedLinear, whose core drops hidden units"
                )
            module.fc1 = _make(spec, module.fc1, "out")
            module.fc2 = _make(spec, module.fc2, "in")
            n_ffn += 1
    if n_ffn == 0 and n_attn == 0:
        raise UsageError(
            f"{type(model).__name__} has no Transformer FFN (fc1/fc2) or MultiheadAttention to partition"
        )


def partitioned_modules(model: nn.Module) -> Iterator[LevelledModule]:
    return (m for m in model.modules() if isinstance(m, LevelledModule))


def set_level(modules, level: int):
    for m in modules:
        m.set_level(level)


def parameter_counts(model: nn.Module) -> Dict[str, Optional[int]]:
    """Parameters used at each built level, and of the full network merged into a plain Transformer."""
    modules = list(partitioned_modules(model))
    built = min(m.built_levels for m in modules)
    counts: Dict[str, Optional[int]] = {
        f"level{level}": sum(p.numel() for p in model.parameters() if p.partition_level <= level)
        for level in range(1, built + 1)
    }
    counts["merged_full"] = None
    if all(m.built_levels == m.num_levels for m in modules):
        partitioned = sum(p.numel() for m in modules for p in m.parameters())
        standard = sum(m.standard_numel() for m in modules)
        counts["merged_full"] = sum(p.numel() for p in model.parameters()) - partitioned + standard
    return counts
