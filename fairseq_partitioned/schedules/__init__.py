from .gap import GapSchedule  # noqa: F401
