"""Magnitude prune-to and the random start of GaP (Ma et al., ICLR 2022, arXiv:2106.09857).

Algorithm 1 (C-GaP) and Algorithm 2 (P-GaP) need three operations on boolean masks, one per prunable
weight matrix (True = the weight is free, False = it is fixed at zero: ``f(x; Theta * m)``):

- ``ArgPruneTo(Theta, r)``: keep the largest-magnitude weights, prune the rest, to sparsity exactly
  ``r`` (section 3: "the weights with the lowest magnitudes are pruned to zero") -> ``prune``;
- ``ArgGrowTo(Theta)``: set a partition's masks to all ones (``MaskedLinear.set_mask_``); the grown
  weights start at zero, because a pruned weight is kept at zero;
- random masks at the target sparsity, the start of both algorithms (Algorithm 1, line 1) ->
  ``random_start``.

Both take the options as one ``PruningSpec`` (``spec.py``); ``prune_to`` and ``random_masks`` are the
same with the options given one by one.

Counts are exact: a matrix of n pruning units (weights or blocks, see ``granularity.py``) at sparsity
S gets exactly ``round(S * n)`` pruned units (Python's ``round``, half to even). Equal scores are
ordered deterministically: an already-pruned unit first, then by position (row-major), so ties
(e.g. all-equal weights) never change the count. A pruned weight scores its (zero) magnitude whatever
value the tensor holds there, so it is pruned again before any kept weight of the same score.
Non-uniform pruning ranks the units of all matrices together; ties between matrices are broken by
the sorted order of the names, so the result does not depend on the order of a dict.
"""
from typing import Dict, Mapping, Optional

import torch
from torch import Tensor

from .granularity import Granularity, check_shape, expand, unit_kept, unit_scores, unit_shape
from .spec import PruningSpec


def _lowest(scores: Tensor, n: int) -> Tensor:
    """``(rows, units)`` -> boolean, True for the ``n`` lowest-scoring units of every row.

    Everything below the n-th smallest score goes, then as many units at that score as are still
    needed, first positions first: exact counts in linear time (no sort), ties broken by position.
    """
    units = scores.shape[-1]
    if n <= 0 or units == 0:
        return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    if n >= units:
        return torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    if torch.isnan(scores).any():
        raise ValueError("cannot prune by magnitude: the weights hold NaN")
    nth = scores.kthvalue(n, dim=-1, keepdim=True).values  # (rows, 1)
    below = scores < nth
    at = scores == nth
    needed = n - below.sum(-1, keepdim=True)  # (rows, 1), >= 1
    if bool((at.sum(-1, keepdim=True) == needed).all()):  # no tie at the threshold (the usual case)
        return below | at
    return below | (at & (at.cumsum(-1) <= needed))


def _scores(weight: Tensor, mask: Optional[Tensor], gran: Granularity, block_score: str) -> Tensor:
    """Per-unit scores ``(rows, units)``; an already-pruned unit scores -1.

    A pruned weight counts as zero (whatever the tensor holds there), the lowest magnitude; -1 puts
    a fully pruned unit before any kept unit that also scores zero, which is the documented order.
    """
    w = weight.detach()
    score = w.abs().to(torch.promote_types(w.dtype, torch.float32))
    if mask is None:
        return unit_scores(score, gran, block_score)
    mask = mask.to(device=w.device, dtype=torch.bool)
    units = unit_scores(score.masked_fill(~mask, 0.0), gran, block_score)
    return units.masked_fill(~unit_kept(mask, gran), -1.0)


def _current_mask(current_masks: Optional[Mapping[str, Tensor]], name: str, shape) -> Optional[Tensor]:
    if current_masks is None or name not in current_masks:
        return None
    mask = current_masks[name]
    if mask.shape != shape:
        raise ValueError(f"the mask of {name} has shape {tuple(mask.shape)}, the weight {tuple(shape)}")
    return mask


def prune_to(
    weights: Mapping[str, Tensor],
    sparsity: float,
    distribution: str = "uniform",
    granularity: str = "unstructured",
    current_masks: Optional[Mapping[str, Tensor]] = None,
    block_score: str = "l1",
) -> Dict[str, Tensor]:
    """``prune`` with the options given one by one (checked by ``PruningSpec.of``)."""
    return prune(weights, PruningSpec.of(sparsity, distribution, granularity, block_score), current_masks)


def prune(
    weights: Mapping[str, Tensor], spec: PruningSpec, current_masks: Optional[Mapping[str, Tensor]] = None
) -> Dict[str, Tensor]:
    """ArgPruneTo: magnitude-prune ``weights`` to exactly ``spec.sparsity``; one boolean mask per weight.

    ``uniform``: every matrix separately, ``round(S * units)`` pruned units each. ``non-uniform``:
    one global threshold, ``round(S * total units)`` pruned units over all the given matrices
    (section 3). ``current_masks`` (optional, may hold other names too; a weight without one counts
    as dense) marks weights already pruned: they score zero and are pruned first. ``spec.block_score``:
    how a 1xB block scores (``granularity.py``).
    """
    gran, sparsity, distribution, block_score = spec.granularity, spec.sparsity, spec.distribution, spec.block_score
    names = sorted(weights)
    for name in names:
        check_shape(gran, name, weights[name].shape)
    scores = {}
    for name in names:
        w = weights[name]
        scores[name] = _scores(w, _current_mask(current_masks, name, w.shape), gran, block_score)

    pruned: Dict[str, Tensor] = {}
    if gran.is_n_of_m:  # uniform by construction (PruningSpec.of): M - N of every group
        for name in names:
            pruned[name] = _lowest(scores[name], gran.group - gran.keep)
    elif distribution == "uniform":
        for name in names:
            pruned[name] = _lowest(scores[name], round(sparsity * scores[name].shape[-1]))
    elif names:  # non-uniform: rank the units of all matrices together, (1, total units)
        device = scores[names[0]].device
        together = torch.cat([scores[n].to(device) for n in names], dim=-1)
        lowest = _lowest(together, round(sparsity * together.shape[-1]))
        sizes = [scores[n].shape[-1] for n in names]
        for name, part in zip(names, lowest.split(sizes, dim=-1)):
            pruned[name] = part.to(weights[name].device)
    return {name: expand(~pruned[name], weights[name].shape, gran) for name in weights}


def random_masks(
    shapes: Mapping[str, torch.Size],
    sparsity: float,
    distribution: str = "uniform",
    granularity: str = "unstructured",
    generator: Optional[torch.Generator] = None,
) -> Dict[str, Tensor]:
    """``random_start`` with the options given one by one (checked by ``PruningSpec.of``)."""
    return random_start(shapes, PruningSpec.of(sparsity, distribution, granularity), generator)


def random_start(
    shapes: Mapping[str, torch.Size], spec: PruningSpec, generator: Optional[torch.Generator] = None
) -> Dict[str, Tensor]:
    """Random masks at exactly ``spec.sparsity``: the start of GaP (Algorithm 1 line 1, Algorithm 2 line 2).

    Every matrix gets exactly ``round(S * units)`` pruned units chosen uniformly at random, for both
    distributions: with no magnitudes to rank there is nothing that makes one layer more important
    than another, and a global random draw would give each layer sparsity S up to sampling noise
    anyway. ``non-uniform`` is accepted so that the caller can pass its options unchanged; the masks
    become non-uniform at the first magnitude prune. Masks are drawn in sorted name order from
    ``generator`` (CPU), so the same seed gives the same masks whatever the order of ``shapes``.
    """
    gran, sparsity = spec.granularity, spec.sparsity
    for name in shapes:
        check_shape(gran, name, shapes[name])
    masks = {}
    for name in sorted(shapes):
        shape = torch.Size(shapes[name])
        rows, units = unit_shape(shape, gran)
        scores = torch.rand(rows, units, generator=generator)
        n = gran.group - gran.keep if gran.is_n_of_m else round(sparsity * units)
        masks[name] = expand(~_lowest(scores, n), shape, gran)
    return {name: masks[name] for name in shapes}
