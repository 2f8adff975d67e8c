"""Peak memory of one training update of each configuration (scripts/benchmark.py).

Each configuration is probed in a fresh interpreter (multiprocessing's spawn, one process per
configuration) that holds only that configuration, so one model's memory is not mixed with another's:
after one warm-up round, the gradients are released and the peak is reset, then one update on the
largest of the first 8 training batches runs (the same batch for every configuration; for an ATS model
one full and one core update). On CPU the peak is the resident-set high-water mark (VmHWM, reset
through /proc/self/clear_refs), with glibc's mmap threshold fixed at 64 KiB so that freed tensors really
leave the resident set; reported as the peak minus the process's resident set just before the model was
built (imports and data excluded). On CUDA it is ``torch.cuda.max_memory_allocated`` (reset before the
update). Both include the model, the optimizer state, gradients and activations.
"""
import contextlib
import gc
import json
import logging
import multiprocessing
import os
import tempfile
from typing import Dict, List

import torch
from fairseq import tasks

from harness.bench.configs import MAX_TRAIN_BATCHES, TrainConfig, build, fairseq_cfg, load_batches
from harness.bench.timing import run_update, train_steps
from harness.console import log_tail

logger = logging.getLogger("benchmark")

# A fixed mmap threshold (glibc otherwise raises it as large blocks are freed) gives every tensor above
# 64 KiB its own mapping, returned to the kernel when freed: the RSS then follows the live tensors
# instead of glibc's cached heap. glibc reads it when a process starts: it is set for the probes.
PROBE_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}


def probe_memory(args, data: str, configs: List[TrainConfig], workdir: str) -> Dict[str, dict]:
    """Row name -> peak memory of one update, each configuration in a process of its own (its output
    in ``workdir``/memory-NAME.log, shown if the probe fails)."""
    # Only memory is measured here, so on CPU the probes run side by side, one thread each; on a GPU
    # they would share its memory counters' device, so they run one at a time.
    parallel = 1 if args.cuda else max(1, os.cpu_count() or 1)
    spawn = multiprocessing.get_context("spawn")
    results = {}
    with _environment(PROBE_ENVIRONMENT):
        for first in range(0, len(configs), parallel):
            probes = []
            for config in configs[first:first + parallel]:
                logger.info(f"memory probe: {config.name}")
                out = os.path.join(workdir, f"memory-{config.name}")
                probe = spawn.Process(target=measure, args=(args, data, config, out))
                probe.start()
                probes.append((config, out, probe))
            for config, out, probe in probes:
                probe.join()
                if probe.exitcode != 0:
                    raise RuntimeError(f"memory probe {config.name} failed (exit {probe.exitcode}); its "
                                       f"output:\n{log_tail(out + '.log')}")
                with open(out + ".json") as f:
                    results.update(json.load(f))
    return results


@contextlib.contextmanager
def _environment(values: Dict[str, str]):
    """These environment variables for the processes started inside the block."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


def measure(args, data: str, config: TrainConfig, out: str):
    """In a fresh process: peak memory of one update of each row of ``config``, into OUT.json; the
    process's output (fairseq's and hydra's messages, a traceback) into OUT.log."""
    with open(out + ".log", "w") as f:
        for fd in (1, 2):
            os.dup2(f.fileno(), fd)
    if not args.cuda:
        torch.set_num_threads(1)
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
    with open(out + ".json", "w") as f:
        json.dump(rows, f)
