"""Low-rank partitioned linear layer of the ATS paper (Mohtashami, Jaggi, Stich, AISTATS 2022, sec. 5.1).

    LFC(x) = (V U + W) x + b,    U: k x in,  V: out x k,  W: out x in,  k = round(r * min(in, out))

The core (level 1) is the low-rank layer ``V U x + b``; the full network (the last level) adds ``W x``,
so after training it merges into a plain full-rank layer with weight ``W + V U``.

Nested cores (ATS sec. 3, "hierarchy") take a list of increasing ratios r_1 < ... < r_{L-1}: level l
uses the first k_l rows of U and columns of V. Each level's new rows/columns are a separate parameter
(``U[i]``, ``V[i]``), so an optimizer can leave a whole level, and its state, untouched.

Initialisation (the paper does not say): ``xavier`` gives U and V fairseq's xavier_uniform_ each, so the
entries of V U have variance k var(V) var(U) = 4k / ((k + in)(k + out)), well below a dense layer's
2 / (in + out) (about 3x smaller in std for in = out = 256, k = 8); ``dense`` scales U and V alike so
that V U starts with the variance of a xavier-initialised dense layer.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .levels import LevelledModule, sizes_for_ratios


class PartitionedRankLinear(LevelledModule):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        small_ratios: Sequence[float] = (0.25,),
        built_levels: Optional[int] = None,
        init: str = "xavier",
    ):
        super().__init__(num_levels=len(small_ratios) + 1, built_levels=built_levels)
        if init not in ("xavier", "dense"):
            raise ValueError(f"--low-rank-init must be xavier or dense, got {init!r}")
        self.init = init
        self.in_features = in_features
        self.out_features = out_features
        self.small_ratios = tuple(small_ratios)
        self.ranks = sizes_for_ratios(small_ratios, min(in_features, out_features))
        steps = [k - k_prev for k_prev, k in zip((0,) + self.ranks[:-1], self.ranks)]
        n_low_rank = min(self.built_levels, self.num_levels - 1)
        self.U = nn.ParameterList(
            [nn.Parameter(torch.empty(n, in_features)) for n in steps[:n_low_rank]]
        )
        self.V = nn.ParameterList(
            [nn.Parameter(torch.empty(out_features, n)) for n in steps[:n_low_rank]]
        )
        if self.built_levels == self.num_levels:
            self.W = nn.Parameter(torch.empty(out_features, in_features))
        else:
            self.register_parameter("W", None)
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        # fairseq's Transformer initialises its linear layers with xavier_uniform_ and zero bias.
        for p in list(self.U) + list(self.V) + ([self.W] if self.W is not None else []):
            nn.init.xavier_uniform_(p)
        if self.init == "dense" and len(self.U):
            k = self.ranks[-1]
            var_u, var_v = 2 / (k + self.in_features), 2 / (self.out_features + k)  # xavier's variances
            target = 2 / (self.in_features + self.out_features)  # a dense xavier layer's
            scale = (target / (k * var_u * var_v)) ** 0.25  # U and V alike: var(V U) = scale^4 k var_u var_v
            with torch.no_grad():
                for p in list(self.U) + list(self.V):
                    p.mul_(scale)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear, small_ratios, built_levels=None, init="xavier"):
        """W and b copy ``linear`` (so the extension starts as the layer it replaces); U, V are new."""
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            small_ratios=small_ratios,
            built_levels=built_levels,
            init=init,
        ).to(linear.weight)
        with torch.no_grad():
            if layer.W is not None:
                layer.W.copy_(linear.weight)
            if layer.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    def _factors(self, level: int):
        """U (k_l, in) and V (out, k_l) of ``level``: the first k_l rank components."""
        n = min(level, self.num_levels - 1)
        if n == 1:
            return self.U[0], self.V[0]
        return torch.cat(list(self.U[:n]), 0), torch.cat(list(self.V[:n]), 1)

    def forward(self, x):
        level = self.level
        if level < self.num_levels:
            U, V = self._factors(level)
            # (..., in) -> (..., k) -> (..., out): two thin GEMMs, rank-k cost
            return F.linear(F.linear(x, U), V, self.bias)
        if not self.training and not torch.is_grad_enabled():
            return F.linear(x, self.cached_for_inference(level, self.merged_weight), self.bias)
        U, V = self._factors(level)
        n_tokens = x.numel() // self.in_features
        # Merging costs out*in*k flops once; the additive path costs n_tokens*k*(in+out).
        # Both compute (V U + W) x + b; take the cheaper one.
        if n_tokens * (self.in_features + self.out_features) > self.in_features * self.out_features:
            return F.linear(x, torch.addmm(self.W, V, U), self.bias)  # W + V U: (out, in)
        return F.linear(x, self.W, self.bias) + F.linear(F.linear(x, U), V)  # (..., out) + (..., out)

    def merged_weight(self, level: Optional[int] = None) -> torch.Tensor:
        """The dense weight of this layer at ``level`` (default: the full network): W + V U or V U."""
        level = self.num_levels if level is None else level
        U, V = self._factors(level)
        return torch.addmm(self.W, V, U) if level == self.num_levels else V @ U

    def merged_bias(self) -> Optional[torch.Tensor]:
        return self.bias

    def param_levels(self):
        levels = {"bias": 1} if self.bias is not None else {}
        for i in range(len(self.U)):
            levels[f"U.{i}"] = levels[f"V.{i}"] = i + 1
        if self.W is not None:
            levels["W"] = self.num_levels
        return levels

    def extra_repr(self):
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"ranks={self.ranks}, level={self.level}/{self.num_levels}, built={self.built_levels}"
        )
