#!/usr/bin/env python3
"""The GaP ladder: C-GaP against prune-from-dense as the steps grow longer, in the GaP paper's proportions.

    python scripts/gap_ladder.py [--output-dir ladder] [--dense 750,3000,6000] [--seed 1]
        [--parallel 1] [--threads 1] [--dry-run] [--report-only] [--recorded FILE] [--smoke]

The study's model and recipe (scripts/study_design.py), one seed. For each dense pre-training length D:

- prune-from-dense as GaP appendix B.5: D dense updates (one dense run, trained on from rung to rung),
  one-shot per-matrix 90% magnitude prune, D fine-tune updates with a fresh optimizer and learning rate;
- C-GaP 90%, kappa = 3, as the official code: steps of N = D / 4 updates (the paper's step is 1/4 of
  the dense pre-training: 10 vs 40 epochs), each its own process (``--gap-grow-step k``; the optimizer
  and learning rate restart) going on from the step before; a fine-tune of D updates branched after
  the first round (1 + kappa steps: total 2 D, prune-from-dense's budget) and, at the longest D, after
  the second round too (the paper's extra budget);
- a fixed random 90% mask trained from scratch for 2 D updates (one run, trained on from rung to rung).

One control at the study's N = 125: its one-process C-GaP (the study's ``cgap`` row: Adam moments and
step counts carried across steps) against the same schedule as per-step processes (fresh ones).

Every step process goes on with the data order where the step before stopped (``continue_from``): the
official code starts each process at epoch 1, which at steps shorter than an epoch would train every step
on the same first N batches (the official code's steps are 10 epochs, where it does not matter). The
fine-tunes start like the study's prune-from-dense fine-tune (``recipe.start_from``), from epoch 1.
Every network is scored by the study's rule: its checkpoint at its last update, beam 4, test split.
Runs live in OUTPUT/ARM/seedN/ (ARM: dense, random-mask, prune-D, cgap-D, cgap-125-steps, and the study's
cgap); the jobs run resumably and side by side with the study's runner. Then (and with ``--report-only``)
OUTPUT/ladder.md, OUTPUT/ladder.json (every number) and OUTPUT/ladder.png (scripts/gap_ladder_report.py);
with ``--recorded FILE`` (a ladder.json, as docs/gap-ladder.json), the rungs and control whose runs are not in
OUTPUT come from that record, marked as such.
"""
import argparse
import os
import sys
from typing import List, Optional

import console
import gap_ladder_report
import recipe
import runner
import study_design
import study_report
from recipe import PLUGIN_TASK, start_from
from runner import Job, checkpoint_at, continue_from
from study_design import Budget, _training, generate, run_dir

PROG = "gap-ladder"
SPARSITY = ("--gap-sparsity", "0.9")
KAPPA = 3
CONTROL_STEP = 125  # the study's C-GaP step (9 steps of 125, 375 fine-tune updates, U = 1,500)


def step_length(dense: int) -> int:
    """N = D / 4, rounded down (D = 750: 187; the rung's C-GaP budget is then 4 N + D, 2 updates short)."""
    return dense // 4


def _test(name: str, data: str, ckpt_dir: str, updates: int, task: str, network: str, d: str, smoke: bool,
          after: str, suffix: str = "") -> Job:
    return Job(f"{name}/test-{network}{suffix}", generate(data, checkpoint_at(ckpt_dir, updates), task, network,
                                                         "test", 4, smoke),
               os.path.join(d, f"generate-{network}{suffix}.txt"), [after])


def _chained(name: str, d: str, lengths: List[int], argv_at, data: str, task: str, network: str,
             smoke: bool) -> List[List[Job]]:
    """One run trained on from length to length (each a job resuming the one before), tested at each."""
    out, before = [], []
    for length in lengths:
        train = Job(f"{name}/train-{length}", argv_at(length), os.path.join(d, "train.log"), before, updates=length)
        out.append([train, _test(name, data, os.path.join(d, "checkpoints"), length, task, network, d, smoke,
                                 train.name, f"-{length}")])
        before = [train.name]
    return out


def _cgap_steps(name: str, d: str, data: str, budget: Budget, seed: int, smoke: bool, per_step: int, steps: int,
                warmup: int) -> List[Job]:
    """C-GaP steps 0..steps-1 as processes, each going on from the one before."""
    out, previous = [], None
    for step in range(steps):
        save = os.path.join(d, "checkpoints", f"step{step}")
        argv = _training(data, PLUGIN_TASK, smoke, budget, per_step, seed, save, warmup=warmup, keep=1)
        argv += [*SPARSITY, "--gap-partitions", str(KAPPA), "--gap-grow-step", str(step)]
        if previous is not None:
            argv.append(continue_from(os.path.join(previous, "checkpoint_last.pt"), save))
        out.append(Job(f"{name}/step{step}", argv, os.path.join(d, f"train-step{step}.log"),
                       [out[-1].name] if out else [], updates=per_step))
        previous = save
    return out


def _finetune(name: str, d: str, data: str, budget: Budget, seed: int, smoke: bool, after: Job, updates: int,
              label: str, warmup: int = None, go_on: bool = False) -> List[Job]:
    """A fixed-mask fine-tune from the last checkpoint of the step ``after`` (its dense partition is pruned
    at the first update), then its test translation; ``go_on``: with the data order where the step stopped."""
    save = os.path.join(d, "checkpoints", label)
    start = os.path.join(after.argv[after.argv.index("--save-dir") + 1], "checkpoint_last.pt")
    argv = _training(data, PLUGIN_TASK, smoke, budget, updates, seed, save, warmup=warmup) + list(SPARSITY)
    argv += [continue_from(start, save)] if go_on else start_from(start)
    train = Job(f"{name}/{label}", argv, os.path.join(d, f"{label}.log"), [after.name], updates=updates)
    return [train, _test(name, data, save, updates, PLUGIN_TASK, "sparse", d, smoke, train.name, f"-{label}")]


def jobs(output: str, data: str, rungs: List[int], seed: int, budget: Budget, smoke: bool) -> List[Job]:
    """Every command of the ladder, rung by rung (the runner starts them in this order): each rung
    complete before the next (dense, prune-from-dense, C-GaP, then the random mask), the N = 125
    control after the first rung's C-GaP."""
    by_rung = {dense: [] for dense in rungs}
    # the dense run (plain fairseq), trained on from rung to rung
    d = run_dir(output, "dense", seed)
    dense = _chained(f"dense/seed{seed}", d, rungs,
                     lambda n: _training(data, "translation", smoke, budget, n, seed, os.path.join(d, "checkpoints")),
                     data, "translation", "full", smoke)
    for length, chain in zip(rungs, dense):
        by_rung[length] += chain
    for length, chain in zip(rungs, dense):
        key = f"prune-{length}"
        name, d = f"{key}/seed{seed}", run_dir(output, key, seed)
        pruned = os.path.join(d, "pruned.pt")
        prune = Job(f"{name}/prune", [*recipe.PROGRAMS["fairseq-partitioned-prune"],
                                      checkpoint_at(os.path.join(run_dir(output, "dense", seed), "checkpoints"), length),
                                      "--sparsity", "0.9", "--output", pruned],
                    os.path.join(d, "prune.log"), [chain[0].name])
        train = Job(f"{name}/train", _training(data, PLUGIN_TASK, smoke, budget, length, seed,
                                               os.path.join(d, "checkpoints")) + list(SPARSITY) + start_from(pruned),
                    os.path.join(d, "train.log"), [prune.name], updates=length)
        by_rung[length] += [prune, train, _test(name, data, os.path.join(d, "checkpoints"), length, PLUGIN_TASK,
                                                "sparse", d, smoke, train.name)]
    for length in rungs:
        key = f"cgap-{length}"
        name, d = f"{key}/seed{seed}", run_dir(output, key, seed)
        per_step = step_length(length)
        rounds = 2 if length == max(rungs) else 1
        warmup = max(1, round(budget.warmup_updates * per_step / budget.updates))  # the study's share of a step
        steps = _cgap_steps(name, d, data, budget, seed, smoke, per_step, 1 + rounds * KAPPA, warmup)
        by_rung[length] += steps
        for r in range(1, rounds + 1):
            by_rung[length] += _finetune(name, d, data, budget, seed, smoke, steps[r * KAPPA], length, f"finetune{r}")
    # the fixed random mask, 2 D updates: the floor, last in each rung (the first is the study's row)
    d = run_dir(output, "random-mask", seed)
    random = _chained(f"random-mask/seed{seed}", d, [2 * n for n in rungs],
                      lambda n: _training(data, PLUGIN_TASK, smoke, budget, n, seed, os.path.join(d, "checkpoints"))
                      + list(SPARSITY), data, PLUGIN_TASK, "sparse", smoke)
    for length, chain in zip(rungs, random):
        by_rung[length] += chain
    # the control: the study's one-process C-GaP and the same schedule as processes
    control_budget = budget  # the study's U
    steps_k, per_step, finetune = control_budget.cgap()
    warmup = max(1, round(budget.warmup_updates * per_step / budget.updates))
    name, d = f"cgap-{per_step}-steps/seed{seed}", run_dir(output, f"cgap-{per_step}-steps", seed)
    control = study_design.jobs(study_design.ROW["cgap"], seed, output, data, control_budget, smoke=smoke, curves=False)
    steps = _cgap_steps(name, d, data, budget, seed, smoke, per_step, steps_k, warmup)
    control += steps + _finetune(name, d, data, budget, seed, smoke, steps[-1], finetune, "finetune", warmup, go_on=True)
    first = rungs[0]
    floor = [j for j in by_rung[first] if j.name.startswith("random-mask/")]
    return ([j for j in by_rung[first] if j not in floor] + control + floor
            + [j for n in rungs[1:] for j in by_rung[n]])


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--output-dir", default=os.path.join(study_design.ROOT, "ladder"))
    parser.add_argument("--dense", default="750,3000,6000",
                        help="the dense pre-training lengths D, comma-separated, increasing (default 750,3000,6000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=1, help="commands at a time (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per command (default 1)")
    parser.add_argument("--dry-run", action="store_true", help="print every command, run nothing")
    parser.add_argument("--report-only", action="store_true", help="write the report, run nothing")
    parser.add_argument("--recorded", metavar="FILE",
                        help="a ladder.json measured earlier (docs/gap-ladder.json): the report takes the rungs "
                             "and control whose runs are not in --output-dir from it")
    parser.add_argument("--smoke", action="store_true", help="a tiny model on 200 pairs per split (tests)")
    args = parser.parse_args(argv)
    try:
        rungs = [int(x) for x in args.dense.split(",") if x.strip()]
    except ValueError:
        console.fail(PROG, f"--dense {args.dense!r}: give comma-separated integers")
    budget = Budget(1500, model=study_design.SMOKE_MODEL if args.smoke else study_design.MODEL,
                    interval=2 if args.smoke else 250)
    if not rungs or rungs != sorted(set(rungs)) or any(n < 4 or n % budget.interval for n in rungs):
        console.fail(PROG, f"--dense {args.dense}: give increasing multiples of {budget.interval}, each >= 4")
    if args.parallel < 1 or args.threads < 1:
        console.fail(PROG, "--parallel and --threads must be >= 1")
    if args.recorded:
        if args.dry_run:
            console.fail(PROG, "--recorded is for the report: --dry-run writes none")
        try:
            gap_ladder_report.load_record(args.recorded)
        except ValueError as e:
            console.fail(PROG, f"--recorded {args.recorded}: {e}")
    output = os.path.abspath(args.output_dir)
    data = os.path.join(output, "data-bin")
    if args.smoke:  # the control's one-process C-GaP needs U of at least 12 updates
        budget = Budget(12, model=budget.model, interval=2)
    todo = jobs(output, data, rungs, args.seed, budget, args.smoke)
    if args.dry_run:
        return runner.print_dry_run(todo)
    if args.report_only:
        if not os.path.isdir(output):
            console.fail(PROG, f"--report-only: no ladder in {output} (--output-dir)")
        return report(output, rungs, args.seed, budget, args.recorded)
    os.makedirs(output, exist_ok=True)
    study_design.prepare_data(output, PROG, limit=200 if args.smoke else 0)
    command = "python scripts/gap_ladder.py " + " ".join(argv if argv is not None else sys.argv[1:])
    runner.run_recorded(todo, args.parallel, args.threads, PROG, command,
                        lambda entry: study_report.record_invocation(output, entry))
    report(output, rungs, args.seed, budget, args.recorded)


def report(output: str, rungs: List[int], seed: int, budget: Budget, recorded: Optional[str]):
    console.quiet_third_party()  # the report validates checkpoints in this process
    paths = gap_ladder_report.write(output, rungs, seed, budget.cgap(), budget.updates, recorded)
    print(f"{PROG}: wrote {', '.join(paths)}")


if __name__ == "__main__":
    main()
