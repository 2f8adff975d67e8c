"""GaP pruning in plain torch (no fairseq): masks, partitions, P-GaP combine, sparsity reports."""
from .combine import combine, owners  # noqa: F401
from .granularity import BLOCK_SCORES, DISTRIBUTIONS, Granularity, parse_granularity  # noqa: F401
from .magnitude import prune, prune_to, random_masks, random_start  # noqa: F401
from .partitions import (  # noqa: F401
    DEFAULT_PRUNABLE,
    LAYOUTS,
    LayerId,
    cyclic_partition,
    layer_of,
    partition_names,
    prunable_names,
    random_partition,
    transformer_partitions,
)
from .spec import GAP_FLAGS, PruningFlags, PruningSpec  # noqa: F401
from .report import SparsityRow, format_table, sparsity_table  # noqa: F401
