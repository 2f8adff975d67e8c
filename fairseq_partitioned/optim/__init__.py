from .adam_for_partitioned_model import AdamForPartitionedModel, find_partitioned_optimizer  # noqa: F401
