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
- ``distill-KIND-R``: ATS with in-place distillation (``--alternate --core-distill 0.5``): its core
  update runs the full network's forward without gradient as well; its core update and its average
  over the alternation are reported against the same of ``ats-KIND-R`` (``x ATS, same update``), its
  core update also against its own full update of the same round.
- ``ats-depth-1``, ``core-depth-1``, ``every-depth-1``: the depth core (``--core-decoder-layers 1``) with
  ``--alternate`` (rows as ``ats-KIND-R``), trained alone (``--max-level 1``), and trained with the full
  network at every update (``--core-loss-weight 1``: one forward, the core's logits read from it).
- ``gap-0.9``: GaP's masked update, fixed random masks at 90% (``--gap-sparsity 0.9``).
- ``gen-*``: forward-only inference, fairseq's SequenceGenerator (beam 4) through ``task.inference_step``
  on fixed batches of the valid split (``--gen-batch-size`` sentences), for vanilla, the full network
  of each ATS model and each core (the ``--max-level 1`` model, which is what ``fairseq-generate
  --max-level 1`` builds). An untrained
  model emits EOS at random, so the output length is forced (``--min-len L --max-len-b L
  --max-len-a 0``, L = the batches' mean target length): every configuration decodes the same number of
  steps, and the comparison is of compute, not of luck.
- ``adam``: ``optimizer.step()`` alone, adam_for_partitioned_model (the update's mask handed over by
  the task, then ``task.optimizer_step``, as in a training update) against fairseq's ``--optimizer
  adam`` on the same parameters and gradients: on a full update against fairseq's Adam on all
  parameters, on a core update against fairseq's Adam on the core's parameters only (what the
  standalone core runs).

Timing (scripts/harness/bench/timing.py): after warm-up, configurations are interleaved (A B C ... A B C ...),
one timed update each per round. A row reports the median seconds per update, target tokens per second
(sum of tokens / sum of seconds, fairseq's ``wps``) and the ratio to vanilla (and, for ATS core updates,
to the standalone core of the same kind and r) as the median over rounds of the per-round ratio: both
updates of a round ran on the same batch. The process CPU time of every timed call is kept too, with the
same ratios: on a machine shared with other work, a wall-time difference that the CPU time does not show
was the neighbours', not ours. There ``--threads 1`` is the robust choice: with one OpenMP thread per
core, a thread that another process preempts stalls every parallel region of the update.

Memory (scripts/harness/bench/memory.py): the peak of one update after warm-up, in a fresh process per
configuration (peak resident set on CPU, ``torch.cuda.max_memory_allocated`` on a GPU).

GPU only: model FLOP utilisation of vanilla and full-network updates, with the FLOPs counted
analytically on padded tokens (see ``harness.bench.timing.train_flops``).

Usage: ``python scripts/benchmark.py [--data DATA-BIN] [--configs PATTERNS] [--json OUT.json]``;
without ``--data`` a synthetic data-bin is made in a temporary directory (``harness.bench.configs.default_data_bin``).
The configurations and data are in scripts/harness/bench/configs.py, the report and targets in
harness/bench/report.py.
"""
import argparse
import datetime
import json
import logging
import os
import platform
import shlex
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Run from a checkout without installing the plugin (as `--user-dir fairseq_partitioned` does).
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from harness import console  # noqa: E402  (before fairseq: it quiets the notice fairseq's import logs)
import torch  # noqa: E402
from fairseq import tasks  # noqa: E402

import fairseq_partitioned.version  # noqa: E402
from harness.bench.configs import (  # noqa: E402
    GEN_BATCHES, MAX_TRAIN_BATCHES, all_configs, build, default_data_bin, fairseq_cfg, load_batches, select,
)
from harness.bench.memory import probe_memory  # noqa: E402
from harness.bench.report import check_targets, report  # noqa: E402
from harness.bench.timing import peak_flops, summarise, time_generation, time_optimizer, time_training  # noqa: E402

logger = logging.getLogger("benchmark")


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
    args = p.parse_args(argv)
    args.cuda = torch.cuda.is_available() and not args.cpu
    if args.fp16 and not args.cuda:
        p.error("--fp16 needs a GPU")
    if args.repeats < 1 or args.warmup < 0:
        p.error("--repeats must be >= 1 and --warmup >= 0")
    return args


def settings(args, argv, batches) -> dict:
    return {
        "command": " ".join(shlex.quote(a) for a in (["scripts/benchmark.py"] + (argv or sys.argv[1:]))),
        "data": args.data or "synthetic (default_data_bin)", "arch": args.arch,
        "arch_args": args.arch_args, "max_tokens": args.max_tokens, "warmup": args.warmup,
        "repeats": args.repeats, "gen_repeats": args.gen_repeats, "gen_batch_size": args.gen_batch_size,
        "threads": torch.get_num_threads(), "fp16": args.fp16, "train_batches": len(batches),
        "mean_tokens": statistics.mean(int(s["ntokens"]) for s in batches),
        "batches": [{"sentences": int(s["nsentences"]), "target_tokens": int(s["ntokens"]),
                     "src_shape": list(s["net_input"]["src_tokens"].shape),
                     "tgt_shape": list(s["target"].shape)} for s in batches],
    }


def notes(args) -> dict:
    """What the report's numbers are, in words (the JSON's "notes")."""
    return {
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
    }


def main(argv=None):
    args = parse_args(argv)
    console.quiet_third_party()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True,
                        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    logger.setLevel(logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)
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

        # Memory first, while this process holds no model.
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
        "settings": settings(args, argv, batches),
        "train": train_rows,
        "memory": memory,
        "optimizer": optimizer,
        "generate": generate,
        "notes": notes(args),
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
