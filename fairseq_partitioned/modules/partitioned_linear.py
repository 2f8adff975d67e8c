"""Small-width partitioned linear layer of the ATS paper (Mohtashami, Jaggi, Stich, AISTATS 2022, sec. 5.2).

The core uses the first r-fraction of a layer's units; the full network is the standard layer. In a
Transformer (docs/design.md) that is the first round(r * ffn) hidden units of the FFN (fc1 rows, fc2 columns)
and, in every attention layer, the first round(r * head_dim) key/query dimensions of each head.

The weight is stored as one block per level along the partitioned dimension (``weight_blocks[i]``,
``bias_blocks[i]``), so the core forward pass multiplies by the core block alone (no extension work) and
an optimizer can leave the extension blocks, and their state, untouched. Concatenating the blocks gives
back the standard layer, row for row.

    partition="out", groups=1:  fc1     y[..., :n_l] = W[:n_l] x + b[:n_l]
    partition="in":             fc2     y = W[:, :n_l] x[..., :n_l] + b        (b is shared)
    partition="out", groups=H:  q/k     per head, the first d_l of head_dim outputs; the core output
                                        is zero-padded back to H * head_dim so attention sees the
                                        usual shape, and the zeros add nothing to q . k.

Attention scales q . k by 1 / sqrt(head_dim) (fairseq's MultiheadAttention). A core head has d_l of those
dimensions; the paper does not say whether its logits keep the full head's scale. ``rescale_core`` (the
query projection, with ``--core-attention-scale core``) multiplies the core's queries by
sqrt(head_dim / d_l), so that a core head scales by 1 / sqrt(d_l), as a head of width d_l would.
"""
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .levels import LevelledModule, sizes_for_ratios


class PartitionedLinear(LevelledModule):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        small_ratios: Sequence[float] = (0.25,),
        partition: str = "out",
        groups: int = 1,
        built_levels: Optional[int] = None,
        rescale_core: bool = False,
    ):
        super().__init__(num_levels=len(small_ratios) + 1, built_levels=built_levels)
        if partition not in ("out", "in"):
            raise ValueError(f"partition must be 'out' or 'in', got {partition!r}")
        if partition == "in" and groups != 1:
            raise ValueError("grouped partitioning is only defined for partition='out'")
        dim = out_features if partition == "out" else in_features
        if dim % groups:
            raise ValueError(f"{dim} features do not split into {groups} groups")
        self.in_features = in_features
        self.out_features = out_features
        self.partition = partition
        self.groups = groups
        self.group_dim = dim // groups
        self.small_ratios = tuple(small_ratios)
        self.sizes = sizes_for_ratios(small_ratios, self.group_dim) + (self.group_dim,)
        if rescale_core and groups == 1:
            raise ValueError("rescale_core is for the per-head (grouped) query projection")
        self.rescale_core = rescale_core
        steps = [n - n_prev for n_prev, n in zip((0,) + self.sizes[:-1], self.sizes)]
        blocks = steps[: self.built_levels]
        if partition == "out":
            shapes = [(groups * n, in_features) for n in blocks]
        else:
            shapes = [(out_features, n) for n in blocks]
        self.weight_blocks = nn.ParameterList([nn.Parameter(torch.empty(s)) for s in shapes])
        if bias and partition == "out":
            self.bias_blocks = nn.ParameterList(
                [nn.Parameter(torch.empty(groups * n)) for n in blocks]
            )
            self.bias = None
        else:
            self.bias_blocks = None
            self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        # Initialise as the dense layer would be (fairseq: xavier_uniform_, zero bias), then split.
        dense = torch.empty(self.out_features, self.in_features)
        nn.init.xavier_uniform_(dense)
        with torch.no_grad():
            for block, part in zip(self.weight_blocks, self._split(dense)):
                block.copy_(part)
            for b in list(self.bias_blocks or []) + ([self.bias] if self.bias is not None else []):
                nn.init.zeros_(b)

    @classmethod
    def from_linear(cls, linear: nn.Linear, small_ratios, partition="out", groups=1, built_levels=None,
                    rescale_core=False):
        """A partitioned copy of ``linear``: at the full level it computes exactly what ``linear`` does."""
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            small_ratios=small_ratios,
            partition=partition,
            groups=groups,
            built_levels=built_levels,
            rescale_core=rescale_core,
        ).to(linear.weight)
        with torch.no_grad():
            for block, part in zip(layer.weight_blocks, layer._split(linear.weight)):
                block.copy_(part)
            if layer.bias_blocks is not None:
                for block, part in zip(layer.bias_blocks, layer._split(linear.bias.unsqueeze(1))):
                    block.copy_(part.squeeze(1))
            elif layer.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    def _split(self, dense: torch.Tensor):
        """Cut a dense (out, in) tensor into the per-level blocks (inverse of ``_join``)."""
        steps = [n - n_prev for n_prev, n in zip((0,) + self.sizes[:-1], self.sizes)]  # units added per level
        if self.partition == "in":
            return torch.split(dense, steps, dim=1)  # level i: (out, steps[i])
        tail = dense.shape[1:]  # (in,) for weights, (1,) for biases
        grouped = dense.reshape(self.groups, self.group_dim, *tail)  # (H, head_dim, in)
        # level i: the next steps[i] rows of every group, (H, steps[i], in) -> (H * steps[i], in)
        return [p.reshape(self.groups * n, *tail) for p, n in zip(torch.split(grouped, steps, 1), steps)]

    def _join(self, blocks):
        if len(blocks) == 1:
            return blocks[0]
        if self.partition == "in":
            return torch.cat(blocks, 1)  # (out, n_l)
        if self.groups == 1:
            return torch.cat(blocks, 0)  # (n_l, in)
        tail = blocks[0].shape[1:]  # (in,) for weights, () for biases
        grouped = [b.reshape(self.groups, b.shape[0] // self.groups, *tail) for b in blocks]  # (H, step, in) each
        return torch.cat(grouped, 1).reshape(-1, *tail)  # (H, n_l, in) -> (H * n_l, in); n_l < head_dim below the top

    def weight_at(self, level: int) -> torch.Tensor:
        return self._join(list(self.weight_blocks[:level]))

    def bias_at(self, level: int) -> Optional[torch.Tensor]:
        if self.bias_blocks is not None:
            return self._join(list(self.bias_blocks[:level]))
        return self.bias

    def forward(self, x):
        level = self.level
        weight = self.cached_for_inference(("weight", level), lambda: self.weight_at(level))
        bias = self.cached_for_inference(("bias", level), lambda: self.bias_at(level))
        y = F.linear(x, weight, bias)  # fc1: (..., n_l); fc2: (..., out); q/k: (..., H * n_l)
        if self.groups > 1 and level < self.num_levels:
            n = self.sizes[level - 1]
            if self.rescale_core:
                y = y * math.sqrt(self.group_dim / n)
            # (..., H * n) -> (..., H, n) -> zero-padded (..., H, head_dim) -> (..., H * head_dim)
            y = F.pad(y.unflatten(-1, (self.groups, n)), (0, self.group_dim - n)).flatten(-2)
        return y

    def merged_weight(self, level: Optional[int] = None) -> torch.Tensor:
        """The dense (out, in) weight of the full network (blocks joined in the standard layout)."""
        if (level or self.num_levels) != self.num_levels:
            raise ValueError("a small-width core is not a dense layer of the original shape")
        return self.weight_at(self.num_levels)

    def merged_bias(self) -> Optional[torch.Tensor]:
        return self.bias_at(self.num_levels)

    def param_levels(self):
        levels = {f"weight_blocks.{i}": i + 1 for i in range(len(self.weight_blocks))}
        if self.bias_blocks is not None:
            levels.update({f"bias_blocks.{i}": i + 1 for i in range(len(self.bias_blocks))})
        elif self.bias is not None:
            levels["bias"] = 1
        return levels

    def extra_repr(self):
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"partition={self.partition}, groups={self.groups}, sizes={self.sizes}, "
            + ("rescale_core=True, " if self.rescale_core else "") +
            f"level={self.level}/{self.num_levels}, built={self.built_levels}"
        )
