from .alternating import AlternatingTraining  # noqa: F401
from .choice import is_gap  # noqa: F401
from .grow_and_prune import GrowAndPrune, check_gap_config  # noqa: F401
