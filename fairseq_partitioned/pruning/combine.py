"""Combine the workers of parallel GaP into one model (P-GaP, Algorithm 2 lines 9-10).

Every worker starts from identical copies of ``[Theta, m]`` (line 5), grows its own partition S_i to
dense and trains the whole model for T epochs (lines 7-8). Lines 9-10 then "collect the dense
partition Theta(i)^{S_i} from the i-th machine" and "combine all Theta(i)^{S_i} into a dense model";
section 3.1 adds that P-GaP "only keeps the dense partition and discards the sparse partitions".

The rule (the paper is silent on what lies outside every partition; it matches the official code,
boone891214/GaP, where shared embeddings come from the first worker): every tensor comes from exactly
one worker that trained it; none is averaged or reset.

- A tensor of an encoder or decoder layer (its weights, masks, biases, layer norms) comes from the
  worker that grew the partition holding that layer, so a layer's biases and norms stay the ones
  trained with its dense weights.
- Encoder tensors outside the layers (embeddings, final layer norm) come from the worker of the
  first encoder partition; decoder ones (embeddings, final layer norm, output projection) from the
  worker of the last decoder partition; anything else from worker 0.
- Tied tensors (shared embeddings) come from one worker: that of the first of their names.
"""
from typing import Dict, List, Mapping, Sequence

import torch
from torch import Tensor

from .partitions import layer_of, transformer_partitions


def owners(model_state: Mapping[str, Tensor], kappa: int, layout: str = "official") -> List[List[str]]:
    """The names each of the ``kappa`` workers contributes to the combined model (every name once);
    ``layout``: how the layers are partitioned (``partitions.py``)."""
    layers = [layer_of(k) for k in model_state]
    encoder_layers = 1 + max([i for s, i in filter(None, layers) if s == "encoder"], default=-1)
    decoder_layers = 1 + max([i for s, i in filter(None, layers) if s == "decoder"], default=-1)
    partitions = transformer_partitions(encoder_layers, decoder_layers, kappa, layout)
    partition_of = {layer: i for i, part in enumerate(partitions) for layer in part}
    first_encoder = partition_of.get(("encoder", 0), 0)
    last_decoder = partition_of.get(("decoder", decoder_layers - 1), kappa - 1)
    storage_owner: Dict[int, int] = {}
    owned: List[List[str]] = [[] for _ in range(kappa)]
    for key, value in model_state.items():
        layer = layer_of(key)
        if layer is not None:
            worker = partition_of[layer]
        elif key.startswith("encoder."):
            worker = first_encoder
        elif key.startswith("decoder."):
            worker = last_decoder
        else:
            worker = 0
        if torch.is_tensor(value) and value.numel() > 0:  # tied tensors share one storage
            worker = storage_owner.setdefault(value.untyped_storage().data_ptr(), worker)
        owned[worker].append(key)
    return owned


def combine(worker_states: Sequence[Mapping[str, Tensor]], worker_owned: Sequence[Sequence[str]]) -> Dict[str, Tensor]:
    """One state from the kappa workers of P-GaP: every tensor from the worker that owns it.

    ``worker_states[i]``: the state dict (name -> tensor) of worker i, the same names and shapes on
    every worker. ``worker_owned[i]``: the names worker i contributes; together they must name every
    tensor exactly once (``owners`` gives the rule). The result keeps worker 0's key order and holds
    the workers' own tensors (no copies).
    """
    if not worker_states or len(worker_states) != len(worker_owned):
        raise ValueError(
            f"combine needs one list of owned names per worker, got {len(worker_states)} states and "
            f"{len(worker_owned)} lists"
        )
    owner: Dict[str, int] = {}
    for i, names in enumerate(worker_owned):
        for name in names:
            if name in owner:
                raise ValueError(f"{name} is owned by workers {owner[name]} and {i}: each tensor has one owner")
            owner[name] = i
    keys = list(worker_states[0])
    for j, state in enumerate(worker_states):
        for name in set(keys) ^ set(state):
            where = f"missing from worker {j}" if name in keys else f"only in worker {j}"
            raise ValueError(f"{name} is {where}: the workers must hold the same model")
        for name in keys:
            first, t = worker_states[0][name], state[name]
            if torch.is_tensor(first) and (t.shape != first.shape or t.dtype != first.dtype):
                raise ValueError(
                    f"{name} is {tuple(first.shape)} {first.dtype} on worker 0 but {tuple(t.shape)} {t.dtype} "
                    f"on worker {j}"
                )
    for name in keys:
        if name not in owner:
            raise ValueError(f"{name} has no owner: list it in the names of the worker it comes from")
    for name in owner:
        if name not in worker_states[0]:
            raise ValueError(f"worker {owner[name]} owns {name}, which is in no worker's state")
    return {name: worker_states[owner[name]][name] for name in keys}
