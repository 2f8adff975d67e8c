"""What the partitioned modules share: levels 1..L, which of them are built, checkpoint checks.

Level 1 is the core, level L the full network. A layer may be built with only its first levels
(``built_levels``), e.g. a compact core checkpoint; its parameters for higher levels then do not exist.
"""
import math
import re
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from ..errors import UsageError


class PartitioningMismatch(UsageError):
    """A checkpoint does not fit the partitioning of the model it is loaded into."""


def sizes_for_ratios(ratios: Sequence[float], dim: int) -> Tuple[int, ...]:
    """round(r * dim) for each r (half rounds up), checked to be >= 1 and strictly increasing."""
    sizes = tuple(int(math.floor(r * dim + 0.5)) for r in ratios)
    for r, k in zip(ratios, sizes):
        if k < 1:
            raise UsageError(
                f"--small-ratio {r} gives size round({r} * {dim}) = 0 for a layer of dimension {dim}; "
                f"use a ratio >= {0.5 / dim:.6g}"
            )
    if any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise UsageError(
            f"--small-ratio {','.join(map(str, ratios))} gives sizes {sizes} for dimension {dim}: "
            "nested cores must have strictly increasing sizes"
        )
    return sizes


_BLOCK_KEY = re.compile(r"^(?:U|V|weight_blocks|bias_blocks)\.(\d+)$")


class LevelledModule(nn.Module):
    def __init__(self, num_levels: int, built_levels: Optional[int] = None):
        super().__init__()
        self.num_levels = num_levels
        self.built_levels = num_levels if built_levels is None else built_levels
        if not 1 <= self.built_levels <= num_levels:
            raise ValueError(f"built_levels must be in 1..{num_levels}, got {built_levels}")
        self.level = self.built_levels
        self._inference_weights = {}

    def train(self, mode: bool = True):
        self._inference_weights.clear()
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self._inference_weights.clear()
        return super()._load_from_state_dict(*args, **kwargs)

    def cached_for_inference(self, key, compute):
        """``compute()``, kept while the module is in eval mode without autograd (e.g. decoding).

        Merging or joining weights is then done once per evaluation, not once per decoding step; and
        the full network computes with exactly the weight that export writes. The cache is dropped
        whenever the mode changes (fairseq calls train()/eval() around every step) or weights load.
        """
        if self.training or torch.is_grad_enabled():
            return compute()
        if key not in self._inference_weights:
            self._inference_weights[key] = compute()
        return self._inference_weights[key]

    def set_level(self, level: int):
        if not 1 <= level <= self.built_levels:
            raise ValueError(
                f"level {level} is not available: this layer has levels 1..{self.built_levels}"
            )
        self.level = level

    def param_levels(self) -> Dict[str, int]:
        """Local parameter name -> the lowest level whose forward pass (and update) uses it."""
        raise NotImplementedError

    def standard_numel(self) -> int:
        """The parameters of what the full network has here in the standard Transformer it converts to: for
        a partitioned linear layer, its nn.Linear's."""
        return self.out_features * self.in_features + (self.out_features if self.merged_bias() is not None else 0)

    def _level_of_key(self, key: str) -> Optional[int]:
        if key == "W":
            return self.num_levels
        m = _BLOCK_KEY.match(key)
        return int(m.group(1)) + 1 if m else None

    def upgrade_state_dict_named(self, state_dict, name):
        """Called by fairseq before loading: drop the levels this model does not build, check shapes.

        A model built with fewer levels (evaluating the core of a full checkpoint, exporting the core)
        loads the lower levels of a checkpoint; anything else that does not fit is a checkpoint trained
        with another partitioning, which gets one clear error instead of a wall of size mismatches.
        """
        prefix = name + "." if name else ""
        own = dict(self.named_parameters())
        for key in list(state_dict):
            if not key.startswith(prefix):
                continue
            local = key[len(prefix):]
            level = self._level_of_key(local)
            if local not in own and level is not None and level > self.built_levels:
                del state_dict[key]
        for local, p in own.items():
            key = prefix + local
            if key not in state_dict:
                raise PartitioningMismatch(f"checkpoint has no '{key}': {self._why_missing(state_dict, prefix)}")
            if tuple(state_dict[key].shape) != tuple(p.shape):
                raise PartitioningMismatch(
                    f"checkpoint tensor '{key}' has shape {tuple(state_dict[key].shape)} but this model "
                    f"expects {tuple(p.shape)}: the checkpoint was trained with another --small-ratio "
                    "or --partitioned-linear-module-name, or another layer size (--encoder-ffn-embed-dim, ...)"
                )

    def _why_missing(self, state_dict, prefix) -> str:
        """Which of the mistakes that leave a tensor missing this is (each has its own fix)."""
        levels = [self._level_of_key(k[len(prefix):]) for k in state_dict if k.startswith(prefix)]
        levels = [level for level in levels if level is not None]
        if not levels:  # nothing of a partitioned layer here: a plain (or GaP) Transformer
            return "the checkpoint holds no partitioned layer there: it is a plain (or GaP) Transformer, not a partitioned one"
        if max(levels) < self.built_levels:
            return f"the checkpoint holds only levels 1..{max(levels)}: pass --max-level {max(levels)}"
        return "it was trained with another --partitioned-linear-module-name or --small-ratio"
