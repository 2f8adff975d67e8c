#!/usr/bin/env python3
"""Figure 2 of the ATS paper (Mohtashami, Jaggi, Stich 2022) from fairseq training logs.

    python scripts/plot_alignment.py RUN_LOG_OR_TB_DIR [RUN ...] [--labels ATS,standard] --output fig.png

Each run is a fairseq-train log (simple or json format: the ``train_inner`` lines that carry
``grad_overlap`` etc., written with ``--gradient-alignment-interval N``) or a ``--tensorboard-logdir``
folder (needs the ``tensorboard`` package). Three panels, against the update number: (a) gradient
overlap ||g(x)||^2 / ||p g(x)||^2, (b) norm ratio ||p g(x)|| / ||p g(x~)||, (c) alignment
||p g(x)|| ||p g(x~)|| / <p g(x), p g(x~)>.
"""
import argparse
import json
import os
import re
from typing import Dict, List, Tuple

from harness.console import fail

PROG = "plot_alignment"

PANELS = [
    ("grad_overlap", "(a) gradient overlap"),
    ("grad_norm_ratio", "(b) norm ratio"),
    ("grad_alignment", "(c) gradient alignment"),
]
_PAIR = re.compile(r"(\w+)=([-+0-9.eEinf]+)")

Series = Dict[str, List[Tuple[int, float]]]


def read_log(path: str) -> Series:
    series: Series = {key: [] for key, _ in PANELS}
    with open(path, errors="replace") as f:
        for line in f:
            if "grad_overlap" not in line:
                continue
            brace = line.find("{")
            if brace >= 0:  # --log-format json
                try:
                    values = json.loads(line[brace:])
                except json.JSONDecodeError:
                    continue
            else:
                values = dict(_PAIR.findall(line))
            step = values.get("num_updates")
            if step is None:
                continue
            for key, _ in PANELS:
                if key in values:
                    series[key].append((int(float(step)), float(values[key])))
    return series


def read_tensorboard(logdir: str) -> Series:
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        fail(PROG, "reading a tensorboard folder needs `pip install tensorboard`")
    series: Series = {key: [] for key, _ in PANELS}
    for root, _, files in os.walk(logdir):
        if not any(f.startswith("events.") for f in files):
            continue
        acc = EventAccumulator(root)
        acc.Reload()
        for key, _ in PANELS:
            if key in acc.Tags().get("scalars", []):
                series[key] += [(e.step, e.value) for e in acc.Scalars(key)]
    return series


def read_run(path: str) -> Series:
    if not os.path.exists(path):
        fail(PROG, f"no such log or folder: {path}")
    series = read_tensorboard(path) if os.path.isdir(path) else read_log(path)
    if not any(series.values()):
        fail(PROG, f"{path} has no grad_overlap values (train with --gradient-alignment-interval N)")
    return {k: sorted(v) for k, v in series.items()}


def plot(runs: List[Series], labels: List[str], output: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (key, title) in zip(axes, PANELS):
        for series, label in zip(runs, labels):
            if series[key]:
                steps, values = zip(*series[key])
                ax.plot(steps, values, label=label)
        ax.set_title(title)
        ax.set_xlabel("update")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(output, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="fairseq-train logs or tensorboard folders")
    parser.add_argument("--labels", help="comma-separated, one per run (default: the file names)")
    parser.add_argument("--output", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    labels = args.labels.split(",") if args.labels else [os.path.basename(r.rstrip("/")) for r in args.runs]
    if len(labels) != len(args.runs):
        fail(PROG, f"{len(labels)} labels for {len(args.runs)} runs")
    plot([read_run(r) for r in args.runs], labels, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
