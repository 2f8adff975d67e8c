"""Combine the workers of parallel GaP into one model (P-GaP, Algorithm 2 lines 9-10).

Every worker starts from identical copies of ``[Theta, m]`` (line 5), grows its own partition S_i to
dense and trains the whole model for T epochs (lines 7-8). Lines 9-10 then "collect the dense
partition Theta(i)^{S_i} from the i-th machine" and "combine all Theta(i)^{S_i} into a dense model";
section 3.1 adds that P-GaP "only keeps the dense partition and discards the sparse partitions".
So an *owned* tensor, one listed in ``worker_partitions[i]`` (the prunable weights of S_i and, if
the caller keeps them in the state, their masks), comes from worker i alone.

The paper does not say where the parameters outside every partition come from (embeddings, layer
norms, biases, the output projection, any weight that is not prunable). Every worker trained them,
from the same start, on its own data for the same T epochs; the default is their average over the
workers (one step of model averaging, as in local SGD), so that no worker's training is thrown
away. ``shared_from=i`` takes them from worker i instead, which is the literal "discard" reading
and also works when averaging makes no sense. A shared tensor equal on every worker (a
hyper-parameter buffer, or one nobody updated) is returned unchanged, bit for bit; a non-float one
that differs (an integer counter, a mask) cannot be averaged and is an error unless it is owned.
"""
from typing import Dict, List, Mapping, Optional, Sequence

import torch
from torch import Tensor


def _owners(worker_partitions: Sequence[Sequence[str]]) -> Dict[str, int]:
    owner: Dict[str, int] = {}
    for i, names in enumerate(worker_partitions):
        for name in names:
            if name in owner and owner[name] != i:
                raise ValueError(
                    f"{name} is owned by workers {owner[name]} and {i}: partitions must be disjoint"
                )
            owner[name] = i
    return owner


def _check_states(worker_states: Sequence[Mapping[str, Tensor]], owner: Mapping[str, int]) -> List[str]:
    keys = list(worker_states[0])
    every = set().union(*(state.keys() for state in worker_states))
    keys += [k for k in sorted(every) if k not in worker_states[0]]
    for name in keys:
        for j, state in enumerate(worker_states):
            if name not in state:
                raise ValueError(f"{name} is missing from worker {j}")
    for name in owner:
        if name not in every:
            raise ValueError(f"worker {owner[name]} owns {name}, which is in no worker's state")
    for name in keys:
        first = worker_states[0][name]
        for j, state in enumerate(worker_states[1:], 1):
            t = state[name]
            if t.shape != first.shape or t.dtype != first.dtype:
                raise ValueError(
                    f"{name} is {tuple(first.shape)} {first.dtype} on worker 0 but "
                    f"{tuple(t.shape)} {t.dtype} on worker {j}"
                )
    return keys


def _average(name: str, tensors: List[Tensor]) -> Tensor:
    if all(torch.equal(tensors[0], t) for t in tensors[1:]):
        return tensors[0]
    if not tensors[0].is_floating_point():
        raise ValueError(
            f"{name} ({tensors[0].dtype}) differs across workers and cannot be averaged: list it in the "
            "partition of the worker that owns it, or take shared tensors from one worker (shared_from)"
        )
    total = tensors[0].detach().to(torch.float64)
    for t in tensors[1:]:
        total = total + t.detach().to(device=total.device, dtype=torch.float64)
    return (total / len(tensors)).to(tensors[0].dtype)


def combine(
    worker_states: Sequence[Mapping[str, Tensor]],
    worker_partitions: Sequence[Sequence[str]],
    shared_from: Optional[int] = None,
) -> Dict[str, Tensor]:
    """One state from the kappa workers of P-GaP: owned tensors from their owner, the rest shared.

    ``worker_states[i]``: the state dict (name -> tensor) of worker i, the same names on every
    worker. ``worker_partitions[i]``: the names worker i owns (grew dense). Shared tensors are the
    average over workers (default) or, with ``shared_from=i``, worker i's. The result keeps worker
    0's key order and may hold the workers' own tensors (no copies).
    """
    if not worker_states or len(worker_states) != len(worker_partitions):
        raise ValueError(
            f"combine needs one partition per worker, got {len(worker_states)} states and "
            f"{len(worker_partitions)} partitions"
        )
    if shared_from is not None and not 0 <= shared_from < len(worker_states):
        raise ValueError(f"shared_from={shared_from}, but there are {len(worker_states)} workers")
    owner = _owners(worker_partitions)
    keys = _check_states(worker_states, owner)
    combined: Dict[str, Tensor] = {}
    for name in keys:
        if name in owner:
            combined[name] = worker_states[owner[name]][name]
        elif shared_from is not None:
            combined[name] = worker_states[shared_from][name]
        else:
            combined[name] = _average(name, [state[name] for state in worker_states])
    return combined
