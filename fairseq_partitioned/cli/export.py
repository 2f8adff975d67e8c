"""fairseq-partitioned-export: turn a partitioned checkpoint into a deployable one.

    fairseq-partitioned-export CKPT --level full --output OUT.pt
        a standard fairseq checkpoint (task ``translation``, the original --arch): every partitioned
        layer becomes the nn.Linear it stands for (W + V U for the low-rank kind, the joined blocks for
        the small-width kind). Plain fairseq-generate loads it without --user-dir.
    fairseq-partitioned-export CKPT --level core --output OUT.pt
        small-width kind (PartitionedLinear): the core as a standard, narrow fairseq Transformer (FFN of
        the core's width, q/k heads padded with zero rows; fairseq_partitioned/deploy.py), loaded by plain
        fairseq-generate. Depth kind (--core-decoder-layers K): a standard Transformer with the first K
        decoder layers, loaded by plain fairseq-generate. Low-rank kind: the checkpoint with the extension
        weights removed (level 1 only); load it with the plugin.
    fairseq-partitioned-export GAP_CKPT --level full --output OUT.pt [--sparse-output OUT.sparse.pt]
        a GaP checkpoint as a standard fairseq checkpoint, zeros in place; optionally also the weights in
        compressed sparse form, with its size.
    fairseq-partitioned-export CKPT --level full|core --ctranslate2 DIR [--quantization int8] [--data DATA]
        any of those that is a standard Transformer (not a low-rank core) as a CTranslate2 model, through
        CTranslate2's own converter (the ``deploy`` extra); --output also keeps the fairseq checkpoint.

Every export is a plain fairseq checkpoint in every field fairseq or a converter reads (deploy.py); a
checkpoint of plain ``--task translation`` (the standard Transformer) exports as such, at --level full.
"""
import argparse
import logging
import os
import sys
import tempfile
import warnings
from typing import Tuple

import torch
from fairseq.data import Dictionary
from fairseq.dataclass.utils import merge_with_parent
from omegaconf import open_dict
from torch import nn

from .. import checkpoints, deploy
from ..config import TASK_NAME
from ..modules import DEPTH_KIND, LevelledModule, PartitionedDecoderLayers, PartitionedLinear
from ..pruning import PruningSpec
from ..pruning.granularity import unit_width
from ..tasks.translation_with_partitioned_model import (
    TranslationWithPartitionedModelConfig,
    TranslationWithPartitionedModelTask,
)

logger = logging.getLogger("fairseq_partitioned.export")


def load_partitioned(path: str, level: int = None) -> Tuple[dict, TranslationWithPartitionedModelTask, nn.Module]:
    """The checkpoint's state and its model built at ``level`` (default: every level it holds).

    Dictionaries are stand-ins of the saved embedding sizes, so no data directory is needed.
    """
    state = checkpoints.load(path)
    saved = checkpoints.task_state(state).get("partition")
    if saved is None or checkpoints.task_name(state) != TASK_NAME:
        raise ValueError(f"{path} is not a checkpoint of --task {TASK_NAME} with a partitioned model")
    cfg = state["cfg"]
    with open_dict(cfg):
        cfg.task.eval_bleu = False
        cfg.task.max_level = level  # None: every level the checkpoint holds
        cfg.task.alternate = False  # only the architecture matters here
    model_state = state["model"]
    src = _stand_in_dictionary(model_state["encoder.embed_tokens.weight"].shape[0])
    tgt = _stand_in_dictionary(model_state["decoder.embed_tokens.weight"].shape[0])
    task = TranslationWithPartitionedModelTask(merge_with_parent(TranslationWithPartitionedModelConfig(), cfg.task), src, tgt)
    task.load_state_dict(checkpoints.task_state(state))
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
    """Replace, in place, every partitioned layer by the nn.Linear of its full network (the decoder's
    layers of a depth core by the plain list of them)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, PartitionedDecoderLayers):
                setattr(parent, name, nn.ModuleList(child.built()))
            elif isinstance(child, LevelledModule):
                linear = nn.Linear(child.in_features, child.out_features, bias=child.merged_bias() is not None)
                with torch.no_grad():
                    linear.weight.copy_(child.merged_weight())
                    if linear.bias is not None:
                        linear.bias.copy_(child.merged_bias())
                setattr(parent, name, linear)
    return model


def export(path: str, level: str, output: str, sparse_output: str = None) -> dict:
    """Write the export; returns sizes and parameter counts for the report."""
    if level not in ("full", "core"):
        raise ValueError(f"--level must be 'full' or 'core', got {level!r}")
    lazily = checkpoints.load_lazily(path)
    if checkpoints.masks(lazily["model"]):
        return _export_gap(path, level, output, sparse_output)
    if sparse_output:
        raise ValueError("--sparse-output is for GaP checkpoints (sparse weights)")
    if checkpoints.task_name(lazily) == "translation" and not checkpoints.task_state(lazily).get("partition"):
        return _export_plain(path, level, output)
    state, task, model = load_partitioned(path, level=1 if level == "core" else None)
    spec = task.method.spec
    if level == "full" and spec.built_levels < spec.num_levels:
        raise ValueError(f"{path} holds only levels 1..{spec.built_levels}: it has no full network to export")
    report = {}
    if level == "full":
        to_standard_transformer(model)
        deploy.as_plain_fairseq(state)
    elif spec.module_name == PartitionedLinear.__name__:
        # a small-width core is a narrow standard Transformer (fairseq_partitioned/deploy.py)
        report["zeros"] = deploy.to_narrow_transformer(model, state["cfg"].model)
        deploy.as_plain_fairseq(state)
    elif spec.module_name == DEPTH_KIND:
        # a depth core is a standard Transformer with K decoder layers (fairseq_partitioned/deploy.py)
        deploy.to_shallow_transformer(model, state["cfg"].model)
        deploy.as_plain_fairseq(state)
    else:
        state.pop("last_optimizer_state", None)  # per-parameter state of the training model
        with open_dict(state["cfg"]):
            state["cfg"].task.max_level = 1
            state["cfg"].task.alternate = False
        state["task_state"] = task.state_dict()
    state["model"] = model.state_dict()
    checkpoints.save(state, output)
    return {
        **report,
        "input_bytes": os.path.getsize(path),
        "output_bytes": os.path.getsize(output),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def _export_plain(path: str, level: str, output: str) -> dict:
    """A standard Transformer trained by plain fairseq (``--task translation``, perhaps with this
    plugin's --user-dir): written as a plain checkpoint without the optimizer state."""
    if level != "full":
        raise ValueError(f"{path} is a standard Transformer (--task translation): it has no core; use --level full")
    state = deploy.as_plain_fairseq(checkpoints.load(path))
    checkpoints.save(state, output)
    return {
        "input_bytes": os.path.getsize(path),
        "output_bytes": os.path.getsize(output),
        "parameters": checkpoints.count_tensors(state["model"]),
    }


def _export_gap(path: str, level: str, output: str, sparse_output: str = None) -> dict:
    """A GaP model is a standard Transformer whose pruned weights are zero: drop masks and GaP state."""
    if level != "full":
        raise ValueError(f"{path} is a GaP (sparse) checkpoint: it has no core; use --level full")
    state = checkpoints.load(path)
    masks = checkpoints.masks(state["model"])
    dense = checkpoints.nonzero_where_masked(state["model"])
    if dense:
        raise ValueError(f"{path}: {dense[0]} has nonzero weights where its mask is False")
    _check_sparsity(path, state, masks)
    state["model"] = checkpoints.without_masks(state["model"])
    deploy.as_plain_fairseq(state)
    checkpoints.save(state, output)
    report = {
        "input_bytes": os.path.getsize(path),
        "output_bytes": os.path.getsize(output),
        "parameters": checkpoints.count_tensors(state["model"]),  # fairseq's version buffers are none
    }
    if sparse_output:
        # Prunable matrices in compressed sparse row form (values, column indices, row pointers),
        # everything else dense: what a sparse deployment stores.
        sparse = {k: (_csr32(v) if k in masks else v) for k, v in state["model"].items()}
        checkpoints.save({"model": sparse, "format": "prunable weights as torch.sparse_csr"}, sparse_output)
        report["sparse_bytes"] = os.path.getsize(sparse_output)
    return report


def _check_sparsity(path: str, state: dict, masks: dict):
    """A GaP checkpoint exports at its target sparsity S (up to each matrix's rounding), not with a
    dense partition (a checkpoint of version 0.1 written in the middle of a GaP step has one)."""
    target = (checkpoints.gap_state(state) or {}).get("sparsity")
    if target is None:
        return
    width = unit_width(PruningSpec.from_args(state["cfg"]["task"] or {}).granularity)
    total = sum(m.numel() for m in masks.values())
    pruned = sum(int((~m).sum()) for m in masks.values())
    if pruned < target * total - width * len(masks):
        dense = sum(1 for m in masks.values() if bool(m.all()))
        raise ValueError(
            f"{path}: its masks are at sparsity {pruned / total:.4f}, below its --gap-sparsity {target} "
            f"({dense} of {len(masks)} matrices dense: a partition grown in the middle of a GaP step); export "
            "a checkpoint written at the end of the run"
        )


def _csr32(dense: torch.Tensor) -> torch.Tensor:
    """CSR with 32-bit indices: half the index bytes of torch's default."""
    with warnings.catch_warnings():  # torch's notices that its CSR support is in beta and skips the invariant
        # checks: this CSR is made from a dense tensor by torch itself, not from indices a user gave
        warnings.filterwarnings("ignore", r"Sparse (CSR tensor support is in beta|invariant checks)", UserWarning)
        csr = dense.to_sparse_csr()
        return torch.sparse_csr_tensor(
            csr.crow_indices().int(), csr.col_indices().int(), csr.values(), size=dense.shape
        )


def export_ctranslate2(path: str, level: str, output_dir: str, quantization: str = None, data: str = None,
                       output: str = None) -> dict:
    """``export`` (to ``output``, or to a temporary file), then CTranslate2's converter to ``output_dir``.
    Everything that can refuse is checked before any work."""
    deploy.require_ctranslate2()
    deploy.check_quantization(quantization)
    deploy.check_output_dir(output_dir)
    lazily = checkpoints.load_lazily(path)
    deploy.check_convertible(lazily, level)
    data = deploy.dictionary_dir(lazily, data)
    with tempfile.TemporaryDirectory() as tmp:
        plain = output or os.path.join(tmp, "plain.pt")
        report = export(path, level, plain)
        deploy.convert_to_ctranslate2(plain, data, output_dir, quantization)
    report["ctranslate2_bytes"] = sum(
        os.path.getsize(os.path.join(output_dir, f)) for f in os.listdir(output_dir))
    return report


def cli_main(argv=None):
    parser = argparse.ArgumentParser(prog="fairseq-partitioned-export", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="checkpoint of --task translation_with_partitioned_model (or translation)")
    parser.add_argument("--level", required=True, choices=["full", "core"],
                        help="which network to export: full = the full network (ATS) or the sparse model (GaP), "
                        "core = ATS's core")
    parser.add_argument("--output", help="where to write the exported checkpoint (optional with --ctranslate2)")
    parser.add_argument(
        "--sparse-output", help="GaP checkpoints: also write the weights in compressed sparse (CSR) form here"
    )
    parser.add_argument(
        "--ctranslate2", metavar="DIR",
        help="write the network as a CTranslate2 model in DIR, with CTranslate2's FairseqConverter "
        f"(the deploy extra: {deploy.INSTALL_HINT})",
    )
    parser.add_argument(
        "--quantization", help="with --ctranslate2: CTranslate2's weight type (int8, int16, float16, ...; "
        "default: float32, as trained)",
    )
    parser.add_argument(
        "--data", help="with --ctranslate2: the data-bin of the model's dictionaries (default: the one it was "
        "trained on, as the checkpoint names it)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().setLevel(logging.WARNING)  # fairseq's text_to_speech module set it to INFO on import
    try:
        if not (args.output or args.ctranslate2):
            raise ValueError("--output is required (optional only with --ctranslate2 DIR)")
        for flag in ("quantization", "data"):
            if getattr(args, flag) is not None and not args.ctranslate2:
                raise ValueError(f"--{flag} is for --ctranslate2 DIR: without it nothing would read it")
        if args.ctranslate2:
            if args.sparse_output:
                raise ValueError("--sparse-output is not read with --ctranslate2: export the sparse form on its own")
            report = export_ctranslate2(args.checkpoint, args.level, args.ctranslate2, args.quantization,
                                        args.data, args.output)
        else:
            report = export(args.checkpoint, args.level, args.output, args.sparse_output)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"fairseq-partitioned-export: error: {e}")
    mb = 1024 * 1024
    zeros = f" ({report['zeros']:,} of them the zero q/k rows of the core's heads)" if report.get("zeros") else ""
    if args.output:
        print(
            f"wrote {args.output}: {args.level} network, {report['parameters']:,} parameters{zeros}, "
            f"{report['output_bytes'] / mb:.2f} MiB (input {report['input_bytes'] / mb:.2f} MiB, "
            f"optimizer state dropped)"
        )
    if "sparse_bytes" in report:
        print(f"wrote {args.sparse_output}: {report['sparse_bytes'] / mb:.2f} MiB in compressed sparse form")
    if args.ctranslate2:
        print(
            f"wrote {args.ctranslate2}: CTranslate2 model of the {args.level} network, {args.quantization or 'float32'}, "
            f"{report['parameters']:,} parameters{zeros}, {report['ctranslate2_bytes'] / mb:.2f} MiB"
        )


if __name__ == "__main__":
    cli_main()
