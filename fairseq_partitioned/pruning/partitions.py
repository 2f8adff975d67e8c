"""GaP partitions of a Transformer and the schedule that picks the one to grow (Ma et al., ICLR 2022).

Partitions are contiguous layers (section 1: "several partitions composed of contiguous layers").
For the Transformer, section 3.4: "We equally divide the Transformer models into three or six
partitions with the decoder containing 2x partitions of the encoder", and appendix A.1: "it is
naturally divided to three partitions". So kappa=3 is {encoder}, {first half of the decoder},
{second half of the decoder}, and kappa=6 is two encoder parts and four decoder parts.

General rule (ours; it reproduces both): kappa=1 is one partition of every layer; otherwise the
encoder gets ``e = max(1, round(kappa / 3))`` parts and the decoder the other ``kappa - e``, each
stack cut into contiguous parts as equal as possible, earlier parts one layer longer when the count
does not divide (6 decoder layers in 4 parts: 2, 2, 1, 1). A model without an encoder (or decoder)
puts all kappa parts in the other stack.

A layer id is ``("encoder", i)`` or ``("decoder", j)``; a fairseq parameter name maps to one through
``layer_of``. The prunable weights are the matrices of attention (q, k, v, out) and FFN (fc1, fc2)
of every layer (section 3: only the weights of matrix multiplications are made sparse; biases and
normalization stay dense); embeddings and the output projection stay dense too (DESIGN.md).
"""
import hashlib
import re
from typing import Iterable, List, Optional, Sequence, Tuple, TypeVar

import torch

LayerId = Tuple[str, int]
T = TypeVar("T")

DEFAULT_PRUNABLE = (
    r"(?:^|\.)(encoder|decoder)\.layers\.\d+\.((self_attn|encoder_attn)\.(q|k|v|out)_proj|fc1|fc2)\.weight$"
)

_LAYER = re.compile(r"(?:^|\.)(encoder|decoder)\.layers\.(\d+)\.")


def layer_of(name: str) -> Optional[LayerId]:
    """``"decoder.layers.2.encoder_attn.k_proj.weight"`` -> ``("decoder", 2)``; None outside layers."""
    match = _LAYER.search(name)
    return (match.group(1), int(match.group(2))) if match else None


def prunable_names(names: Iterable[str], regex: Optional[str] = None) -> List[str]:
    """The names that ``regex`` (``re.search``; default ``DEFAULT_PRUNABLE``) matches, in order."""
    pattern = re.compile(DEFAULT_PRUNABLE if regex is None else regex)
    return [name for name in names if pattern.search(name)]


def _split(count: int, parts: int) -> List[range]:
    """``range(count)`` in ``parts`` contiguous pieces, the first ``count % parts`` one longer."""
    size, extra = divmod(count, parts)
    pieces, start = [], 0
    for i in range(parts):
        stop = start + size + (1 if i < extra else 0)
        pieces.append(range(start, stop))
        start = stop
    return pieces


def transformer_partitions(encoder_layers: int, decoder_layers: int, kappa: int) -> List[List[LayerId]]:
    """The kappa partitions S_0..S_{kappa-1} of Algorithm 1 line 2, encoder first."""
    if kappa < 1:
        raise ValueError(f"--gap-partitions must be >= 1, got {kappa}")
    if encoder_layers < 0 or decoder_layers < 0 or encoder_layers + decoder_layers == 0:
        raise ValueError(f"a model needs layers to partition, got {encoder_layers} + {decoder_layers}")
    everything = [("encoder", i) for i in range(encoder_layers)]
    everything += [("decoder", j) for j in range(decoder_layers)]
    if kappa == 1:
        return [everything]
    if decoder_layers == 0:
        stacks = [("encoder", encoder_layers, kappa)]
    elif encoder_layers == 0:
        stacks = [("decoder", decoder_layers, kappa)]
    else:
        e = max(1, round(kappa / 3))
        stacks = [("encoder", encoder_layers, e), ("decoder", decoder_layers, kappa - e)]
    partitions = []
    for stack, count, parts in stacks:
        if parts > count:
            raise ValueError(
                f"--gap-partitions {kappa}: more partitions than layers (the {stack}'s {count} layers "
                f"would be split into {parts} parts)"
            )
        partitions += [[(stack, i) for i in piece] for piece in _split(count, parts)]
    return partitions


def partition_names(names: Iterable[str], partitions: Sequence[Sequence[LayerId]]) -> List[List[str]]:
    """The parameter names of each partition (in the order of ``names``).

    Every name must be in a layer of some partition: a prunable weight outside every partition would
    never be grown and keep its random start mask for ever.
    """
    index = {layer: i for i, partition in enumerate(partitions) for layer in partition}
    grouped: List[List[str]] = [[] for _ in partitions]
    for name in names:
        layer = layer_of(name)
        if layer not in index:
            where = f"is in {layer}, in no partition" if layer else "is not in an encoder or decoder layer"
            raise ValueError(f"prunable weight {name} {where}: GaP partitions are made of layers")
        grouped[index[layer]].append(name)
    return grouped


def cyclic_partition(step: int, kappa: int) -> int:
    """C-GaP, Algorithm 1 line 5: grow ``step mod kappa``; prune ``cyclic_partition(step - 1, kappa)``."""
    if kappa < 1:
        raise ValueError(f"--gap-partitions must be >= 1, got {kappa}")
    return step % kappa


def _round_seed(seed: int, round_: int) -> int:
    digest = hashlib.sha256(f"gap-random-partition:{seed}:{round_}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # a non-negative 63-bit seed


def random_partition(step: int, partitions: Sequence[Sequence[T]], seed: int) -> List[T]:
    """The random-partition variant (appendix A.2, Tables 7-8): what to grow at ``step``.

    A.2: "a random partition chooses a uniformly random subset of layers to grow in each step", and
    blames the lower BLEU on correlated weights landing in different partitions ("W_key, W_query,
    W_value in the same attention block"), not on coverage. So we keep everything else of C-GaP:
    every round of kappa = ``len(partitions)`` steps draws a uniformly random permutation of all the
    items and cuts it into parts of the sizes of ``partitions``; step ``k`` grows part ``k mod
    kappa``. Each step thus grows a uniformly random subset of the size of the partition cyclic GaP
    would grow, and every item is grown once per round (Remark 3).

    The items are whatever the partitions hold: layer ids (``transformer_partitions``) draw whole
    Transformer layers; parameter names (``partition_names``) draw single weight matrices, which is
    what lets q, k and v of one attention block be split, as A.2 describes.

    A pure function of ``(seed, step)``: a resumed run makes the same choice. Items come back in the
    order of ``partitions``. The items to prune at ``step`` are those of ``step - 1``; at step 0
    nothing is dense yet (the random start).
    """
    if step < 0:
        raise ValueError(f"GaP step must be >= 0, got {step}")
    if not partitions:
        raise ValueError("--gap-partitions must be >= 1, got no partitions")
    sizes = [len(p) for p in partitions]
    items = [item for p in partitions for item in p]
    round_, part = divmod(step, len(partitions))
    generator = torch.Generator().manual_seed(_round_seed(seed, round_))
    order = torch.randperm(len(items), generator=generator).tolist()
    start = sum(sizes[:part])
    chosen = sorted(order[start : start + sizes[part]])
    return [items[i] for i in chosen]
