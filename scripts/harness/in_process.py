"""fairseq set up in this process, as its own commands set themselves up: the one place where the scripts
turn a fairseq command line into a configuration, a task and a model without starting the command.

- ``training_config``: fairseq-train's parsing (``options.get_training_parser`` -> ``parse_args_and_arch``
  -> ``convert_namespace_to_omegaconf``): the hydra configs (make_hydra_configs.py) and the benchmark;
- ``trainer``: what ``fairseq_cli.train.main`` does with that configuration before its first update
  (seeds, task, model, criterion, ``fairseq.trainer.Trainer`` with its optimizer and scheduler built);
- ``generator``: what fairseq-generate (``fairseq_cli.generate``) does with its command line before its
  first batch: the task, the checkpoint's models prepared for inference, the sequence generator;
- ``from_checkpoint``: a checkpoint's model, configuration and task, its data at ``data``.

Import it only where fairseq is wanted: it imports fairseq (and torch).
"""
from typing import List

import numpy as np
from fairseq import checkpoint_utils, options, tasks, utils
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.trainer import Trainer


def training_config(argv: List[str]):
    """fairseq-train's own parsing of its arguments (without the program name): (cfg, args namespace)."""
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    return convert_namespace_to_omegaconf(args), args


def trainer(cfg) -> Trainer:
    """What ``fairseq_cli.train.main`` does before its first update; the task is ``trainer.task``."""
    np.random.seed(cfg.common.seed)
    utils.set_torch_seed(cfg.common.seed)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    built = Trainer(cfg, task, model, criterion)
    built.lr_step(1)  # as checkpoint_utils.load_checkpoint does: builds the optimizer and scheduler
    return built


def generator(argv: List[str]):
    """What fairseq-generate does with its arguments (without the program name) before its first batch:
    (cfg, task, models, generator). ``prepare_for_inference_`` sizes the models' attention for its beam."""
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_generation_parser(), argv))
    utils.import_user_module(cfg.common)
    task = tasks.setup_task(cfg.task)
    models, _ = checkpoint_utils.load_model_ensemble(
        utils.split_paths(cfg.common_eval.path), arg_overrides=eval(cfg.common_eval.model_overrides), task=task)
    for model in models:
        model.prepare_for_inference_(cfg)
    return cfg, task, models, task.build_generator(models, cfg.generation)


def from_checkpoint(checkpoint: str, data: str):
    """(model, cfg, task) of a checkpoint, its task's data at ``data``."""
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([checkpoint], arg_overrides={"data": data})
    return models[0], cfg, task
