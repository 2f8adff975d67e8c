from .alternating import level_for_update  # noqa: F401
