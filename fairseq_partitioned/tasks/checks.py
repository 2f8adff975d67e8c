"""What a user gave the task, checked against what the run will do: one line for each mistake.

- the checkpoints fairseq-generate is about to read (``--path``) exist and can be read.
"""
import os

from fairseq import utils

from .. import checkpoints
from ..checkpoints import config_value
from ..errors import MissingCheckpoint


def check_evaluated_checkpoints(cfg):
    """fairseq-generate (and -interactive) read --path after setting up the task: a checkpoint there that
    is missing or cannot be read is one line here rather than a traceback there."""
    paths = config_value(cfg, "eval_path")
    for path in utils.split_paths(paths) if paths else []:
        if os.path.isfile(path):
            checkpoints.load_lazily(path)
        elif not any(os.path.isfile(path[: -len(".pt")] + shard) for shard in ("-shard0.pt", "_part0.pt")):
            raise MissingCheckpoint(f"--path {path}: no such checkpoint")  # (fairseq reads shards by those names)
