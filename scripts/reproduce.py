#!/usr/bin/env python3
"""Reproduce a table of the ATS or GaP paper: train every run of it, translate, record.

    python scripts/reproduce.py TABLE [--seeds 1,2,3] [--rows PATTERNS] [--dry-run] [--smoke]
        [--output-dir runs/] [--data-root data-bin/] [--pgap-parallel N]

TABLE: ats-1a, ats-1b, ats-2a, ats-2b (ATS Tables 1-2, hyper-parameters of its Table 3), gap-4, gap-6,
gap-8, gap-9 (GaP Tables 4, 6, 8, 9, appendix B.5), or all. The tables, their runs and the papers'
numbers are in scripts/harness/papers/tables.py, their command lines and outputs in
scripts/harness/papers/pipeline.py.

For every seed and every run of the table (OUTPUT_DIR/RUN/seedN/): the training command(s) (log in
train.log; checkpoints in checkpoints/), then fairseq-generate for each network the table evaluates,
into generate-full.txt / generate-core.txt (ATS: the full network and the core, --max-level 1) or
generate-sparse.txt (GaP), and run.json (the cells it fills, the commands, parameter counts). A step
done before (its marker .done-LOG beside its log) is not run again, so an interrupted reproduction
resumes (fairseq-train itself resumes from checkpoint_last.pt; a prune-from-dense fine-tune starts
again from pruned.pt). scripts/paper-tables/TABLE.sh runs the same commands as a shell script.
Runs shared by tables (the standard Transformer of ATS Tables 1a/2a, the C-GaP 90% kappa=3 run of
GaP Tables 4/6/8) are trained once. Then: python scripts/collect_results.py TABLE --runs OUTPUT_DIR.

--dry-run prints every command (as fairseq-train, fairseq-generate, fairseq-partitioned-prune/-pgap)
and runs nothing. --smoke runs the same pipeline with tiny settings on the bundled IWSLT14 sample
(prepared into OUTPUT_DIR/smoke-data/ if missing): a 1+1-layer (GaP: 2+4) d=64 Transformer, 3 updates
(C-GaP: 2 steps of 2 updates, then a 2-update fine-tune; P-GaP: 1 round of 3-update workers, 3 at a
time), on the CPU, translating the valid split with short outputs. The numbers mean nothing; the
pipeline is the papers'. --rows takes comma-separated glob patterns over row keys (tables.py:
standard, std-r0.25, alt-r0.25, ...; cgap, pgap, k3, ...) or run ids (gap-cgap-s0.9-k3, ...).

Commands run as `python -m fairseq_cli.train` etc. of this interpreter, with --user-dir pointing at
this checkout's fairseq_partitioned, so they need no PATH.
"""
import argparse
import os
import shlex
import sys
from typing import List

from harness import runs
from harness.console import fail, seed_list
from harness.papers.pipeline import (SMOKE_DATA, checkpoint_parameters, command_line, record_path, select,
                                     smoke_data_command, steps)
from harness.papers.tables import DATASETS, RECIPES, TABLES
from harness.recipe import PROGRAMS, ROOT
from harness.runner import run_logged

PROG = "reproduce"


def executable(argv: List[str]) -> List[str]:
    """A step's command line with its console script run as a module of this interpreter (no PATH needed)."""
    return [sys.executable, *PROGRAMS[argv[0]], *argv[1:]]


def all_cells(run_id: str) -> List[dict]:
    """Every cell of every table that this run fills (for run.json)."""
    return [{"table": t.name, "row": row.label, "column": column, "network": cell.network}
            for t in TABLES.values() for row in t.rows for column, cell in row.cells.items() if cell.run == run_id]


# ------------------------------------------------------------------------------------------ running


def data_path(args, dataset: str) -> str:
    if args.smoke:
        return os.path.join(args.output_dir, SMOKE_DATA, "data-bin")
    return os.path.join(args.data_root, DATASETS[dataset].data_dir)


def check_data(path: str, dataset: str):
    ds = DATASETS[dataset]
    if not os.path.isfile(os.path.join(path, f"dict.{ds.target}.txt")):
        script = "prepare_iwslt14.py" if dataset == "iwslt14" else "prepare_wmt17_en_de.py" + (
            " --icml17" if dataset == "wmt14" else "")
        fail(PROG, f"no binarized {ds.description} data in {path} (make it with data-prep/{script} "
                   f"--binarize {path}, see data-prep/README.md, or pass --data-root)")


def prepare_smoke_data(output_dir: str, dry_run: bool):
    base = os.path.join(output_dir, SMOKE_DATA)
    cmd = smoke_data_command(output_dir, os.path.join(base, "data-bin"))
    if dry_run:
        print(f"# the bundled IWSLT14 sample, if {base}/data-bin is missing")
        print(shlex.join(["python", *cmd[1:]]))
    elif not os.path.isfile(os.path.join(base, "data-bin", "dict.en.txt")):
        run_logged(PROG, f"preparing the bundled IWSLT14 sample into {base}", cmd, os.path.join(base, "prepare.log"))


def _env(smoke: bool) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if smoke:
        # tiny models: one thread each is faster than threads fighting over a few cores
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


def reproduce_run(run, cells, seed: int, args, env: dict):
    d = runs.run_dir(args.output_dir, run.id, seed)
    # a run needed only as a dependency (the dense pretrain of prune-from-dense) is trained, not translated
    todo = steps(run, seed, data_path(args, run.dataset), args.output_dir, args.smoke, args.pgap_parallel,
                 networks={cell.network for *_, cell in cells})
    record = runs.read_record(record_path(d))
    if record.get("smoke", args.smoke) != args.smoke:
        fail(PROG, f"{d} holds {'smoke' if record['smoke'] else 'full'} runs: use another --output-dir")
    record.update({
        "run": run.id, "seed": seed, "dataset": run.dataset, "method": run.method, "smoke": args.smoke,
        "target_lang": "en" if args.smoke else DATASETS[run.dataset].target,
        "bleu": RECIPES[run.dataset].bleu, "networks": list(run.networks), "cells": all_cells(run.id),
        "commands": {**record.get("commands", {}), **{s.name: command_line(s) for s in todo}},
        "completed": list(record.get("completed", [])),
    })
    runs.write_record(record_path(d), record)
    for step in todo:
        if step.done:
            continue
        run_logged(PROG, f"{run.id} seed {seed}: {step.name}", executable(step.argv), step.log, env=env,
                   append=step.name.startswith(("train", "finetune")))  # a resumed training appends
        step.mark_done()
        record["completed"].append(step.name)
        if step.name in ("train", "select") or step.name.startswith("generate"):
            record["parameters"] = {**record.get("parameters", {}), **checkpoint_parameters(run, d)}
        runs.write_record(record_path(d), record)


def dry_run(args, names: List[str], seeds: List[int], selection):
    for name in names:
        print(f"# {name}: {TABLES[name].title}")
    print(f"# seeds {','.join(map(str, seeds))}; {len(selection)} runs; output {args.output_dir}"
          + ("; --smoke" if args.smoke else ""))
    if args.smoke:
        prepare_smoke_data(args.output_dir, dry_run=True)
    for seed in seeds:
        for run, cells in selection:
            fills = "; ".join(f"{t} {row.label}: {col}" for t, row, col, _ in cells) or "a dependency"
            print(f"\n## {run.id}, seed {seed} ({fills})")
            for step in steps(run, seed, data_path(args, run.dataset), args.output_dir, args.smoke,
                              args.pgap_parallel, networks={cell.network for *_, cell in cells}):
                print(command_line(step))


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("table", help=f"one of {', '.join(TABLES)}, or all")
    parser.add_argument("--seeds", type=seed_list, help="comma-separated seeds (default 1,2,3; --smoke: 1)")
    parser.add_argument("--rows", default=None, help="comma-separated glob patterns over row keys or run ids")
    parser.add_argument("--dry-run", action="store_true", help="print every command, run nothing")
    parser.add_argument("--smoke", action="store_true", help="tiny settings on the bundled sample, on the CPU")
    parser.add_argument("--output-dir", default="runs", help="one directory per run and seed (default runs/)")
    parser.add_argument("--data-root", default="data-bin", help="holds iwslt14.tokenized.de-en, wmt17_en_de, "
                                                                 "wmt14_en_de (default data-bin/)")
    parser.add_argument("--pgap-parallel", type=int, default=0,
                        help="P-GaP workers at a time (default: all kappa, one GPU each)")
    args = parser.parse_args(argv)
    if args.table != "all" and args.table not in TABLES:
        fail(PROG, f"unknown table {args.table!r}: choose from {', '.join(TABLES)}, all")
    names = list(TABLES) if args.table == "all" else [args.table]
    seeds = args.seeds or ([1] if args.smoke else [1, 2, 3])
    patterns = [p.strip() for p in args.rows.split(",") if p.strip()] if args.rows else None
    try:
        selection = select(names, patterns)
    except ValueError as e:
        fail(PROG, str(e))
    if args.dry_run:
        return dry_run(args, names, seeds, selection)

    if args.smoke:
        prepare_smoke_data(args.output_dir, dry_run=False)
    else:
        for dataset in dict.fromkeys(run.dataset for run, _ in selection):
            check_data(data_path(args, dataset), dataset)
    env = _env(args.smoke)
    for seed in seeds:
        for run, cells in selection:
            reproduce_run(run, cells, seed, args, env)
    print(f"{PROG}: done; the table: python scripts/collect_results.py {args.table} --runs {args.output_dir}"
          + (f" --seeds {','.join(map(str, seeds))}" if seeds != [1, 2, 3] else ""))


if __name__ == "__main__":
    main()
