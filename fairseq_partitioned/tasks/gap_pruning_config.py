"""The flags that say what a GaP model is: its pruning options (``pruning.PruningSpec``) and its
partitions (groups of contiguous layers that GaP grows in turn).

Declared once, here: the task's configuration has them (``TranslationWithPartitionedModelConfig``
inherits this class, and fairseq turns its fields into ``fairseq-train`` flags), and
fairseq-partitioned-pgap reads the same flags from the fairseq-train arguments it is given
(``add_gap_pruning_args``), to combine its workers' checkpoints as they were trained.
"""
from argparse import ArgumentParser
from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.dataclass.utils import gen_parser_from_dataclass

from ..pruning import BLOCK_SCORES, DISTRIBUTIONS, LAYOUTS


@dataclass
class GapPruningConfig(FairseqDataclass):
    gap_sparsity: float = field(
        default=0.0,
        metadata={"help": "GaP's target sparsity S in [0, 1); > 0 trains a sparse Transformer with GaP (masks on), "
                          "0 a partitioned model (ATS)"},
    )
    gap_partitions: int = field(
        default=3,
        metadata={"help": "kappa: the number of GaP partitions, groups of contiguous layers grown in turn "
                          "(--gap-partition-layout; not ATS's core and extension)"},
    )
    gap_partition_layout: ChoiceEnum(list(LAYOUTS)) = field(
        default="official",
        metadata={"help": "how the layers are cut into GaP partitions. official: encoder then decoder layers cut "
                          "into kappa equal parts (the official code: kappa=3 is enc 0-3, enc 4-5 + dec 0-1, dec 2-5); "
                          "paper: the decoder gets 2x the encoder's partitions (sec. 3.4: encoder, decoder 0-2, "
                          "decoder 3-5)"},
    )
    gap_distribution: ChoiceEnum(list(DISTRIBUTIONS)) = field(
        default="uniform",
        metadata={"help": "how S is spread: uniform = S in every matrix, non-uniform = S overall by one magnitude "
                          "threshold"},
    )
    gap_granularity: str = field(
        default="unstructured",
        metadata={"help": "what one pruning decision removes: unstructured (a weight), block-1x8 (all-zero 1x8 "
                          "blocks) or 2:4 (2 of every 4 weights kept)"},
    )
    gap_block_score: ChoiceEnum(list(BLOCK_SCORES)) = field(
        default="l1",
        metadata={"help": "a block's magnitude: the sum of |w| (l1, the official code) or of w^2 (l2)"},
    )
    gap_prunable: Optional[str] = field(
        default=None,
        metadata={"help": "which weights GaP prunes: a regex over parameter names (default: attention q/k/v/out "
                          "and FFN fc1/fc2 weights of every layer)"},
    )


def add_gap_pruning_args(parser: ArgumentParser):
    """The flags of ``GapPruningConfig``, with the task's defaults, on ``parser``."""
    gen_parser_from_dataclass(parser, GapPruningConfig())
