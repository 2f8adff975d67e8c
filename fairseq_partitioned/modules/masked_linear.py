"""A sparse linear layer for GaP (Ma et al., ICLR 2022, sec. 2.1): y = (W * m) x + b.

"A zero in m means that the corresponding weight in Theta is fixed to be zero." The weight is kept
exactly zero where the mask is False (the task zeroes it when the mask changes and masks the gradient,
the optimizer then never moves it), so the forward pass is a plain ``nn.Linear`` (and fairseq's fused
attention path, which reads ``q_proj.weight`` directly, stays correct). The mask is a bool buffer: one
byte per weight, saved in every checkpoint.

While a GaP run validates the pruned model in the middle of a step, the dense values of a grown
layer are kept aside (``stash``) and restored before training goes on; the stash travels in the
checkpoint (``get_extra_state``), so a run interrupted there resumes exactly.
"""
from typing import Optional

import torch
from torch import nn


class MaskedLinear(nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.register_buffer("mask", torch.ones(out_features, in_features, dtype=torch.bool, device=device))
        self.stash: Optional[dict] = None
        self.grown_at: Optional[int] = None  # the GaP step that grew this layer dense; None: sparse

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "MaskedLinear":
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                    device=linear.weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(linear.weight)
            if layer.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    @property
    def dense(self) -> bool:
        return bool(self.mask.all())

    @torch.no_grad()
    def set_mask_(self, mask: torch.Tensor):
        """New mask; weights it masks become exactly zero (weights it grows keep their value: zero)."""
        self.mask.copy_(mask)
        self.weight.masked_fill_(~self.mask, 0)

    @torch.no_grad()
    def stash_(self):
        self.stash = {"weight": self.weight.detach().clone(), "mask": self.mask.clone()}

    @torch.no_grad()
    def restore_(self):
        self.weight.copy_(self.stash["weight"])
        self.mask.copy_(self.stash["mask"])
        self.stash = None

    def mask_grad_(self):
        if self.weight.grad is not None:
            self.weight.grad.masked_fill_(~self.mask, 0)

    def get_extra_state(self):
        return {"stash": self.stash, "grown_at": self.grown_at}

    def set_extra_state(self, state):
        state = state or {}
        self.stash = state.get("stash")
        self.grown_at = state.get("grown_at")

    def extra_repr(self):
        zeros = int((~self.mask).sum())
        return f"{super().extra_repr()}, sparsity={zeros / self.mask.numel():.3f}"
