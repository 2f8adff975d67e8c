"""fairseq_partitioned: ATS (alternating training) and GaP (grow-and-prune) as a fairseq plugin.

Importing the package registers its task, optimizer and learning-rate scheduler with fairseq
(``--user-dir fairseq_partitioned``), and has an error of the user's printed as one line (``errors.py``).
"""
import os

# torch >= 2.6 loads with weights_only=True, which fairseq's checkpoints (they hold configs) fail;
# torch reads this variable at every load. Respect a value the user set.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

from . import errors, optim, tasks  # noqa: E402,F401

errors.install_excepthook()  # fairseq-train/-generate show a UsageError as its one line (errors.py)
