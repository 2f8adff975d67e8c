#!/usr/bin/env python3
"""The GaP ladder: C-GaP against prune-from-dense as the steps grow longer, in the GaP paper's proportions.

    python scripts/gap_ladder.py [--output-dir ladder] [--dense 750,3000,6000] [--seed 1] [--arms ARM,...]
        [--parallel 1] [--threads 1] [--dry-run] [--report-only] [--recorded PATH ...]
        [--write-records DIR [--trained-at COMMIT]] [--smoke]

The study's model and recipe (scripts/harness/study/design.py), one seed an invocation. For each dense
pre-training length D:

- prune-from-dense as GaP appendix B.5: D dense updates (one dense run, trained on from rung to rung),
  one-shot per-matrix 90% magnitude prune, D fine-tune updates with a fresh optimizer and learning rate;
- C-GaP 90%, kappa = 3, as the official code: steps of N = D / 4 updates (the paper's step is 1/4 of
  the dense pre-training: 10 vs 40 epochs), each its own process (``--gap-grow-step k``; the optimizer
  and learning rate restart) going on from the step before; a fine-tune of D updates branched after
  the first round (1 + kappa steps: total 2 D, prune-from-dense's budget) and, at the longest D, after
  the second round too (the paper's extra budget);
- at the longest D, prune-from-dense given C-GaP's budget with its second round (1 + 2 kappa steps of N and
  D fine-tune updates: 16,500 at D = 6,000), split two ways: today's proportions, half dense and half
  fine-tune (the dense run trained on to the half, 8,250, pruned there, fine-tuned 8,250: run
  prune-matched-D), and the dense checkpoint at D with the rest as fine-tune (6,000 + 10,500: the rung's
  prune-from-dense fine-tune trained on from D to 10,500 updates, a chained length as the dense run's);
- a fixed random 90% mask trained from scratch for 2 D updates (one run, trained on from rung to rung).

One control at the study's N = 125: its one-process C-GaP (the study's ``cgap`` row: Adam moments and
step counts carried across steps) against the same schedule as per-step processes (fresh ones).

Every step process goes on with the data order where the step before stopped (``continue_from``): the
official code starts each process at epoch 1, which at steps shorter than an epoch would train every step
on the same first N batches (the official code's steps are 10 epochs, where it does not matter). The
fine-tunes start like the study's prune-from-dense fine-tune (``recipe.start_from``), from epoch 1.
Every network is scored by the study's rule: its checkpoint at its last update, beam 4, test split.
Runs live in OUTPUT/RUN/seedN/ (RUN: dense, random-mask, prune-D, cgap-D, prune-matched-D, cgap-125-steps, and
the study's cgap); the jobs run resumably and side by side with the study's runner. ``--arms`` runs some of
them, with every job they need (the dense run a prune-from-dense prunes): dense, prune, cgap, random-mask,
prune-matched, control (default: all), or one rung's prune-D, cgap-D, prune-matched-D. Then (and with
``--report-only``) OUTPUT/ladder.md, OUTPUT/ladder.json (every number) and OUTPUT/ladder.png
(scripts/harness/ladder/report.py), over every seed OUTPUT and the records hold. ``--write-records DIR`` keeps
the record of every complete run of ``--arms`` and ``--seed`` in DIR/RUN/seedN.json (its commands, commit,
valid loss at every validation, test BLEU of every translation, training wall time:
scripts/harness/ladder/records.py); ``--recorded DIR`` takes a run whose directory is not in OUTPUT from its
record, and ``--recorded FILE`` (a ladder.json, as docs/gap-ladder.json) the rungs and cells that neither holds;
the report marks what came from a record.
"""
import argparse
import os
import re
import sys

from harness import console, runner, runs
from harness.ladder import design, records, report as ladder_report
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
    parser.add_argument("--arms", default=",".join(design.ARMS),
                        help=f"the arms to run, comma-separated (default: all, {','.join(design.ARMS)}; one rung's: "
                             "prune-D, cgap-D, prune-matched-D), with the jobs they need")
    parser.add_argument("--parallel", type=int, default=1, help="commands at a time (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per command (default 1)")
    parser.add_argument("--dry-run", action="store_true", help="print every command, run nothing")
    parser.add_argument("--report-only", action="store_true", help="write the report, run nothing")
    parser.add_argument("--recorded", metavar="PATH", action="append", default=[],
                        help="runs measured earlier, for the report: a directory of run records (--write-records; "
                             "a run whose directory is not in --output-dir comes from its record) or a ladder.json "
                             "(docs/gap-ladder.json: the rungs and cells the runs and records lack); repeatable")
    parser.add_argument("--write-records", metavar="DIR",
                        help="after the runs (or with --report-only), write the record of every run of --arms and "
                             "--seed that is complete into DIR/RUN/seedN.json, naming this checkout's commit")
    parser.add_argument("--trained-at", metavar="COMMIT",
                        help="with --write-records: the commit that trained the runs, where another checkout "
                             "trained them (default: this checkout's)")
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
    if design.matched_splits(rungs[-1])[0][0] <= rungs[-1]:
        console.fail(PROG, f"--dense {args.dense}: the longest rung is too short for prune-from-dense at C-GaP's "
                           "budget to train on past it")
    if args.parallel < 1 or args.threads < 1:
        console.fail(PROG, "--parallel and --threads must be >= 1")
    if args.dry_run and (args.recorded or args.write_records):
        console.fail(PROG, "--recorded and --write-records are for the report: --dry-run writes none")
    if args.trained_at and not (args.write_records and re.fullmatch(r"[0-9a-f]{7,40}", args.trained_at)):
        console.fail(PROG, "--trained-at takes a commit's hash and names it in the records of --write-records DIR")
    for path in args.recorded:
        try:
            records.read(path) if os.path.isdir(path) else ladder_report.load_record(path)
        except ValueError as e:
            console.fail(PROG, f"--recorded {path}: {e}")
    output = os.path.abspath(args.output_dir)
    data = os.path.join(output, "data-bin")
    if args.smoke:  # the control's one-process C-GaP needs U of at least 12 updates
        budget = Budget(12, model=budget.model, interval=2)
    try:
        todo = design.jobs(output, data, rungs, args.seed, budget, args.smoke,
                           [a.strip() for a in args.arms.split(",") if a.strip()])
    except ValueError as e:
        console.fail(PROG, f"--arms: {e}")
    if args.dry_run:
        return runner.print_dry_run(todo)
    if args.report_only:
        if not os.path.isdir(output) and not args.recorded:
            console.fail(PROG, f"--report-only: no ladder in {output} (--output-dir)")
        os.makedirs(output, exist_ok=True)
    else:
        os.makedirs(output, exist_ok=True)
        study.prepare_data(output, PROG, limit=200 if args.smoke else 0)
        command = "python scripts/gap_ladder.py " + " ".join(argv if argv is not None else sys.argv[1:])
        runner.run_recorded(todo, args.parallel, args.threads, PROG, command,
                            lambda entry: runs.record_invocation(output, entry))
    console.quiet_third_party()  # the report validates checkpoints in this process
    paths = ladder_report.write(output, rungs, budget.cgap(), budget.updates, args.recorded)
    print(f"{PROG}: wrote {', '.join(paths)}")
    if args.write_records:
        every = design.jobs(output, data, rungs, args.seed, budget, args.smoke)
        written, incomplete = records.write(output, todo, every, args.write_records,
                                            args.trained_at or runs.checkout_commit())
        print(f"{PROG}: wrote the records of {len(written)} runs into {args.write_records}"
              + (f"; not complete, no record: {', '.join(incomplete)}" if incomplete else ""))


if __name__ == "__main__":
    main()
