from .translation_with_partitioned_model import TranslationWithPartitionedModelTask  # noqa: F401
