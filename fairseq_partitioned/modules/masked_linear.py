"""A sparse linear layer for GaP (Ma et al., ICLR 2022, sec. 2.1): y = (W * m) x + b.

"A zero in m means that the corresponding weight in Theta is fixed to be zero." The weight is kept
exactly zero where the mask is False (``set_mask_`` zeroes it; the optimizer's update mask never moves
it), so the forward pass is a plain ``nn.Linear``, and fairseq's fused attention path, which reads
``q_proj.weight`` directly, stays correct. The mask is a bool buffer: one byte per weight, saved in
every checkpoint. The layer holds its weights and its mask, nothing else: which masks a GaP run wants
when is the method's business (``methods/grow_and_prune.py``).
"""
from typing import List

import torch
from torch import nn

from ..errors import UsageError

# Version 0.1 kept GaP's schedule position on each masked layer, as ``<layer>._extra_state`` (read back by
# ``checkpoints.gap_state``).
LEGACY_EXTRA_STATE = "._extra_state"


class MaskedLinear(nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.register_buffer("mask", torch.ones(out_features, in_features, dtype=torch.bool, device=device))

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "MaskedLinear":
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                    device=linear.weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(linear.weight)
            if layer.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    @torch.no_grad()
    def set_mask_(self, mask: torch.Tensor):
        """New mask; weights it masks become exactly zero (weights it grows keep their value: zero)."""
        self.mask.copy_(mask)
        self.weight.masked_fill_(~self.mask, 0)

    def upgrade_state_dict_named(self, state_dict, name):
        """Called by fairseq before loading: version 0.1 kept GaP's schedule position here (read by
        ``checkpoints.gap_state``); the layer holds none."""
        state_dict.pop(name + LEGACY_EXTRA_STATE, None)

    def extra_repr(self):
        zeros = int((~self.mask).sum())
        return f"{super().extra_repr()}, sparsity={zeros / self.mask.numel():.3f}"


def mask_layers(model: nn.Module, names: List[str]) -> nn.Module:
    """Make the named weights MaskedLinear layers (all kept; masks come from the method or a checkpoint)."""
    for name in names:
        if not name.endswith(".weight"):
            raise ValueError(f"prunable weight {name} is not the weight of an nn.Linear")
        path = name[: -len(".weight")]
        parent_path, _, attr = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        linear = getattr(parent, attr)
        if type(linear) is not nn.Linear:
            raise UsageError(f"--gap-prunable matched {name}, which is not the weight of an nn.Linear")
        setattr(parent, attr, MaskedLinear.from_linear(linear))
    return model


def masked_layers(model: nn.Module, names: List[str]) -> dict:
    """Prunable weight name -> its MaskedLinear, in the order of ``names``."""
    found = {n + ".weight": m for n, m in model.named_modules() if isinstance(m, MaskedLinear)}
    return {n: found[n] for n in names}
