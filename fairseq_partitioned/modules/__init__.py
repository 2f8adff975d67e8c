from .levels import LevelledModule, PartitioningMismatch  # noqa: F401
from .partitioned_decoder_layers import PartitionedDecoderLayers, exit_logits  # noqa: F401
from .partitioned_linear import PartitionedLinear  # noqa: F401
from .partitioned_rank_linear import PartitionedRankLinear  # noqa: F401
from .partitioning import (  # noqa: F401
    DEPTH_KIND,
    MODULE_KINDS,
    PartitionSpec,
    parameter_counts,
    partition_model,
    partitioned_modules,
    set_level,
)
from .masked_linear import MaskedLinear, mask_layers, masked_layers  # noqa: F401,E402
