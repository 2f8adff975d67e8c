from .adam_for_partitioned_model import AdamForPartitionedModel, find_partitioned_optimizer  # noqa: F401
from .gap_inverse_sqrt import GapInverseSqrtSchedule  # noqa: F401
