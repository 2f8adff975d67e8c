from .alternating import level_for_update  # noqa: F401
from .gap import GapSchedule  # noqa: F401
