"""GaP pruning in plain torch (no fairseq): masks, partitions, P-GaP combine, sparsity reports."""
from .combine import combine, owners  # noqa: F401
from .granularity import BLOCK_SCORES, DISTRIBUTIONS, Granularity, check_options, parse_granularity  # noqa: F401
from .magnitude import prune_to, random_masks  # noqa: F401
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
from .report import SparsityRow, format_table, sparsity_table  # noqa: F401
