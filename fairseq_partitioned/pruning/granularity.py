"""Sparsity granularities and distributions: what one pruning decision removes (GaP appendix A.3).

- ``unstructured``: one weight.
- ``block-1xB``: B consecutive weights along the input (last) dimension of an ``(out, in)`` matrix.
  The sparsity of a matrix is its fraction of *all-zero* blocks (appendix A.3, Table 9: B = 8). A block
  scores the sum of its weights' magnitudes (``l1``, as the official code: ``prune_utils/admm.py``,
  ``block_pruning``, which its Transformer scripts call with ``--sp-admm-block=(1,8)``: windows of one
  row and 8 columns of the ``(out, in)`` weight, the same orientation as here) or of their squares
  (``l2``: pruning the blocks of least squared L2 norm removes the least ``||W - W * m||^2``, the mask
  error that bounds GaP's convergence, Proposition 1).
- ``N:M``: N of every M consecutive weights along the last dimension are kept (the pattern of the
  sparse tensor cores named in GaP section 1), so the sparsity is 1 - N/M by construction.

Distributions (GaP section 3): ``uniform`` prunes every matrix separately to the same sparsity;
``non-uniform`` sorts the weights (or blocks) of all matrices together, one global threshold.

A matrix is viewed as ``(rows, units)`` of pruning units: ``(1, n)`` for unstructured and block
(one row of weights or of blocks), ``(n / M, M)`` for N:M (one row per group). The pruning functions
work on these views and ``expand`` turns a per-unit decision back into a per-weight mask.
"""
import re
from dataclasses import dataclass
from typing import Sequence, Tuple

import torch
from torch import Tensor

from ..errors import UsageError

DISTRIBUTIONS = ("uniform", "non-uniform")
BLOCK_SCORES = ("l1", "l2")


@dataclass(frozen=True)
class Granularity:
    text: str
    block: int = 1  # weights per pruning unit along the last dimension (1: unstructured)
    keep: int = 0  # N of N:M; 0 when not N:M
    group: int = 0  # M of N:M

    @property
    def is_n_of_m(self) -> bool:
        return self.group > 0

    @property
    def n_of_m_sparsity(self) -> float:
        return 1.0 - self.keep / self.group


def parse_granularity(text: str, flag: str = "--gap-granularity") -> Granularity:
    """``unstructured``, ``block-1x<B>`` (e.g. ``block-1x8``) or ``<N>:<M>`` (e.g. ``2:4``)."""
    if text == "unstructured":
        return Granularity(text)
    block = re.fullmatch(r"block-1x([1-9][0-9]*)", text)
    if block:
        return Granularity(text, block=int(block.group(1)))
    n_of_m = re.fullmatch(r"([1-9][0-9]*):([1-9][0-9]*)", text)
    if n_of_m and int(n_of_m.group(1)) < int(n_of_m.group(2)):
        return Granularity(text, keep=int(n_of_m.group(1)), group=int(n_of_m.group(2)))
    raise UsageError(
        f"{flag} must be unstructured, block-1x<B> or <N>:<M> with N < M (e.g. block-1x8, 2:4), got {text!r}"
    )


def unit_width(gran: Granularity) -> int:
    """How many consecutive weights of the last dimension the layout groups together."""
    return gran.group if gran.is_n_of_m else gran.block


def check_shape(gran: Granularity, name: str, shape: Sequence[int]) -> None:
    width = unit_width(gran)
    if len(shape) == 0:
        raise UsageError(f"--gap-granularity {gran.text}: {name} is a scalar, not a matrix")
    if shape[-1] % width:
        raise UsageError(
            f"--gap-granularity {gran.text}: {name} has shape {tuple(shape)}, whose last dimension "
            f"{shape[-1]} is not a multiple of {width}"
        )


def unit_shape(shape: Sequence[int], gran: Granularity) -> Tuple[int, int]:
    """``(rows, units)`` of the pruning-unit view of a tensor of ``shape``."""
    numel = torch.Size(shape).numel()
    if gran.is_n_of_m:
        return numel // gran.group, gran.group
    return 1, numel // gran.block


def unit_scores(score: Tensor, gran: Granularity, block_score: str = "l1") -> Tensor:
    """Per-weight magnitudes (any shape) -> per-unit scores ``(rows, units)``; a block scores the sum
    of its magnitudes (``l1``) or of their squares (``l2``)."""
    if gran.is_n_of_m:
        return score.reshape(-1, gran.group)  # (groups, M)
    if gran.block == 1:
        return score.reshape(1, -1)  # (1, numel)
    per_weight = score if block_score == "l1" else score.square()
    return per_weight.reshape(-1, gran.block).sum(-1).reshape(1, -1)  # (1, blocks)


def unit_kept(mask: Tensor, gran: Granularity) -> Tensor:
    """Per-weight mask -> ``(rows, units)``: a unit is kept while any of its weights is."""
    if gran.is_n_of_m:
        return mask.reshape(-1, gran.group)
    if gran.block == 1:
        return mask.reshape(1, -1)
    return mask.reshape(-1, gran.block).any(-1).reshape(1, -1)


def expand(kept_units: Tensor, shape: Sequence[int], gran: Granularity) -> Tensor:
    """``(rows, units)`` keep decisions -> a boolean mask of ``shape``."""
    if gran.is_n_of_m or gran.block == 1:
        return kept_units.reshape(shape)
    return kept_units.reshape(-1, 1).expand(-1, gran.block).reshape(shape)
