#!/usr/bin/env python
"""Speed and memory of ATS training against vanilla fairseq, one fairseq update at a time.

What is measured
----------------
Every configuration is built through fairseq's own code path, as ``fairseq-train`` builds it
(``options.get_training_parser`` -> ``parse_args_and_arch`` -> ``convert_namespace_to_omegaconf`` ->
``tasks.setup_task`` -> ``task.build_model`` / ``build_criterion`` -> ``fairseq.trainer.Trainer``), and
one timed update is one ``trainer.train_step([sample])``: forward, backward, gradient reduction and
clipping, ``task.optimizer_step``, learning-rate update and logging, exactly what fairseq-train does per
update. All configurations train on the SAME pre-loaded batches (round i uses batch i mod K).

- ``vanilla``: ``--task translation --optimizer adam``.
- ``ats-KIND-R`` (KIND = rank: PartitionedRankLinear, width: PartitionedLinear; R = 0.25, 0.03125):
  ``--alternate``; the trainer's update number picks the level (even = full network, odd = core), so
  each round times one even update (row ``/full``) and the odd update that follows it (row ``/core``);
  ``/avg`` is their mean, the cost of one ATS update averaged over the alternation.
- ``core-KIND-R``: ``--max-level 1``, the core trained alone: the reference for an ATS core update.
- ``gap-0.9`` (once the task has ``--gap-sparsity``; see the GaP hook): fixed random masks at 90%.
- ``gen-*``: forward-only inference, fairseq's SequenceGenerator (beam 4) through ``task.inference_step``
  on fixed batches of the valid split (``--gen-batch-size`` sentences), for vanilla, the full network
  of each ATS model and each core (the ``--max-level 1`` model, which is what ``fairseq-generate
  --max-level 1`` builds). An untrained
  model emits EOS at random, so the output length is forced (``--min-len L --max-len-b L
  --max-len-a 0``, L = the batches' mean target length): every configuration decodes the same number of
  steps, and the comparison is of compute, not of luck.
- ``adam``: ``optimizer.step()`` alone, adam_for_partitioned_model (through ``task.optimizer_step``,
  so building the update mask is included) against fairseq's ``--optimizer adam`` on the same
  parameters and gradients: on a full update against fairseq's Adam on all parameters, on a core update
  against fairseq's Adam on the core's parameters only (what the standalone core runs).

Timing: after warm-up, configurations are interleaved (A B C ... A B C ...), one timed update each per
round, so slow drifts and machine noise hit all of them alike; Python's garbage is collected before each
timed call, outside the timer, so one configuration's garbage is not charged to the next. A row reports
the median seconds per update, target tokens per second (sum of tokens / sum of seconds, fairseq's
``wps``) and the ratio to vanilla (and, for ATS core updates, to the standalone core of the same kind
and r) as the median over rounds of the per-round ratio: both updates of a round ran on the same batch.
The process CPU time of every timed call is kept too, with the same ratios: on a machine shared with
other work, a wall-time difference that the CPU time does not show was the neighbours', not ours.
There ``--threads 1`` is the robust choice: with one OpenMP thread per core, a thread that another
process preempts stalls every parallel region of the update.

Memory: each training configuration is probed in a fresh process that holds only that configuration
(so one model's memory is not mixed with another's): after one warm-up round, the gradients are
released and the peak is reset, then one update on the largest of the first 8 training batches
runs (the same batch for every configuration; for an ATS model one full and one core update). On CPU the peak
is the resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs), with glibc's mmap
threshold fixed at 64 KiB so that freed tensors really leave the resident set; reported as the peak
minus the process's resident set just before the model was built (imports and data excluded). On CUDA
it is ``torch.cuda.max_memory_allocated`` (reset before the update). Both include the model, the
optimizer state, gradients and activations.

GPU only: model FLOP utilisation of vanilla and full-network updates, with the FLOPs counted
analytically on padded tokens (see ``train_flops``).

Usage: ``python scripts/benchmark.py [--data DATA-BIN] [--configs PATTERNS] [--json OUT.json]``;
without ``--data`` a synthetic data-bin is made in a temporary directory (``default_data_bin``).
"""
import argparse
import dataclasses
import datetime
import fnmatch
import gc
import json
import logging
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN_DIR = os.path.join(ROOT, "fairseq_partitioned")
# Run from a checkout without installing the plugin (as `--user-dir fairseq_partitioned` does).
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from fairseq import options, tasks, utils  # noqa: E402
from fairseq.dataclass.configs import GenerationConfig  # noqa: E402
from fairseq.dataclass.utils import convert_namespace_to_omegaconf  # noqa: E402
from fairseq.optim.adam import FairseqAdam  # noqa: E402
from fairseq.trainer import Trainer  # noqa: E402

import fairseq_partitioned.version  # noqa: E402
from fairseq_partitioned.modules import parameter_counts  # noqa: E402
from fairseq_partitioned.optim import find_partitioned_optimizer  # noqa: E402
from fairseq_partitioned.tasks.translation_with_partitioned_model import (  # noqa: E402
    TASK_NAME,
    TranslationWithPartitionedModelConfig,
)

logger = logging.getLogger("benchmark")

KINDS = {"rank": "PartitionedRankLinear", "width": "PartitionedLinear"}
RATIOS = ("0.25", "0.03125")
BEAM = 4
GEN_BATCHES = 4  # fixed valid-split batches for generation, cycled over the rounds
MAX_TRAIN_BATCHES = 8  # distinct training batches, cycled over the rounds
TARGETS = {  # the project's speed targets, checked in the report
    "ats_full_vs_vanilla": 1.10,
    "ats_core_vs_core_standalone": 1.05,
    "adam_step_vs_fairseq_adam": 1.20,
}

# The README's IWSLT14 ATS recipe (ATS paper, Table 3), less checkpoints and epochs: every
# configuration trains with exactly these settings, so they differ only in what is benchmarked.
COMMON_FLAGS = [
    "--share-decoder-input-output-embed",
    "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-09", "--weight-decay", "0.0001",
    "--lr", "0.0005", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "4000",
    "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--dropout", "0.3",
    "--seed", "1", "--num-workers", "0", "--no-progress-bar", "--log-format", "simple",
    "--distributed-world-size", "1",
]


# ---------------------------------------------------------------------------------------- data
def synthetic_data_bin(workdir: str, vocab: int = 8000, train: int = 2000, valid: int = 200,
                       seed: int = 0) -> str:
    """A fairseq data-bin of random de->en text with IWSLT14-like shape, made by fairseq-preprocess.

    Sentence lengths are log-normal (median 20 tokens, long tail, clipped to 1..175 as IWSLT14's
    clean-corpus step does), target lengths within ~15% of the source's; words are Zipf-distributed
    over ``vocab`` types per language, every type occurring at least once, so each dictionary has
    ~``vocab`` entries and the embeddings and output projection have their real size.
    """
    from fairseq_cli import preprocess

    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, vocab + 1)
    zipf /= zipf.sum()
    raw = os.path.join(workdir, "raw")
    dest = os.path.join(workdir, "data-bin")
    os.makedirs(raw, exist_ok=True)

    def words(prefix, n):
        return [f"{prefix}{i}" for i in rng.choice(vocab, size=n, p=zipf)]

    for split, n in (("train", train), ("valid", valid), ("test", valid)):
        src_len = np.clip(np.rint(rng.lognormal(np.log(20), 0.6, n)), 1, 175).astype(int)
        tgt_len = np.clip(np.rint(src_len * rng.lognormal(-0.07, 0.15, n)), 1, 175).astype(int)
        src_lines = [" ".join(words("d", k)) for k in src_len]
        tgt_lines = [" ".join(words("e", k)) for k in tgt_len]
        if split == "train":  # every word type at least once: the dictionaries get the full vocabulary
            for start in range(0, vocab, 25):
                ids = range(start, min(start + 25, vocab))
                src_lines.append(" ".join(f"d{i}" for i in ids))
                tgt_lines.append(" ".join(f"e{i}" for i in ids))
        for lang, lines in (("de", src_lines), ("en", tgt_lines)):
            with open(os.path.join(raw, f"{split}.{lang}"), "w") as f:
                f.write("\n".join(lines) + "\n")
    parser = options.get_preprocessing_parser()
    args = parser.parse_args([
        "--source-lang", "de", "--target-lang", "en",
        "--trainpref", os.path.join(raw, "train"), "--validpref", os.path.join(raw, "valid"),
        "--testpref", os.path.join(raw, "test"), "--destdir", dest,
        "--thresholdsrc", "0", "--thresholdtgt", "0", "--workers", "1",
    ])
    preprocess.main(args)
    return dest


def default_data_bin(workdir: str) -> str:
    """The data used without ``--data``. The one place to change when a bundled sample of real data
    becomes the default: return its data-bin path instead."""
    return synthetic_data_bin(workdir)


# ------------------------------------------------------------------------------- configurations
@dataclass
class TrainConfig:
    name: str  # what --configs selects
    role: str  # vanilla | ats | core | gap
    flags: List[str]
    kind: Optional[str] = None  # rank | width
    ratio: Optional[str] = None

    @property
    def plugin(self) -> bool:
        return self.role != "vanilla"


@dataclass
class GenConfig:
    name: str
    model: str  # the TrainConfig whose model generates
    level: str  # full | core


def gap_available() -> bool:
    return "gap_sparsity" in {f.name for f in dataclasses.fields(TranslationWithPartitionedModelConfig)}


def all_configs():
    plugin = ["--user-dir", PLUGIN_DIR, "--task", TASK_NAME, "--optimizer", "adam_for_partitioned_model"]
    train = [TrainConfig("vanilla", "vanilla", ["--task", "translation", "--optimizer", "adam"])]
    gen = [GenConfig("gen-vanilla", "vanilla", "full")]
    for kind, module in KINDS.items():
        for r in RATIOS:
            part = plugin + ["--partitioned-linear-module-name", module, "--small-ratio", r]
            # Each ATS model sits beside its standalone core, so the two are timed back to back.
            train.append(TrainConfig(f"ats-{kind}-{r}", "ats", part + ["--alternate"], kind, r))
            train.append(TrainConfig(f"core-{kind}-{r}", "core", part + ["--max-level", "1"], kind, r))
            gen.append(GenConfig(f"gen-ats-{kind}-{r}", f"ats-{kind}-{r}", "full"))
            gen.append(GenConfig(f"gen-core-{kind}-{r}", f"core-{kind}-{r}", "core"))
    # ----------------------------------------------------------------------------- GaP hook
    # A GaP masked-update configuration, timed like the others when the task has the GaP flags:
    # --gap-sparsity without --alternate trains with fixed random masks at 90% (README, "GaP"), i.e.
    # the masked forward pass and the zeroing of masked gradients at every update. Its row counts all
    # parameters, masked ones included (they stay in memory and in the optimizer).
    if gap_available():
        train.append(TrainConfig("gap-0.9", "gap", plugin + ["--gap-sparsity", "0.9"]))
    # --------------------------------------------------------------------------------------
    return train, gen


def select(patterns: str, train, gen):
    """--configs: comma-separated names or shell patterns (``ats-rank-*``, ``gen-*``); ``all``."""
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    if not pats or "all" in pats:
        return list(train), list(gen)
    names = [c.name for c in train] + [g.name for g in gen]
    for p in pats:
        if not fnmatch.filter(names, p):
            raise SystemExit(f"--configs: {p!r} matches no configuration; known: {', '.join(names)}")
    pick = lambda name: any(fnmatch.fnmatchcase(name, p) for p in pats)  # noqa: E731
    return [c for c in train if pick(c.name)], [g for g in gen if pick(g.name)]


def device_flags(args, cfg: TrainConfig) -> List[str]:
    if not args.cuda:
        return ["--cpu"]
    if not args.fp16:
        return []
    # The partitioned optimizer masks per parameter, so its fp32 copies must not be flattened
    # (README); vanilla keeps fairseq's default, the flattened copies a vanilla user gets.
    return ["--fp16"] + (["--fp16-no-flatten-grads"] if cfg.plugin else [])


def fairseq_cfg(args, cfg: TrainConfig, data: str, save_dir: str):
    argv = (
        [data, "--save-dir", save_dir, "--arch", args.arch, "--max-tokens", str(args.max_tokens)]
        + COMMON_FLAGS + device_flags(args, cfg) + cfg.flags + shlex.split(args.arch_args)
    )
    parser = options.get_training_parser()
    return convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, argv))


@dataclass
class Built:
    config: TrainConfig
    cfg: object
    task: object
    model: torch.nn.Module
    trainer: Trainer
    params: Dict[str, int] = field(default_factory=dict)  # row suffix -> parameters used


def build(config: TrainConfig, cfg) -> Built:
    """What fairseq_cli.train.main does before its first update (``cfg`` from ``fairseq_cfg``)."""
    np.random.seed(cfg.common.seed)
    utils.set_torch_seed(cfg.common.seed)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    trainer = Trainer(cfg, task, model, criterion)
    trainer.lr_step(1)  # as checkpoint_utils.load_checkpoint does: builds the optimizer and scheduler
    built = Built(config, cfg, task, trainer.model, trainer)
    if config.role in ("ats", "core"):
        counts = parameter_counts(trainer.model)
        built.params = {"full": counts.get("level2") or counts["level1"], "core": counts["level1"]}
    else:
        built.params = {"full": sum(p.numel() for p in trainer.model.parameters())}
    return built


def load_batches(task, split: str, max_tokens: int, count: int, shuffle: bool, max_sentences=None):
    """The first ``count`` batches fairseq's own iterator makes of ``split`` (fixed seed)."""
    task.load_dataset(split, combine=False, epoch=1)
    itr = task.get_batch_iterator(
        dataset=task.dataset(split),
        max_tokens=max_tokens,
        max_sentences=max_sentences,
        max_positions=task.max_positions(),
        ignore_invalid_inputs=True,
        required_batch_size_multiple=8,
        seed=1,
        num_workers=0,
        epoch=1,
    ).next_epoch_itr(shuffle=shuffle)
    batches = []
    for sample in itr:
        batches.append(sample)
        if len(batches) == count:
            break
    return batches


# ------------------------------------------------------------------------------------- timing
def sync(cuda: bool):
    if cuda:
        torch.cuda.synchronize()


def timed(fn: Callable, cuda: bool, collect: bool = True):
    """(wall seconds, process CPU seconds, fn()). The CPU time (all threads of this process) is kept
    beside the wall time: on a shared machine it shows whether a slow update was slow or descheduled."""
    if collect:
        gc.collect()  # outside the timer: the previous configuration's garbage is not charged here
    sync(cuda)
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    sync(cuda)
    return time.perf_counter() - t0, time.process_time() - c0, out


def train_steps(b: Built):
    """The rows one round of this configuration times, with the level the update must train."""
    if b.config.role == "ats":
        return [(f"{b.config.name}/full", "full"), (f"{b.config.name}/core", "core")]
    return [(b.config.name, "full" if b.config.role != "core" else "core")]


def run_update(b: Built, sample, expect: str):
    trainer = b.trainer
    if b.config.role == "ats":
        # The level is chosen by the update number (Algorithm 1): check that we time what we say.
        level = b.task.method.level(trainer.get_num_updates())
        actual = "full" if level == b.task.method.top_level else "core"
        assert actual == expect, f"{b.config.name}: update {trainer.get_num_updates()} trains {actual}"
    out = trainer.train_step([sample])
    if out is None:
        raise RuntimeError(f"{b.config.name}: train_step returned None (out of memory?)")


def time_training(args, built: List[Built], batches) -> Dict[str, dict]:
    rows: Dict[str, dict] = {}
    for b in built:
        for row, level in train_steps(b):
            rows[row] = {"config": b.config.name, "role": b.config.role, "level": level,
                         "kind": b.config.kind, "ratio": b.config.ratio,
                         "params": b.params[level], "seconds": [], "cpu_seconds": [], "tokens": [],
                         "flops": []}
    for w in range(args.warmup):
        logger.info(f"warm-up round {w + 1}/{args.warmup}")
        for b in built:
            for _, level in train_steps(b):
                run_update(b, batches[w % len(batches)], level)
    for i in range(args.repeats):
        sample = batches[i % len(batches)]
        for b in built:
            for row, level in train_steps(b):
                dt, cpu, _ = timed(lambda: run_update(b, sample, level), args.cuda)
                rows[row]["seconds"].append(dt)
                rows[row]["cpu_seconds"].append(cpu)
                rows[row]["tokens"].append(int(sample["ntokens"]))
                if args.cuda:
                    rows[row]["flops"].append(train_flops(b.cfg.model, b.task, sample))
        logger.info(f"round {i + 1}/{args.repeats}: "
                    + ", ".join(f"{r} {v['seconds'][-1]:.3f}s" for r, v in rows.items()))
    # The cost of one ATS update averaged over the alternation (one full + one core update).
    for b in built:
        if b.config.role == "ats":
            full, core = rows[f"{b.config.name}/full"], rows[f"{b.config.name}/core"]
            rows[f"{b.config.name}/avg"] = {
                "config": b.config.name, "role": "ats", "level": "avg", "kind": b.config.kind,
                "ratio": b.config.ratio, "params": b.params["full"],
                "seconds": [(f + c) / 2 for f, c in zip(full["seconds"], core["seconds"])],
                "cpu_seconds": [(f + c) / 2 for f, c in zip(full["cpu_seconds"], core["cpu_seconds"])],
                "tokens": full["tokens"], "flops": [],
            }
    return rows


def summarise(rows: Dict[str, dict]):
    for row in rows.values():
        row["median_s"] = statistics.median(row["seconds"])
        row["median_cpu_s"] = statistics.median(row["cpu_seconds"])
        row["tokens_per_s"] = sum(row["tokens"]) / sum(row["seconds"])
    vanilla = rows.get("vanilla") or rows.get("gen-vanilla")
    for name, row in rows.items():
        # The CPU-time ratios are kept beside the wall-time ones: on a shared machine they show how much
        # of a difference is this process's work rather than other processes taking the cores.
        for suffix, key in (("", "seconds"), ("_cpu", "cpu_seconds")):
            row["ratio_to_vanilla" + suffix] = paired_ratio(row, vanilla, key)
            if row.get("role") == "ats" and row.get("level") == "core":
                ref = rows.get(f"core-{row['kind']}-{row['ratio']}")
                row["ratio_to_core_standalone" + suffix] = paired_ratio(row, ref, key)


def paired_ratio(row, ref, key="seconds") -> Optional[float]:
    """Median over rounds of this row's time / the reference's time in the same round (same batch)."""
    if ref is None:
        return None
    return statistics.median(a / b for a, b in zip(row[key], ref[key]))


# ------------------------------------------------------------------------------------ optimizer
def time_optimizer(args, b: Built) -> dict:
    """optimizer.step() alone: adam_for_partitioned_model vs fairseq's Adam, same parameters and grads.

    The partitioned optimizer runs through ``task.optimizer_step`` (the call the trainer makes, which
    builds the update mask), on the inner optimizer (with --fp16, on the fp32 copies); fairseq's Adam is
    a second optimizer over the same tensors, on all of them (reference of a full update) or on the
    core's only (reference of a core update, what the standalone core's Adam does).
    """
    task, model = b.task, b.model
    inner = find_partitioned_optimizer(b.trainer.optimizer)
    params = list(inner.params)  # the model's trainable parameters in order (or their fp32 copies)
    levels = [p.partition_level for p in model.parameters() if p.requires_grad]
    levels += [1] * (len(params) - len(levels))  # the criterion's, if any
    core_params = [p for p, lv in zip(params, levels) if lv <= 1]
    gen = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = (torch.randn(p.shape, generator=gen) * 1e-3).to(p)
    ref_full = FairseqAdam(b.cfg.optimizer, params)
    ref_core = FairseqAdam(b.cfg.optimizer, core_params)
    for ref in (ref_full, ref_core):
        ref.set_lr(inner.get_lr())
    # Even update numbers are full updates, odd ones core updates (Algorithm 1).
    steps = {
        "full": lambda: task.optimizer_step(inner, model, 0),
        "fairseq_adam_full": ref_full.step,
        "core": lambda: task.optimizer_step(inner, model, 1),
        "fairseq_adam_core": ref_core.step,
    }
    seconds = {k: [] for k in steps}
    for i in range(max(1, args.warmup) + args.repeats):
        gc.collect()  # once a round: a collection costs more than a step of a small model
        for k, step in steps.items():
            dt, _, _ = timed(step, args.cuda, collect=False)
            if i >= max(1, args.warmup):
                seconds[k].append(dt)
    out = {"seconds": seconds, "params_full": sum(p.numel() for p in params),
           "params_core": sum(p.numel() for p in core_params)}
    for level in ("full", "core"):
        out[f"median_s_{level}"] = statistics.median(seconds[level])
        out[f"median_s_fairseq_adam_{level}"] = statistics.median(seconds[f"fairseq_adam_{level}"])
        out[f"ratio_{level}"] = statistics.median(
            a / r for a, r in zip(seconds[level], seconds[f"fairseq_adam_{level}"])
        )
    return out


# ----------------------------------------------------------------------------------- generation
def time_generation(args, gens: List[GenConfig], built: Dict[str, Built], batches) -> Dict[str, dict]:
    # Forced output length (see the module docstring): every configuration decodes L steps.
    pad = next(iter(built.values())).task.target_dictionary.pad()
    length = max(1, round(statistics.mean(
        float((s["target"] != pad).sum(1).float().mean()) for s in batches)))
    gen_cfg = GenerationConfig(beam=BEAM, max_len_a=0, max_len_b=length, min_len=length)
    runners = []
    for g in gens:
        b = built[g.model]
        # As fairseq-generate does: eval mode, and the beam size for the attention's key/value cache.
        b.model.prepare_for_inference_(argparse.Namespace(generation=gen_cfg))
        generator = b.task.build_generator([b.model], gen_cfg)
        runners.append((g, b, generator))
    if args.cuda:
        batches = [utils.move_to_cuda(s) for s in batches]

    def generate(b, generator, sample):
        # task.inference_step sets the level this task evaluates: full for an ATS model, the core
        # for a --max-level 1 model.
        hypos = b.task.inference_step(generator, [b.model], sample)
        return sum(int(h[0]["tokens"].numel()) for h in hypos)

    rows = {g.name: {"model": g.model, "level": g.level, "seconds": [], "cpu_seconds": [], "tokens": [],
                     "params": b.params["core" if g.level == "core" and "core" in b.params else "full"]}
            for g, b, _ in runners}
    for w in range(max(1, args.warmup)):  # the first call also merges the full network's weights
        for g, b, generator in runners:
            generate(b, generator, batches[w % len(batches)])
    repeats = args.gen_repeats
    for i in range(repeats):
        sample = batches[i % len(batches)]
        for g, b, generator in runners:
            dt, cpu, ntok = timed(lambda: generate(b, generator, sample), args.cuda)
            rows[g.name]["seconds"].append(dt)
            rows[g.name]["cpu_seconds"].append(cpu)
            rows[g.name]["tokens"].append(ntok)
        logger.info(f"generation round {i + 1}/{repeats}")
    summarise(rows)
    for row in rows.values():
        row["output_length"] = length
    return rows


# ---------------------------------------------------------------------------------------- FLOPs
PEAK_TFLOPS = {  # dense, per GPU: (fp16/bf16 tensor cores, fp32 without TF32)
    "H100": (989.0, 67.0), "H200": (989.0, 67.0), "A100": (312.0, 19.5), "V100": (125.0, 15.7),
}


def peak_flops(args) -> Optional[float]:
    if args.peak_tflops:
        return args.peak_tflops * 1e12
    name = torch.cuda.get_device_name()
    for key, (half, single) in PEAK_TFLOPS.items():
        if key in name:
            return (half if args.fp16 else single) * 1e12
    return None


def train_flops(m, task, sample) -> float:
    """FLOPs of one training update of a standard Transformer (the full network), on padded tokens:

        6 * (S * P_src + T * P_tgt) * B  +  6 * B * A,
        P_src = L_enc (4 d^2 + 2 d f) + L_dec 2 d^2       (encoder; cross-attention k, v)
        P_tgt = L_dec (6 d^2 + 2 d f) + d V_tgt           (self-attention, cross q/out, FFN, output)
        A     = 2 d (L_enc S^2 + L_dec T^2 + L_dec T S)   (q k^T and attention x v, multiply-adds)

    B sentences, S/T padded source/target lengths; 6 = 2 (a multiply-add) x 3 (forward + backward).
    Layer norms, softmax, embeddings lookups and the optimizer are not counted (standard MFU practice).
    """
    B, S = sample["net_input"]["src_tokens"].shape
    T = sample["net_input"]["prev_output_tokens"].shape[1]
    de, fe, Le = m.encoder_embed_dim, m.encoder_ffn_embed_dim, m.encoder_layers
    dd, fd, Ld = m.decoder_embed_dim, m.decoder_ffn_embed_dim, m.decoder_layers
    V = len(task.target_dictionary)
    p_src = Le * (4 * de * de + 2 * de * fe) + Ld * 2 * dd * de
    p_tgt = Ld * (6 * dd * dd + 2 * dd * fd) + dd * V
    attn = 2 * (Le * de * S * S + Ld * dd * T * T + Ld * dd * T * S)
    return 6.0 * B * (S * p_src + T * p_tgt + attn)


# --------------------------------------------------------------------------------------- memory
def rss_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5: reset the peak resident set size (VmHWM) to the current one
        return True
    except OSError:
        return False


def memory_probe(args, data: str, name: str, out_path: str):
    """Subprocess entry: peak memory of one update of each row of configuration ``name``."""
    train, _ = all_configs()
    config = next(c for c in train if c.name == name)
    with tempfile.TemporaryDirectory() as save_dir:
        cfg = fairseq_cfg(args, config, data, save_dir)
        task = tasks.setup_task(cfg.task)
        batches = load_batches(task, "train", args.max_tokens, MAX_TRAIN_BATCHES, shuffle=True)
        largest = max(batches, key=lambda s: s["net_input"]["src_tokens"].numel()
                      + s["net_input"]["prev_output_tokens"].numel())
        gc.collect()
        baseline_kb = None if args.cuda else rss_kb("VmRSS")
        b = build(config, cfg)
        for _, level in train_steps(b):  # warm-up: allocates the optimizer state
            run_update(b, largest, level)
        method = "cuda.max_memory_allocated" if args.cuda else "VmHWM"
        rows = {}
        for row, level in train_steps(b):
            b.trainer.zero_grad()  # the last update's gradients are not part of this one's peak
            gc.collect()
            if args.cuda:
                torch.cuda.synchronize()
                before = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            else:
                before = rss_kb("VmRSS") * 1024
                if not reset_peak_rss():
                    method = "ru_maxrss (process peak; /proc/self/clear_refs unavailable)"
            run_update(b, largest, level)
            if args.cuda:
                torch.cuda.synchronize()
                peak = torch.cuda.max_memory_allocated()
            elif method == "VmHWM":
                peak = rss_kb("VmHWM") * 1024
            else:
                import resource

                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            base = 0 if args.cuda else baseline_kb * 1024
            rows[row] = {"peak_mb": (peak - base) / 2**20, "before_update_mb": (before - base) / 2**20,
                         "process_peak_mb": peak / 2**20, "method": method,
                         "tokens": int(largest["ntokens"])}
    with open(out_path, "w") as f:
        json.dump(rows, f)


def probe_memory(args, data: str, configs: List[TrainConfig], workdir: str) -> Dict[str, dict]:
    env = dict(os.environ)
    # A fixed mmap threshold (glibc otherwise raises it as large blocks are freed) gives every tensor
    # above 64 KiB its own mapping, returned to the kernel when freed: the RSS then follows the live
    # tensors instead of glibc's cached heap.
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    # Only memory is measured here, so on CPU the probes run side by side, one thread each; on a GPU
    # they would share its memory counters' device, so they run one at a time.
    parallel = 1 if args.cuda else max(1, os.cpu_count() or 1)
    env["OMP_NUM_THREADS"] = "1"
    pending = list(configs)
    running = []  # (config, out path, Popen)
    results = {}
    while pending or running:
        while pending and len(running) < parallel:
            config = pending.pop(0)
            out = os.path.join(workdir, f"memory-{config.name}.json")
            cmd = [sys.executable, os.path.abspath(__file__), "--data", data, "--arch", args.arch,
                   "--arch-args", args.arch_args, "--max-tokens", str(args.max_tokens),
                   "--memory-probe", config.name, "--memory-probe-out", out]
            cmd += ["--cpu", "--threads", "1"] if not args.cuda else (["--fp16"] if args.fp16 else [])
            logger.info(f"memory probe: {config.name}")
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)
            running.append((config, out, proc))
        config, out, proc = running.pop(0)
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"memory probe {config.name} failed:\n{err[-3000:]}")
        with open(out) as f:
            results.update(json.load(f))
    return results


# --------------------------------------------------------------------------------------- report
def machine_info(args, load_start: float) -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    dist, version = fairseq_partitioned.version.fairseq_distribution()
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "torch": torch.__version__, "fairseq": f"{dist} {version}",
        "device": "cuda" if args.cuda else "cpu",
        # Other processes compete for the cores: recorded so a reader can judge the timings.
        "load_average_1min_start": load_start, "load_average_1min_end": os.getloadavg()[0],
    }
    if args.cuda:
        info["gpu"] = torch.cuda.get_device_name()
    return info


def fmt(x, spec, none="-"):
    return none if x is None else format(x, spec)


def table(header: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                               for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def check_targets(result) -> List[dict]:
    checks = []
    for name, row in result["train"].items():
        if row["role"] == "ats" and row["level"] == "full" and row["ratio_to_vanilla"] is not None:
            checks.append({"target": "ats_full_vs_vanilla", "row": name, "value": row["ratio_to_vanilla"]})
        if row["role"] == "ats" and row["level"] == "core" and row.get("ratio_to_core_standalone"):
            checks.append({"target": "ats_core_vs_core_standalone", "row": name,
                           "value": row["ratio_to_core_standalone"]})
    for name, opt in result["optimizer"].items():
        for level in ("full", "core"):
            checks.append({"target": "adam_step_vs_fairseq_adam", "row": f"{name}/{level}",
                           "value": opt[f"ratio_{level}"]})
    for c in checks:
        c["limit"] = TARGETS[c["target"]]
        c["met"] = c["value"] <= c["limit"]
    return checks


def report(result) -> str:
    m, s = result["machine"], result["settings"]
    out = [
        f"fairseq_partitioned benchmark, {m['date']}",
        f"machine: {m.get('gpu') or m['cpu']}; {m['cpu_cores']} CPU cores ({m['torch_threads']} torch "
        f"threads); python {m['python']}, torch {m['torch']}, {m['fairseq']}; load average "
        f"{m['load_average_1min_start']:.2f} at start, {m['load_average_1min_end']:.2f} at end",
        f"arch {s['arch']} {s['arch_args']}".rstrip() + f"; --max-tokens {s['max_tokens']}; "
        f"{s['warmup']} warm-up + {s['repeats']} timed updates per row, interleaved; "
        f"{s['train_batches']} batches, {s['mean_tokens']:.0f} target tokens on average; data {s['data']}",
        "",
    ]
    mfu = any(r.get("mfu") is not None for r in result["train"].values())
    header = ["training update", "median s", "cpu s", "tok/s", "x vanilla", "(cpu)", "x core alone",
              "(cpu)", "params", "peak MB"]
    header += ["MFU"] if mfu else []
    rows = []
    for name, r in result["train"].items():
        mem = result["memory"].get(name, {}).get("peak_mb")
        row = [name, fmt(r["median_s"], ".4f"), fmt(r["median_cpu_s"], ".4f"),
               fmt(r["tokens_per_s"], ".0f"),
               fmt(r["ratio_to_vanilla"], ".3f"), fmt(r["ratio_to_vanilla_cpu"], ".3f"),
               fmt(r.get("ratio_to_core_standalone"), ".3f"),
               fmt(r.get("ratio_to_core_standalone_cpu"), ".3f"),
               f"{r['params'] / 1e6:.2f}M", fmt(mem, ".0f")]
        rows.append(row + ([fmt(r.get("mfu"), ".1%")] if mfu else []))
    if rows:
        out += [table(header, rows), ""]
    if result["generate"]:
        rows = [[name, fmt(r["median_s"], ".4f"), fmt(r["tokens_per_s"], ".0f"),
                 fmt(r["ratio_to_vanilla"], ".3f"), f"{r['params'] / 1e6:.2f}M"]
                for name, r in result["generate"].items()]
        length = next(iter(result["generate"].values()))["output_length"]
        out += [table([f"generate (beam {BEAM}, {length} tokens)", "median s/batch", "tok/s",
                       "x vanilla", "params"], rows),
                f"({s['gen_repeats']} timed batches of {s['gen_batch_size']} sentences per row, after "
                f"{max(1, s['warmup'])} warm-up)", ""]
    if result["optimizer"]:
        rows = []
        for name, o in result["optimizer"].items():
            for level in ("full", "core"):
                rows.append([f"{name}/{level}", fmt(o[f"median_s_{level}"] * 1e3, ".2f"),
                             fmt(o[f"median_s_fairseq_adam_{level}"] * 1e3, ".2f"),
                             fmt(o[f"ratio_{level}"], ".3f")])
        out += [table(["optimizer.step()", "partitioned ms", "fairseq adam ms", "ratio"], rows), ""]
    notes = result["notes"]
    if result["train"]:
        out += [f"x vanilla / x core alone: {notes['ratio']}; (cpu): the same on CPU time",
                f"cpu s: {notes['cpu_s']}"]
    if result["memory"]:
        out.append(f"peak MB: {notes['memory']}")
    if mfu:
        out.append(f"MFU: {notes['mfu']}")
    if result["gap"]:
        out.append(f"GaP: {result['gap']}")
    if result["targets"]:
        out += ["", "targets:"]
        for c in result["targets"]:
            out.append(f"  {'met   ' if c['met'] else 'MISSED'} {c['target']} <= {c['limit']:.2f}: "
                       f"{c['row']} {c['value']:.3f}")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="fairseq data-bin (default: a synthetic one, see default_data_bin)")
    p.add_argument("--arch", default="transformer_iwslt_de_en")
    p.add_argument("--arch-args", default="",
                   help="more fairseq flags for every configuration, e.g. '--encoder-layers 2'")
    p.add_argument("--max-tokens", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=1, help="untimed updates per row before timing")
    p.add_argument("--repeats", type=int, default=6, help="timed updates per row")
    p.add_argument("--gen-batch-size", type=int, default=32, help="sentences per generation batch")
    p.add_argument("--gen-repeats", type=int, default=3, help="timed batches per generation row")
    p.add_argument("--configs", default="all",
                   help="comma-separated names or patterns (see --list), e.g. 'vanilla,*-rank-0.25'")
    p.add_argument("--list", action="store_true", help="list the configurations and exit")
    p.add_argument("--json", help="write every number to this file")
    p.add_argument("--cpu", action="store_true", help="run on CPU (the default without CUDA)")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (default: torch's, one per core); 1 is robust on a shared machine")
    p.add_argument("--fp16", action="store_true", help="GPU only: fairseq's --fp16")
    p.add_argument("--skip-memory", action="store_true", help="do not run the memory probes")
    p.add_argument("--peak-tflops", type=float, help="GPU peak for MFU (default: known GPUs only)")
    p.add_argument("--memory-probe", help=argparse.SUPPRESS)  # internal: subprocess of probe_memory
    p.add_argument("--memory-probe-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.cuda = torch.cuda.is_available() and not args.cpu
    if args.fp16 and not args.cuda:
        p.error("--fp16 needs a GPU")
    if args.repeats < 1 or args.warmup < 0:
        p.error("--repeats must be >= 1 and --warmup >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True,
                        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    logger.setLevel(logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        return memory_probe(args, args.data, args.memory_probe, args.memory_probe_out)
    train_all, gen_all = all_configs()
    if args.list:
        print("\n".join(c.name for c in train_all + gen_all))
        return None
    load_start = os.getloadavg()[0]
    train_sel, gen_sel = select(args.configs, train_all, gen_all)
    needed = {c.name for c in train_sel} | {g.model for g in gen_sel}
    to_build = [c for c in train_all if c.name in needed]  # in the interleaving order

    with tempfile.TemporaryDirectory(prefix="fairseq-partitioned-bench-") as workdir:
        data = args.data or default_data_bin(workdir)
        # Parsing a fairseq command line takes seconds (hydra): once per configuration.
        cfgs = {c.name: fairseq_cfg(args, c, data, workdir) for c in to_build}
        task0 = tasks.setup_task(cfgs[to_build[0].name].task)
        batches = load_batches(task0, "train", args.max_tokens, min(args.repeats, MAX_TRAIN_BATCHES), True)
        # Shuffled: fairseq sorts a split by length, so its first batches would be its shortest sentences.
        gen_batches = load_batches(task0, "valid", args.max_tokens, GEN_BATCHES, True,
                                   max_sentences=args.gen_batch_size) if gen_sel else []

        # Memory first, while this process holds no model (the probes run one at a time).
        memory = {} if args.skip_memory else probe_memory(args, data, train_sel, workdir)

        built = {}
        for c in to_build:
            logger.info(f"building {c.name}")
            built[c.name] = build(c, cfgs[c.name])
        timed_models = [built[c.name] for c in train_sel]
        train_rows = time_training(args, timed_models, batches) if timed_models else {}
        summarise(train_rows)
        if args.cuda:
            peak = peak_flops(args)
            for r in train_rows.values():
                if r["flops"] and r["level"] == "full" and peak:
                    r["mfu"] = sum(r["flops"]) / sum(r["seconds"]) / peak
        optimizer = {}
        for b in timed_models:
            if b.config.role == "ats":
                logger.info(f"optimizer step: {b.config.name}")
                optimizer[b.config.name] = time_optimizer(args, b)
        generate = time_generation(args, gen_sel, built, gen_batches) if gen_sel else {}

    result = {
        "machine": machine_info(args, load_start),
        "settings": {
            "command": " ".join(shlex.quote(a) for a in (["scripts/benchmark.py"] + (argv or sys.argv[1:]))),
            "data": args.data or "synthetic (default_data_bin)", "arch": args.arch,
            "arch_args": args.arch_args, "max_tokens": args.max_tokens, "warmup": args.warmup,
            "repeats": args.repeats, "gen_repeats": args.gen_repeats, "gen_batch_size": args.gen_batch_size,
            "threads": torch.get_num_threads(), "fp16": args.fp16, "train_batches": len(batches),
            "mean_tokens": statistics.mean(int(s["ntokens"]) for s in batches),
            "batches": [{"sentences": int(s["nsentences"]), "target_tokens": int(s["ntokens"]),
                         "src_shape": list(s["net_input"]["src_tokens"].shape),
                         "tgt_shape": list(s["target"].shape)} for s in batches],
        },
        "train": train_rows,
        "memory": memory,
        "optimizer": optimizer,
        "generate": generate,
        "gap": None if gap_available() else "skipped: the task has no gap_sparsity flag yet",
        "notes": {
            "ratio": "median over rounds of the per-round ratio of seconds per update (same batch)",
            "memory": (
                "peak of one update after warm-up, in a fresh process holding only that configuration; "
                + ("torch.cuda.max_memory_allocated" if args.cuda else
                   "resident-set high-water mark (VmHWM, reset per update) minus the resident set "
                   "before the model was built, glibc mmap threshold 64 KiB")
            ),
            "mfu": "train_flops() (6 x matmul parameters x padded tokens + attention) / time / peak",
            "tokens_per_s": "target tokens / seconds, summed over the timed updates",
            "cpu_s": "median CPU time of this process (all threads) per update: close to threads x "
                     "wall time when the process had its cores, lower when other processes took them",
        },
    }
    result["targets"] = check_targets(result)
    text = report(result)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
