"""fairseq-partitioned-export: turn a partitioned checkpoint into a deployable one.

    fairseq-partitioned-export CKPT --level full --output OUT.pt
        a standard fairseq checkpoint (task ``translation``, the original --arch): every partitioned
        layer becomes the nn.Linear it stands for (W + V U for the low-rank kind, the joined blocks for
        the small-width kind). Plain fairseq-generate loads it without --user-dir.
    fairseq-partitioned-export CKPT --level core --output OUT.pt
        the same checkpoint with the extension weights removed (level 1 only); load it with the plugin.
"""
import argparse
import logging
import os
import sys
from dataclasses import fields
from typing import Tuple

import torch
from fairseq import checkpoint_utils
from fairseq.data import Dictionary
from fairseq.tasks.translation import TranslationConfig
from omegaconf import OmegaConf, open_dict
from torch import nn

from ..modules import LevelledModule, PartitionSpec
from ..tasks.translation_with_partitioned_model import TASK_NAME, TranslationWithPartitionedModelTask

logger = logging.getLogger("fairseq_partitioned.export")


def load_partitioned(path: str, level: int = None) -> Tuple[dict, TranslationWithPartitionedModelTask, nn.Module]:
    """The checkpoint's state and its model built at ``level`` (default: every level it holds).

    Dictionaries are stand-ins of the saved embedding sizes, so no data directory is needed.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = checkpoint_utils.load_checkpoint_to_cpu(path)
    saved = (state.get("task_state") or {}).get("partition")
    if saved is None or state["cfg"]["task"]["_name"] != TASK_NAME:
        raise ValueError(f"{path} is not a checkpoint of --task {TASK_NAME}")
    spec = PartitionSpec.from_dict(saved)
    cfg = state["cfg"]
    with open_dict(cfg):
        cfg.task.eval_bleu = False
        cfg.task.max_level = spec.built_levels if level is None else level
        cfg.task.restore_file = None
        cfg.task.alternate = False  # only the architecture matters here
    model_state = state["model"]
    src = _stand_in_dictionary(model_state["encoder.embed_tokens.weight"].shape[0])
    tgt = _stand_in_dictionary(model_state["decoder.embed_tokens.weight"].shape[0])
    task = TranslationWithPartitionedModelTask(cfg.task, src, tgt)
    task.load_state_dict(state["task_state"])
    model = task.build_model(cfg.model, from_checkpoint=True)
    model.load_state_dict(model_state, strict=True, model_cfg=cfg.model)
    model.eval()
    return state, task, model


def _stand_in_dictionary(size: int) -> Dictionary:
    d = Dictionary()
    while len(d) < size:
        d.add_symbol(f"<stand-in-{len(d)}>")
    return d


def to_standard_transformer(model: nn.Module) -> nn.Module:
    """Replace, in place, every partitioned layer by the nn.Linear of its full network."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LevelledModule):
                linear = nn.Linear(child.in_features, child.out_features, bias=child.merged_bias() is not None)
                with torch.no_grad():
                    linear.weight.copy_(child.merged_weight())
                    if linear.bias is not None:
                        linear.bias.copy_(child.merged_bias())
                setattr(parent, name, linear)
    return model


def export(path: str, level: str, output: str) -> dict:
    """Write the export; returns sizes and parameter counts for the report."""
    if level not in ("full", "core"):
        raise ValueError(f"--level must be 'full' or 'core', got {level!r}")
    state, task, model = load_partitioned(path, level=1 if level == "core" else None)
    spec = task.spec
    if level == "full" and spec.built_levels < spec.num_levels:
        raise ValueError(f"{path} holds only levels 1..{spec.built_levels}: it has no full network to export")
    cfg = state["cfg"]
    state.pop("last_optimizer_state", None)  # per-parameter state of the training model: does not apply
    if level == "full":
        to_standard_transformer(model)
        with open_dict(cfg):
            names = {f.name for f in fields(TranslationConfig)}
            task_cfg = {k: v for k, v in OmegaConf.to_container(cfg.task).items() if k in names}
            cfg.task = OmegaConf.create({**task_cfg, "_name": "translation"})
            optimizer = OmegaConf.to_container(cfg.optimizer) if cfg.optimizer is not None else None
            if optimizer is not None:
                keep = ("adam_betas", "adam_eps", "weight_decay", "use_old_adam", "fp16_adam_stats", "tpu", "lr")
                cfg.optimizer = OmegaConf.create({"_name": "adam", **{k: optimizer[k] for k in keep if k in optimizer}})
            cfg.common.user_dir = None
        state["task_state"] = {k: v for k, v in state["task_state"].items() if k != "partition"}
    else:
        with open_dict(cfg):
            cfg.task.max_level = 1
            cfg.task.alternate = False
        state["task_state"] = task.state_dict()
    state["model"] = model.state_dict()
    checkpoint_utils.torch_persistent_save(state, output)
    return {
        "input_bytes": os.path.getsize(path),
        "output_bytes": os.path.getsize(output),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def cli_main(argv=None):
    parser = argparse.ArgumentParser(prog="fairseq-partitioned-export", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="checkpoint of --task translation_with_partitioned_model")
    parser.add_argument("--level", required=True, choices=["full", "core"], help="which network to export")
    parser.add_argument("--output", required=True, help="where to write the exported checkpoint")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        report = export(args.checkpoint, args.level, args.output)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"fairseq-partitioned-export: error: {e}")
    mb = 1024 * 1024
    print(
        f"wrote {args.output}: {args.level} network, {report['parameters']:,} parameters, "
        f"{report['output_bytes'] / mb:.2f} MiB (input {report['input_bytes'] / mb:.2f} MiB, "
        f"optimizer state dropped)"
    )


if __name__ == "__main__":
    cli_main()
