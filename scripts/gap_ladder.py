#!/usr/bin/env python3
"""The GaP ladder: C-GaP against prune-from-dense as the steps grow longer, in the GaP paper's proportions.

    python scripts/gap_ladder.py [--output-dir ladder] [--dense 750,3000,6000] [--seed 1]
        [--parallel 1] [--threads 1] [--dry-run] [--report-only] [--recorded FILE] [--smoke]

The study's model and recipe (scripts/harness/study/design.py), one seed. For each dense pre-training
length D:

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
OUTPUT/ladder.md, OUTPUT/ladder.json (every number) and OUTPUT/ladder.png (scripts/harness/ladder/report.py);
with ``--recorded FILE`` (a ladder.json, as docs/gap-ladder.json), the rungs and control whose runs are not in
OUTPUT come from that record, marked as such.
"""
import argparse
import os
import sys
from typing import List, Optional

from harness import console, runner, runs
from harness.ladder import design, report as ladder_report
from harness.recipe import ROOT
from harness.study import design as study
from harness.study.design import Budget

PROG = "gap-ladder"


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--output-dir", default=os.path.join(ROOT, "ladder"))
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
    budget = Budget(1500, model=study.SMOKE_MODEL if args.smoke else study.MODEL,
                    interval=2 if args.smoke else 250)
    if not rungs or rungs != sorted(set(rungs)) or any(n < 4 or n % budget.interval for n in rungs):
        console.fail(PROG, f"--dense {args.dense}: give increasing multiples of {budget.interval}, each >= 4")
    if args.parallel < 1 or args.threads < 1:
        console.fail(PROG, "--parallel and --threads must be >= 1")
    if args.recorded:
        if args.dry_run:
            console.fail(PROG, "--recorded is for the report: --dry-run writes none")
        try:
            ladder_report.load_record(args.recorded)
        except ValueError as e:
            console.fail(PROG, f"--recorded {args.recorded}: {e}")
    output = os.path.abspath(args.output_dir)
    data = os.path.join(output, "data-bin")
    if args.smoke:  # the control's one-process C-GaP needs U of at least 12 updates
        budget = Budget(12, model=budget.model, interval=2)
    todo = design.jobs(output, data, rungs, args.seed, budget, args.smoke)
    if args.dry_run:
        return runner.print_dry_run(todo)
    if args.report_only:
        if not os.path.isdir(output):
            console.fail(PROG, f"--report-only: no ladder in {output} (--output-dir)")
        return report(output, rungs, args.seed, budget, args.recorded)
    os.makedirs(output, exist_ok=True)
    study.prepare_data(output, PROG, limit=200 if args.smoke else 0)
    command = "python scripts/gap_ladder.py " + " ".join(argv if argv is not None else sys.argv[1:])
    runner.run_recorded(todo, args.parallel, args.threads, PROG, command,
                        lambda entry: runs.record_invocation(output, entry))
    report(output, rungs, args.seed, budget, args.recorded)


def report(output: str, rungs: List[int], seed: int, budget: Budget, recorded: Optional[str]):
    console.quiet_third_party()  # the report validates checkpoints in this process
    paths = ladder_report.write(output, rungs, seed, budget.cgap(), budget.updates, recorded)
    print(f"{PROG}: wrote {', '.join(paths)}")


if __name__ == "__main__":
    main()
