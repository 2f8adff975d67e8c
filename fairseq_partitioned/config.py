"""The plugin's names in fairseq's configuration, and how it reads that configuration.

``TASK_NAME`` is the task this plugin registers (``--task``); the optimizer, the checkpoints and the
export check for it. ``config_value`` reads one value of a run's configuration, for code that may also
be handed a config outside a training run (a task config rebuilt from a checkpoint, an optimizer built
on its own).
"""

TASK_NAME = "translation_with_partitioned_model"


def config_value(cfg, name: str, default=None):
    """``cfg.name``; ``default`` if it is missing, None, or an interpolation this config cannot
    resolve (a task config outside a training configuration reads nothing from the other groups)."""
    try:
        value = getattr(cfg, name)
    except Exception:  # omegaconf's interpolation errors have no common base class
        return default
    return default if value is None else value
