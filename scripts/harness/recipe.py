"""The pieces of every fairseq-train and fairseq-generate command line the scripts build.

The study (study/design.py), the papers' tables (papers/pipeline.py), the GaP ladder (ladder/design.py) and
the benchmark (bench/configs.py) assemble their commands from these: where the plugin is, which task and
optimizer a run of the plugin or of plain fairseq names, the Adam and label-smoothing settings the papers
share, how a training starts from another's checkpoint, and the head of a fairseq-generate command.
Each caller keeps its own order of flags (its printed commands are what a reader compares with the
paper). Importing this module needs neither fairseq nor torch.
"""
import os
from typing import List, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
PLUGIN = os.path.join(ROOT, "fairseq_partitioned")
PLUGIN_TASK = "translation_with_partitioned_model"
PLUGIN_OPTIMIZER = "adam_for_partitioned_model"
KINDS = {"rank": "PartitionedRankLinear", "width": "PartitionedLinear"}  # --partitioned-linear-module-name

# The console scripts as modules of the running interpreter (a command needs no PATH).
PROGRAMS = {
    "fairseq-train": ["-m", "fairseq_cli.train"],
    "fairseq-generate": ["-m", "fairseq_cli.generate"],
    "fairseq-partitioned-prune": ["-m", "fairseq_partitioned.cli.prune"],
    "fairseq-partitioned-pgap": ["-m", "fairseq_partitioned.cli.pgap"],
    "select-best": [os.path.join(ROOT, "scripts", "select_best.py")],
}

ADAM_098 = ("--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-09")
LABEL_SMOOTHING = ("--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1")


def task(plugin: bool) -> str:
    """The plugin's task, or fairseq's own translation task (a standard Transformer)."""
    return PLUGIN_TASK if plugin else "translation"


def optimizer(task_name: str) -> str:
    """The optimizer that goes with a task: the plugin's Adam (which applies the update masks), or fairseq's."""
    return PLUGIN_OPTIMIZER if task_name == PLUGIN_TASK else "adam"


def data_and_task(data: str, task_name: str) -> List[str]:
    """The head of a fairseq-train or fairseq-generate command: the data, the plugin, the task."""
    return [data, "--user-dir", PLUGIN, "--task", task_name]


def start_from(checkpoint: str) -> List[str]:
    """Start a training from another run's checkpoint (its model and task state; a fresh optimizer, learning
    rate, data order and meters), once: relaunched, fairseq-train resumes from its own checkpoint_last.pt."""
    return ["--finetune-from-model", checkpoint]


def generate(data: str, task_name: str, checkpoint: str, subset: str, options: Sequence[str],
             network: str) -> List[str]:
    """fairseq-generate's arguments: translate ``subset`` with ``checkpoint`` (``options``: beam, lengths, ...),
    the core (``--max-level 1``) when ``network`` is the core."""
    argv = [*data_and_task(data, task_name), "--path", checkpoint, "--gen-subset", subset, *options]
    if network == "core":
        argv += ["--max-level", "1"]
    return argv
