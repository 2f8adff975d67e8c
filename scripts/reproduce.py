#!/usr/bin/env python3
"""Reproduce a table of the ATS or GaP paper: train every run of it, translate, record.

    python scripts/reproduce.py TABLE [--seeds 1,2,3] [--rows PATTERNS] [--dry-run] [--smoke]
        [--output-dir runs/] [--data-root data-bin/] [--pgap-parallel N]

TABLE: ats-1a, ats-1b, ats-2a, ats-2b (ATS Tables 1-2, hyper-parameters of its Table 3), gap-4, gap-6,
gap-8, gap-9 (GaP Tables 4, 6, 8, 9, appendix B.5), or all. The tables, their runs and the papers'
numbers are in scripts/tables.py.

For every seed and every run of the table (OUTPUT_DIR/RUN/seedN/): the training command(s) (log in
train.log; checkpoints in checkpoints/), then fairseq-generate for each network the table evaluates,
into generate-full.txt / generate-core.txt (ATS: the full network and the core, --max-level 1) or
generate-sparse.txt (GaP), and run.json (the cells it fills, the commands, parameter counts). A step
already recorded in run.json is not run again, so an interrupted reproduction resumes (fairseq-train
itself resumes from checkpoint_last.pt; a prune-from-dense fine-tune starts again from pruned.pt).
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
import fnmatch
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import tables  # noqa: E402
from tables import DATASETS, RECIPES, RUNS, TABLES  # noqa: E402

ROOT = os.path.dirname(HERE)
PLUGIN = os.path.join(ROOT, "fairseq_partitioned")
PROG = "reproduce"
PLUGIN_TASK = "translation_with_partitioned_model"

# The console scripts, run as modules of this interpreter (no PATH needed).
PROGRAMS = {
    "fairseq-train": ["-m", "fairseq_cli.train"],
    "fairseq-generate": ["-m", "fairseq_cli.generate"],
    "fairseq-partitioned-prune": ["-m", "fairseq_partitioned.cli.prune"],
    "fairseq-partitioned-pgap": ["-m", "fairseq_partitioned.cli.pgap"],
}

# --smoke: tiny settings, the same pipeline. d=64 with 2 heads keeps every core of the tables non-empty
# (small width r = 0.03125 of a 32-dim head is 1 unit; rank r = 0.015625 of 64 is 1); GaP's kappa = 6
# needs 2 encoder and 4 decoder layers.
SMOKE_SHAPE = ("--encoder-embed-dim", "64", "--decoder-embed-dim", "64", "--encoder-ffn-embed-dim", "128",
               "--decoder-ffn-embed-dim", "128", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2")
SMOKE_MODEL = {
    "ats": ("--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1") + SMOKE_SHAPE
    + ("--share-decoder-input-output-embed",),
    # no --share-all-embeddings: the sample has two dictionaries
    "gap": ("--arch", "transformer", "--encoder-layers", "2", "--decoder-layers", "4") + SMOKE_SHAPE,
}
SMOKE_UPDATES = 3
SMOKE_MAX_TOKENS = 1024
SMOKE_GAP_STEP_UPDATES = 2
SMOKE_GAP_STEPS = 2
SMOKE_EVAL_BLEU_ARGS = '{"beam": 1, "max_len_a": 0, "max_len_b": 5}'
SMOKE_GEN_SUBSET = "valid"
SMOKE_GENERATE = ("--max-len-a", "0", "--max-len-b", "8", "--cpu", "--num-workers", "0")
SMOKE_DATA = "smoke-data"


def fail(message: str):
    sys.exit(f"{PROG}: error: {message}")


# ------------------------------------------------------------------------------------------ commands


def _family(run) -> str:
    return "ats" if run.method in ("vanilla", "ats") else "gap"


def _plugin(run) -> bool:
    return run.method not in ("vanilla", "dense")  # those two are plain fairseq: a standard Transformer


def _fp16(run, smoke: bool) -> bool:
    return not smoke and "--fp16" in RECIPES[run.dataset].training


def train_flags(run, data: str, smoke: bool = False) -> List[str]:
    """fairseq-train arguments of a run, without --seed, --save-dir and the run's length."""
    recipe = RECIPES[run.dataset]
    task, optimizer = (PLUGIN_TASK, "adam_for_partitioned_model") if _plugin(run) else ("translation", "adam")
    argv = [data, "--user-dir", PLUGIN, "--task", task]
    argv += SMOKE_MODEL[_family(run)] if smoke else recipe.model
    argv += ["--optimizer", optimizer]
    argv += [a for a in recipe.training if not (smoke and a == "--fp16")]
    argv += ["--lr-scheduler", "gap_inverse_sqrt" if run.method == "cgap" else recipe.lr_scheduler]
    argv += ["--max-tokens", str(SMOKE_MAX_TOKENS if smoke else recipe.max_tokens)]
    evaluation = list(recipe.evaluation)
    if smoke and "--eval-bleu-args" in evaluation:
        evaluation[evaluation.index("--eval-bleu-args") + 1] = SMOKE_EVAL_BLEU_ARGS
    argv += evaluation
    argv += run.flags
    if _fp16(run, smoke) and _plugin(run):
        argv += ["--fp16-no-flatten-grads"]  # the plugin's optimizer matches fp32 copies by position
    if smoke:
        argv += ["--cpu", "--num-workers", "0", "--max-valid-steps", "1"]
    return argv


def length_flags(run, smoke: bool = False) -> List[str]:
    """How long a fairseq-train run trains (P-GaP: set by fairseq-partitioned-pgap)."""
    if run.method == "cgap":
        if smoke:
            return ["--gap-step-updates", str(SMOKE_GAP_STEP_UPDATES), "--gap-steps", str(SMOKE_GAP_STEPS),
                    "--max-epoch", "1", "--max-update", str(SMOKE_GAP_STEP_UPDATES * SMOKE_GAP_STEPS + 2)]
        total = tables.GAP_STEPS * tables.GAP_STEP_EPOCHS + tables.GAP_FINETUNE_EPOCHS
        return ["--gap-step-epochs", str(tables.GAP_STEP_EPOCHS), "--gap-steps", str(tables.GAP_STEPS),
                "--gap-finetune-epochs", str(tables.GAP_FINETUNE_EPOCHS), "--max-epoch", str(total)]
    if smoke:
        return ["--max-update", str(SMOKE_UPDATES)] + ([] if run.method == "pgap" else ["--max-epoch", "1"])
    if run.method == "pgap":
        return []
    epochs = {"prune": tables.GAP_FINETUNE_EPOCHS, "dense": tables.GAP_PRETRAIN_EPOCHS}
    return ["--max-epoch", str(epochs.get(run.method, RECIPES[run.dataset].max_epoch))]


def _flag_values(flags) -> Dict[str, str]:
    return {a: b for a, b in zip(flags, list(flags[1:]) + [""]) if a.startswith("--")}


@dataclass
class Step:
    name: str  # train, prune, generate-full, ...
    argv: List[str]  # the program's console-script name first
    log: str


def run_dir(output_dir: str, run_id: str, seed: int) -> str:
    return os.path.join(output_dir, run_id, f"seed{seed}")


def generation_checkpoint(run, directory: str) -> str:
    if run.method == "pgap":
        return os.path.join(directory, "checkpoints", "finetune", "checkpoint_best.pt")
    return os.path.join(directory, "checkpoints", "checkpoint_best.pt")


def steps(run, seed: int, data: str, output_dir: str, smoke: bool, pgap_parallel: int = 0,
          networks=None) -> List[Step]:
    """The commands of one run and seed; ``networks``: those to translate (default: all of the run's)."""
    d = run_dir(output_dir, run.id, seed)
    ckpt_dir = os.path.join(d, "checkpoints")
    train_log = os.path.join(d, "train.log")
    base = train_flags(run, data, smoke) + length_flags(run, smoke) + ["--seed", str(seed)]
    out: List[Step] = []
    if run.method == "pgap":
        me = ["fairseq-partitioned-pgap", "--save-dir", ckpt_dir]
        if smoke:
            me += ["--rounds", "1", "--step-epochs", "1", "--finetune-epochs", "1", "--parallel", "3"]
        else:
            me += ["--rounds", str(tables.GAP_STEPS), "--step-epochs", str(tables.GAP_STEP_EPOCHS),
                   "--finetune-epochs", str(tables.GAP_FINETUNE_EPOCHS)]
            if pgap_parallel:
                me += ["--parallel", str(pgap_parallel)]
        out.append(Step("train", me + ["--", *base, "--no-epoch-checkpoints"], train_log))
    else:
        train = ["fairseq-train", *base, "--save-dir", ckpt_dir, "--no-epoch-checkpoints"]
        if run.method == "prune":
            # GaP B.5: one-shot magnitude pruning of the dense pretrain of the same seed, then fixed masks
            dense = generation_checkpoint(RUNS[run.after], run_dir(output_dir, run.after, seed))
            pruned = os.path.join(d, "pruned.pt")
            values = _flag_values(run.flags)
            prune = ["fairseq-partitioned-prune", dense, "--sparsity", values["--gap-sparsity"]]
            for flag, option in (("--gap-distribution", "--distribution"), ("--gap-granularity", "--granularity")):
                if flag in values:
                    prune += [option, values[flag]]
            out.append(Step("prune", prune + ["--output", pruned], os.path.join(d, "prune.log")))
            train += ["--restore-file", pruned, "--reset-optimizer", "--reset-lr-scheduler", "--reset-dataloader",
                      "--reset-meters"]
        out.append(Step("train", train, train_log))
    recipe = RECIPES[run.dataset]
    subset = SMOKE_GEN_SUBSET if smoke else DATASETS[run.dataset].gen_subset
    for network in run.networks if networks is None else [n for n in run.networks if n in networks]:
        task = PLUGIN_TASK if _plugin(run) else "translation"
        generate = ["fairseq-generate", data, "--user-dir", PLUGIN, "--task", task,
                    "--path", generation_checkpoint(run, d), "--gen-subset", subset, *recipe.generate]
        if network == "core":
            generate += ["--max-level", "1"]
        if smoke:
            generate += SMOKE_GENERATE
        out.append(Step(f"generate-{network}", generate, os.path.join(d, f"generate-{network}.txt")))
    return out


def display(step: Step) -> str:
    return f"{shlex.join(step.argv)} > {shlex.quote(step.log)} 2>&1"


def executable(argv: List[str]) -> List[str]:
    return [sys.executable, *PROGRAMS[argv[0]], *argv[1:]]


# ------------------------------------------------------------------------------------------ selection


def select(table_names: List[str], patterns: Optional[List[str]]):
    """[(run, [(table, row, column, cell)])] in table order, dependencies (the dense pretrain) first."""
    chosen: Dict[str, list] = {}
    matched = set()
    for name in table_names:
        for row in TABLES[name].rows:
            for column, cell in row.cells.items():
                hits = [p for p in patterns or ["*"] if fnmatch.fnmatchcase(row.key, p)
                        or fnmatch.fnmatchcase(cell.run, p)]
                if hits:
                    matched.update(hits)
                    chosen.setdefault(cell.run, []).append((name, row, column, cell))
    for p in patterns or []:
        if p not in matched:
            keys = sorted({r.key for n in table_names for r in TABLES[n].rows})
            fail(f"--rows pattern {p!r} matches no row or run of {', '.join(table_names)} (rows: {', '.join(keys)})")
    ordered: List[str] = []
    for run_id in chosen:
        after = RUNS[run_id].after
        if after and after not in ordered:
            ordered.append(after)
        if run_id not in ordered:
            ordered.append(run_id)
    return [(RUNS[r], chosen.get(r, [])) for r in ordered]


def all_cells(run_id: str) -> List[dict]:
    """Every cell of every table that this run fills (for run.json)."""
    return [{"table": t.name, "row": row.label, "column": column, "network": cell.network}
            for t in TABLES.values() for row in t.rows for column, cell in row.cells.items() if cell.run == run_id]


def parse_seeds(text: str) -> List[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        fail(f"--seeds must be comma-separated integers, got {text!r}")
    if not seeds:
        fail("--seeds is empty")
    return seeds


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
        fail(f"no binarized {ds.description} data in {path} (make it with data-prep/{script} "
             f"--binarize {path}, see data-prep/README.md, or pass --data-root)")


def prepare_smoke_data(output_dir: str, dry_run: bool):
    base = os.path.join(output_dir, SMOKE_DATA)
    cmd = [sys.executable, os.path.join(ROOT, "data-prep", "prepare_sample.py"),
           "--output", os.path.join(base, "text"), "--binarize", os.path.join(base, "data-bin")]
    if dry_run:
        print(f"# the bundled IWSLT14 sample, if {base}/data-bin is missing")
        print(shlex.join(["python", *cmd[1:]]))
        return
    if os.path.isfile(os.path.join(base, "data-bin", "dict.en.txt")):
        return
    print(f"{PROG}: preparing the bundled IWSLT14 sample into {base}", flush=True)
    log = os.path.join(base, "prepare.log")
    os.makedirs(base, exist_ok=True)
    with open(log, "w") as f:
        if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode != 0:
            fail(f"preparing the sample failed, see {log}")


def _env(smoke: bool) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if smoke:
        # tiny models: one thread each is faster than threads fighting over a few cores
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_step(step: Step, env: dict, run_id: str, seed: int):
    os.makedirs(os.path.dirname(step.log), exist_ok=True)
    mode = "a" if step.name == "train" else "w"  # a resumed training appends to its log
    with open(step.log, mode) as log:
        log.write(f"# {PROG}: {display(step)}\n")  # which command (and which attempt) wrote what follows
        log.flush()
        rc = subprocess.run(executable(step.argv), stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        with open(step.log) as log:
            tail = log.read()[-3000:]
        print(tail, file=sys.stderr)
        fail(f"{step.name} of {run_id} seed {seed} failed (exit {rc}), log: {step.log}")


def parameter_counts(run, directory: str) -> Dict[str, int]:
    """Parameters of each evaluated network, as the checkpoint it is translated from records them
    (ATS: core and the full network as a standard Transformer; GaP: nonzero; plain fairseq: all)."""
    from fairseq_partitioned import checkpoints  # torch: only when there is a checkpoint to read

    path = generation_checkpoint(run, directory)
    if not os.path.isfile(path):
        return {}
    counts = checkpoints.parameter_counts(checkpoints.load_lazily(path))
    return {network: counts[network] for network in run.networks if network in counts}


def write_record(path: str, record: dict):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2)
    os.replace(tmp, path)


def reproduce_run(run, cells, seed: int, args, env: dict):
    d = run_dir(args.output_dir, run.id, seed)
    data = data_path(args, run.dataset)
    # a run needed only as a dependency (the dense pretrain of prune-from-dense) is trained, not translated
    todo = steps(run, seed, data, args.output_dir, args.smoke, args.pgap_parallel,
                 networks={cell.network for *_, cell in cells})
    record_path = os.path.join(d, "run.json")
    record = {}
    if os.path.isfile(record_path):
        with open(record_path) as f:
            record = json.load(f)
    if record.get("smoke", args.smoke) != args.smoke:
        fail(f"{d} holds {'smoke' if record['smoke'] else 'full'} runs: use another --output-dir")
    done = set(record.get("completed", []))
    record.update({
        "run": run.id, "seed": seed, "dataset": run.dataset, "method": run.method, "smoke": args.smoke,
        "target_lang": "en" if args.smoke else DATASETS[run.dataset].target,
        "bleu": RECIPES[run.dataset].bleu, "networks": list(run.networks), "cells": all_cells(run.id),
        "commands": {**record.get("commands", {}), **{s.name: display(s) for s in todo}},
        "completed": list(record.get("completed", [])),
    })
    os.makedirs(d, exist_ok=True)
    write_record(record_path, record)
    for step in todo:
        if step.name in done:
            continue
        print(f"{PROG}: {run.id} seed {seed}: {step.name}", flush=True)
        run_step(step, env, run.id, seed)
        record["completed"].append(step.name)
        if step.name == "train" or step.name.startswith("generate"):
            record["parameters"] = {**record.get("parameters", {}), **parameter_counts(run, d)}
        write_record(record_path, record)


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("table", help=f"one of {', '.join(TABLES)}, or all")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 1,2,3; --smoke: 1)")
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
        fail(f"unknown table {args.table!r}: choose from {', '.join(TABLES)}, all")
    names = list(TABLES) if args.table == "all" else [args.table]
    seeds = parse_seeds(args.seeds or ("1" if args.smoke else "1,2,3"))
    patterns = [p.strip() for p in args.rows.split(",") if p.strip()] if args.rows else None
    selection = select(names, patterns)

    if args.dry_run:
        for name in names:
            t = TABLES[name]
            print(f"# {name}: {t.title}")
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
                    print(display(step))
        return

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
