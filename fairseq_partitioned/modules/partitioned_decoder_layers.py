"""The depth core: a Transformer whose core decodes with the first K layers of its decoder.

Autoregressive decoding pays per decoder layer per token, the encoder once per sentence: a shallow
decoder behind the whole encoder keeps much of a deep decoder's accuracy at a fraction of its latency
(Kasai et al., ICLR 2021, "Deep Encoder, Shallow Decoder"). Here that network is the core of ATS: level 1
is the model whose decoder runs its layers 0..K-1, then the decoder's final layer norm (if any) and the
same output projection; level 2 is the full network. The encoder and the embeddings are shared whole.

``PartitionedDecoderLayers`` takes the place of the decoder's ``nn.ModuleList`` of layers, as fairseq's
own ``LayerDropModuleList`` does (``--decoder-layerdrop``): the decoder iterates over it, and at level 1
the iteration stops after layer K-1. It keeps the list's parameter names (``decoder.layers.i.*``), so a
checkpoint holds a plain Transformer's tensors, and the core's export is its first K layers. Built with
level 1 only (``--max-level 1``: the core alone, or evaluating or exporting the core), the layers from K
on do not exist.

The core is an early exit of the full network: its output is the decoder's state after layer K-1, which
the full forward computes on its way (``extra["inner_states"][K]``). ``exit_logits`` gives the core's
logits from that state: the core's loss from the full network's forward (``methods/early_exit.py``).
"""
import itertools
import re
from typing import Dict, List, Optional

from torch import Tensor, nn

from .levels import LevelledModule, PartitioningMismatch


class PartitionedDecoderLayers(LevelledModule, nn.ModuleList):
    """The decoder's layers; at level 1 only the first ``core_layers`` of them run."""

    def __init__(self, layers, core_layers: int, built_levels: Optional[int] = None):
        LevelledModule.__init__(self, num_levels=2, built_levels=built_levels)
        layers = list(layers)
        if not 1 <= core_layers < len(layers):
            raise ValueError(f"core_layers must be in 1..{len(layers) - 1}, got {core_layers}")
        self.core_layers = core_layers
        self.extend(layers[:core_layers] if self.built_levels == 1 else layers)

    def __iter__(self):
        layers = super().__iter__()
        return itertools.islice(layers, self.core_layers) if self.level == 1 else layers

    def built(self) -> List[nn.Module]:
        """Every layer built, whatever the level."""
        return list(self._modules.values())

    def param_levels(self) -> Dict[str, int]:
        return {name: 1 if int(name.split(".")[0]) < self.core_layers else 2 for name, _ in self.named_parameters()}

    def standard_numel(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def upgrade_state_dict_named(self, state_dict, name):
        """Called by fairseq before loading: a model built with the core alone loads the first K layers
        of a full checkpoint; a checkpoint without the layers this model builds gets one line."""
        prefix = name + "." if name else ""
        layer_of = re.compile(re.escape(prefix) + r"(\d+)\.")
        saved = {int(m.group(1)) for m in map(layer_of.match, state_dict) if m}
        if self.built_levels == 1:  # the core alone: the layers above it are not built
            for key in [k for k in state_dict if (m := layer_of.match(k)) and int(m.group(1)) >= len(self)]:
                del state_dict[key]
        missing = sorted(set(range(len(self))) - saved)
        if missing:
            raise PartitioningMismatch(
                f"checkpoint has no '{prefix}{missing[0]}': it holds {len(saved)} decoder layers, this model "
                f"{'the core of ' if self.built_levels == 1 else ''}{len(self)} (another --decoder-layers or "
                "--core-decoder-layers)")


def exit_logits(decoder: nn.Module, state: Tensor) -> Tensor:
    """The logits of the network that stops after the decoder layer whose output is ``state`` (T, B, C):
    what the decoder does after its last layer (fairseq's ``TransformerDecoderBase.extract_features``,
    then ``output_layer``), on that state."""
    x = state if decoder.layer_norm is None else decoder.layer_norm(state)
    x = x.transpose(0, 1)  # (B, T, C)
    if decoder.project_out_dim is not None:
        x = decoder.project_out_dim(x)
    return decoder.output_layer(x)
