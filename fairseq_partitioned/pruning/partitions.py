"""GaP partitions of a Transformer and the schedule that picks what to grow (Ma et al., ICLR 2022).

Partitions are contiguous layers (section 1: "several partitions composed of contiguous layers"). Two
readings of the Transformer's (``--gap-partition-layout``):

- ``official`` (the default: the code that produced Tables 4, 6, 8, 9, boone891214/GaP
  ``Transformer/profiles/``): the encoder layers then the decoder layers, cut into kappa contiguous
  parts of equal length. For 6+6 layers: kappa=3 is {enc 0-3}, {enc 4-5, dec 0-1}, {dec 2-5}; kappa=6
  is six 2-layer blocks, three in the encoder and three in the decoder.
- ``paper`` (section 3.4: "We equally divide the Transformer models into three or six partitions with
  the decoder containing 2x partitions of the encoder", and A.1: "it is naturally divided to three
  partitions"): kappa=3 is {encoder}, {first half of the decoder}, {second half of the decoder};
  kappa=6 is two encoder parts and four decoder parts. In general the encoder gets
  ``e = max(1, round(kappa / 3))`` parts and the decoder the other ``kappa - e``.

Either way a stack is cut into parts as equal as possible, earlier parts one layer longer when the
count does not divide (6 decoder layers in 4 parts: 2, 2, 1, 1); kappa=1 is one partition of every
layer; a model without an encoder (or decoder) puts all kappa parts in the other stack.

A layer id is ``("encoder", i)`` or ``("decoder", j)``; a fairseq parameter name maps to one through
``layer_of``. The prunable weights are the matrices of attention (q, k, v, out) and FFN (fc1, fc2)
of every layer (section 3: only the weights of matrix multiplications are made sparse; biases and
normalization stay dense); embeddings and the output projection stay dense too (docs/design.md).
"""
import hashlib
import re
from typing import Iterable, List, Optional, Sequence, Tuple, TypeVar

import torch

from ..errors import UsageError

LayerId = Tuple[str, int]
T = TypeVar("T")
LAYOUTS = ("official", "paper")

DEFAULT_PRUNABLE = (
    r"(?:^|\.)(encoder|decoder)\.layers\.\d+\.((self_attn|encoder_attn)\.(q|k|v|out)_proj|fc1|fc2)\.weight$"
)

_LAYER = re.compile(r"(?:^|\.)(encoder|decoder)\.layers\.(\d+)\.")


def layer_of(name: str) -> Optional[LayerId]:
    """``"decoder.layers.2.encoder_attn.k_proj.weight"`` -> ``("decoder", 2)``; None outside layers."""
    match = _LAYER.search(name)
    return (match.group(1), int(match.group(2))) if match else None


def prunable_names(names: Iterable[str], regex: Optional[str] = None, flag: str = "--gap-prunable") -> List[str]:
    """The names that ``regex`` (``re.search``; default ``DEFAULT_PRUNABLE``) matches, in order; ``flag``
    is the flag that set it (named in the error for a pattern that is not one)."""
    try:
        pattern = re.compile(DEFAULT_PRUNABLE if regex is None else regex)
    except re.error as e:
        raise UsageError(f"{flag} {regex!r} is not a regular expression: {e}") from e
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


def transformer_partitions(encoder_layers: int, decoder_layers: int, kappa: int,
                           layout: str = "official") -> List[List[LayerId]]:
    """The kappa partitions S_0..S_{kappa-1} of Algorithm 1 line 2, encoder first."""
    if kappa < 1:
        raise UsageError(f"--gap-partitions must be >= 1, got {kappa}")
    if layout not in LAYOUTS:
        raise UsageError(f"--gap-partition-layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if encoder_layers < 0 or decoder_layers < 0 or encoder_layers + decoder_layers == 0:
        raise ValueError(f"a model needs layers to partition, got {encoder_layers} + {decoder_layers}")
    everything = [("encoder", i) for i in range(encoder_layers)]
    everything += [("decoder", j) for j in range(decoder_layers)]
    if kappa == 1:
        return [everything]
    if layout == "official" or decoder_layers == 0 or encoder_layers == 0:
        if kappa > len(everything):
            raise UsageError(f"--gap-partitions {kappa}: more partitions than layers ({len(everything)})")
        return [[everything[i] for i in piece] for piece in _split(len(everything), kappa)]
    e = max(1, round(kappa / 3))
    partitions = []
    for stack, count, parts in (("encoder", encoder_layers, e), ("decoder", decoder_layers, kappa - e)):
        if parts > count:
            raise UsageError(
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
            raise UsageError(f"prunable weight {name} {where}: GaP partitions are made of layers")
        grouped[index[layer]].append(name)
    return grouped


def cyclic_partition(step: int, kappa: int) -> int:
    """C-GaP, Algorithm 1 line 5: grow ``step mod kappa``; prune ``cyclic_partition(step - 1, kappa)``."""
    if kappa < 1:
        raise UsageError(f"--gap-partitions must be >= 1, got {kappa}")
    return step % kappa


def _step_seed(seed: int, step: int) -> int:
    digest = hashlib.sha256(f"gap-random-partition:{seed}:{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # a non-negative 63-bit seed


def random_partition(step: int, items: Sequence[T], kappa: int, seed: int) -> List[T]:
    """The random-partition variant (appendix A.2, Table 8): what to grow at ``step``.

    As the official code draws it (``prune_utils/utils_pr.py``, ``generate_rand_seq_gap_yaml``): every
    step grows ``len(items) // kappa`` items drawn uniformly from those the previous step did not
    grow. The items are the prunable weight matrices, so the matrices of one layer (q, k and v of one
    attention block) land in different steps, which A.2 blames for the lower BLEU. The official draws
    are unseeded; here step s draws from a generator seeded by ``(seed, s)``, so the choice is a pure
    function of ``(seed, step)`` and a resumed run makes the same one. Items come back in their order.
    """
    if step < 0:
        raise ValueError(f"GaP step must be >= 0, got {step}")
    if not 1 <= kappa <= len(items):
        raise UsageError(f"--gap-partitions must be in 1..{len(items)} (the prunable matrices), got {kappa}")
    size = len(items) // kappa
    previous: set = set()
    for s in range(step + 1):
        candidates = [i for i in range(len(items)) if i not in previous]
        if len(candidates) < size:  # kappa = 1: every step grows everything
            candidates = list(range(len(items)))
        generator = torch.Generator().manual_seed(_step_seed(seed, s))
        order = torch.randperm(len(candidates), generator=generator).tolist()
        previous = {candidates[i] for i in order[:size]}
    return [items[i] for i in sorted(previous)]
