"""Timing for scripts/benchmark.py: training updates, the optimizer step alone, generation; FLOPs.

After warm-up the configurations are interleaved (A B C ... A B C ...), one timed call each per round,
so slow drifts and machine noise hit all of them alike; Python's garbage is collected before each timed
call, outside the timer, so one configuration's garbage is not charged to the next. Every timed call
keeps its wall time and this process's CPU time; ratios are medians over rounds of the per-round ratio
(both calls of a round ran on the same batch). How to read them: scripts/benchmark.py.
"""
import argparse
import gc
import logging
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch
from fairseq import utils
from fairseq.dataclass.configs import GenerationConfig
from fairseq.optim.adam import FairseqAdam

from harness.bench.configs import Built, GenConfig
from fairseq_partitioned.optim import find_partitioned_optimizer

logger = logging.getLogger("benchmark")
ALTERNATING = ("ats", "distill")  # roles whose rounds time a full update and the core update after it
BEAM = 4  # generation rows: fairseq's SequenceGenerator with this beam


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
    if b.config.role in ALTERNATING:
        return [(f"{b.config.name}/full", "full"), (f"{b.config.name}/core", "core")]
    return [(b.config.name, "full" if b.config.role != "core" else "core")]


def run_update(b: Built, sample, expect: str):
    trainer = b.trainer
    if b.config.role in ALTERNATING:
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
        if b.config.role in ALTERNATING:
            full, core = rows[f"{b.config.name}/full"], rows[f"{b.config.name}/core"]
            rows[f"{b.config.name}/avg"] = {
                "config": b.config.name, "role": b.config.role, "level": "avg", "kind": b.config.kind,
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
            if row.get("role") == "distill" and row.get("level") in ("core", "avg"):
                # the cost of distillation: against the same update of ATS without it (a core update,
                # the average over the alternation) and, a core update, against a full update
                ats = rows.get(f"ats-{row['kind']}-{row['ratio']}/{row['level']}")
                row["ratio_to_ats" + suffix] = paired_ratio(row, ats, key)
                if row["level"] == "core":
                    row["ratio_to_full" + suffix] = paired_ratio(row, rows[f"{row['config']}/full"], key)


def paired_ratio(row, ref, key="seconds") -> Optional[float]:
    """Median over rounds of this row's time / the reference's time in the same round (same batch)."""
    if ref is None:
        return None
    return statistics.median(a / b for a, b in zip(row[key], ref[key]))


# ------------------------------------------------------------------------------------ optimizer
def time_optimizer(args, b: Built) -> dict:
    """optimizer.step() alone: adam_for_partitioned_model vs fairseq's Adam, same parameters and grads.

    The partitioned optimizer runs as in a training update: the task hands it the update's mask
    (``hand_over_update_mask``, in ``train_step``), then ``task.optimizer_step``, on the inner optimizer
    (with --fp16, on the fp32 copies); fairseq's Adam is a second optimizer over the same tensors, on
    all of them (reference of a full update) or on the core's only (reference of a core update, what
    the standalone core's Adam does).
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
    def partitioned_step(update_num):  # as the trainer's update: the task hands the mask over, then steps
        def step():
            task.hand_over_update_mask(inner, model, update_num)
            task.optimizer_step(inner, model, update_num)
        return step

    steps = {
        "full": partitioned_step(0),
        "fairseq_adam_full": ref_full.step,
        "core": partitioned_step(1),
        "fairseq_adam_core": ref_core.step,
    }
    seconds = {k: [] for k in steps}
    changed = {}  # level -> how many tensors its first step changed: a check that like is timed with like
    for i in range(max(1, args.warmup) + args.repeats):
        gc.collect()  # once a round: a collection costs more than a step of a small model
        for k, step in steps.items():
            before = [p.detach().clone() for p in params] if i == 0 and k in ("full", "core") else None
            dt, _, _ = timed(step, args.cuda, collect=False)
            if before is not None:
                changed[k] = sum(not torch.equal(p, q) for p, q in zip(params, before))
            if i >= max(1, args.warmup):
                seconds[k].append(dt)
    out = {"seconds": seconds, "params_full": sum(p.numel() for p in params),
           "params_core": sum(p.numel() for p in core_params),
           "tensors_full": len(params), "tensors_core": len(core_params),
           "tensors_changed_full": changed["full"], "tensors_changed_core": changed["core"]}
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
