from .alternating import AlternatingTraining  # noqa: F401
from .choice import is_gap  # noqa: F401
from .grow_and_prune import GrowAndPrune, check_gap_config, schedule_end, schedule_length  # noqa: F401
