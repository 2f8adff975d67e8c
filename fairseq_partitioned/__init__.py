"""fairseq_partitioned: ATS (alternating training) and GaP (grow-and-prune) as a fairseq plugin.

Importing the package registers its task, optimizer and learning-rate scheduler with fairseq
(``--user-dir fairseq_partitioned``), the types beyond tensors and plain values that fairseq's and the
plugin's checkpoints hold with torch's weights-only loading (``checkpoints.SAFE_TYPES``), has an error
of the user's printed as one line (``errors.py``), and has a data-parallel run's process groups destroyed
before the interpreter exits (``process_groups.py``).
"""
import atexit
import logging

# Where this package is the first to import fairseq (`python -m fairseq_partitioned`,
# fairseq-partitioned-export, a Python program), fairseq's import would print, on the stderr handler it
# sets up itself, "INFO:fairseq.tasks.text_to_speech:Please install tensorboardX" (used by nothing here).
# That one logger is quiet for the import only, and set back after it.
_tts_notice = logging.getLogger("fairseq.tasks.text_to_speech")
_tts_level = _tts_notice.level
_tts_notice.setLevel(logging.WARNING)
try:
    from . import checkpoints, errors, optim, process_groups, tasks  # noqa: F401
finally:
    _tts_notice.setLevel(_tts_level)

checkpoints.register_safe_types()  # checkpoints load with torch's weights-only guard on (checkpoints.py)
errors.install_excepthook()  # fairseq-train/-generate show a UsageError as its one line (errors.py)
atexit.register(process_groups.release)  # a gloo run ends without a crash at exit (process_groups.py)
