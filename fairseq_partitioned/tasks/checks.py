"""What a user gave the task, checked against what the run will do: one line for each mistake.

- a flag the run would not use is an error (GaP's without ``--gap-sparsity``; a partitioned model's with
  it);
- the checkpoints fairseq-generate is about to read (``--path``) exist and can be read;
- a resume that switches ``--alternate`` on or off is a choice a user may make (train the full network on
  after ATS, say), so it is allowed, with one warning line.
"""
import logging
import os
from dataclasses import fields

from fairseq import utils

from .. import checkpoints
from ..config import config_value
from ..errors import MissingCheckpoint, UsageError
from ..methods import is_gap

logger = logging.getLogger(__name__)

# A partitioned model's flags (ATS); --max-level with --gap-sparsity is check_gap_config's error.
ATS_FLAGS = ("small_ratio", "partitioned_linear_module_name", "alternate_lr_coef", "low_rank_init", "core_attention_scale",
             "core_decoder_layers", "core_loss_weight")


# What chooses a low-rank or small-width core, which --core-decoder-layers (a depth core) does not combine with.
LINEAR_CORE_FLAGS = ("partitioned_linear_module_name", "small_ratio", "low_rank_init", "core_attention_scale")


def check_flags_are_used(cfg, config_class):
    """GaP's flags without --gap-sparsity (the run trains a partitioned model), a partitioned model's with it
    (a GaP model has no core), a low-rank or small-width core's with a depth core: a flag given, i.e. off its
    default in ``config_class``, is an error."""
    defaults = {f.name: f.default for f in fields(config_class)}
    if cfg.core_decoder_layers and not is_gap(cfg):
        for name in LINEAR_CORE_FLAGS:
            if str(getattr(cfg, name)) != str(defaults[name]):
                raise UsageError(f"--{name.replace('_', '-')} {getattr(cfg, name)} is for a low-rank or small-width "
                                 f"core; --core-decoder-layers {cfg.core_decoder_layers} trains a depth core, and the "
                                 "two do not combine: drop one")
    gap = is_gap(cfg)
    names = ATS_FLAGS if gap else [n for n in defaults if n.startswith("gap_") and n != "gap_sparsity"]
    for name in names:
        if str(getattr(cfg, name)) == str(defaults[name]):
            continue
        flag = f"--{name.replace('_', '-')} {getattr(cfg, name)}"
        if gap:
            raise UsageError(f"{flag} is for a partitioned model (ATS): --gap-sparsity trains a sparse Transformer, "
                             "which has no core; drop it")
        raise UsageError(f"{flag} is GaP's: it needs --gap-sparsity S > 0 (without it this run trains a partitioned "
                         f"model{', ATS' if cfg.alternate else ''}); set --gap-sparsity or drop it")


def check_evaluated_checkpoints(cfg):
    """fairseq-generate (and -interactive) read --path after setting up the task: a checkpoint there that
    is missing or cannot be read is one line here rather than a traceback there."""
    paths = config_value(cfg, "eval_path")
    for path in utils.split_paths(paths) if paths else []:
        if os.path.isfile(path):
            checkpoints.load_lazily(path)
        elif not any(os.path.isfile(path[: -len(".pt")] + shard) for shard in ("-shard0.pt", "_part0.pt")):
            raise MissingCheckpoint(f"--path {path}: no such checkpoint")  # (fairseq reads shards by those names)


def warn_if_alternate_changed(cfg, path: str, state: dict):
    """One line when a resume switches --alternate against the checkpoint's (a fine-tune from a checkpoint
    is a run of its own: no word)."""
    saved = ((state.get("cfg") or {}).get("task") or {}).get("alternate")
    if saved is None or bool(saved) == bool(cfg.alternate) or path == config_value(cfg, "finetune_from_model"):
        return
    gap = is_gap(cfg)
    if saved:
        now = "with fixed masks" if gap else "the full network alone"
        logger.warning(f"checkpoint {path} was trained with --alternate: this run, without it, trains {now} from here")
    else:
        now = "C-GaP" if gap else "ATS"
        logger.warning(f"checkpoint {path} was trained without --alternate: this run, with it, trains {now} from here")
