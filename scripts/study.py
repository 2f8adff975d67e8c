#!/usr/bin/env python3
"""The evidence study: the papers' comparisons measured at CPU scale, on the bundled corpus.

    python scripts/study.py [--output-dir study] [--seeds 1] [--updates 1500] [--rows ROW,...]
        [--parallel 2] [--threads 1] [--dry-run] [--report-only]

Trains every row of scripts/harness/study/design.py for one fixed update budget, side by side (``--parallel``
commands at a time, ``--threads`` each), translates the test split with every network of each row from
its last checkpoint, and writes OUTPUT/study.md (a table: mean (std) test BLEU over the seeds with
parameters, beside the papers' claims), OUTPUT/study.png (BLEU against parameters) and
OUTPUT/curves.png (each network's valid loss and valid BLEU against updates, up to U;
OUTPUT/curves-further.png, over their whole length, for the runs trained further with ``--train-to``).
``--report-only`` without ``--rows`` reports every row the output directory holds. Every run leaves a small
record (``--write-records docs/study-records``: its commands, commit, parameters, valid loss and BLEU at every
checkpoint, test BLEU, training wall time), and ``--recorded docs/study-records`` rebuilds the table and
figures from the records of the runs whose directories are gone. A command whose output is
complete is not run again: a restarted study resumes (fairseq-train resumes from checkpoint_last.pt),
and a second invocation with ``--seeds 1,2`` adds seed 2. The data is prepared into OUTPUT/data-bin
(data-prep/prepare_bible.py) when missing.
"""
import argparse
import os
import re
import sys

from harness import console, runner, runs
from harness.console import seed_list
from harness.recipe import ROOT
from harness.study import design, report
from harness.study.design import CHOICES, ROWS, Budget

PROG = "study"


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--output-dir", default=os.path.join(ROOT, "study"))
    parser.add_argument("--seeds", type=seed_list, default=[1], help="comma-separated seeds (default 1)")
    parser.add_argument("--updates", type=int, default=1500, help="U: every row's number of updates")
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--interval", type=int, default=250,
                        help="updates between validations and checkpoints, scored on the valid split (default 250)")
    parser.add_argument("--train-to", type=int, default=0,
                        help=f"train the --rows further, to this many updates ({', '.join(design.EXTENSIBLE)})")
    parser.add_argument("--rows", default=None,
                        help=f"comma-separated row keys (default: the comparisons; with --report-only, every row "
                             f"the output directory holds; also {', '.join(r.key for r in CHOICES)}: "
                             "the choices the papers leave open, scored on the valid split only)")
    parser.add_argument("--parallel", type=int, default=2, help="commands at a time (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per command (default 1)")
    parser.add_argument("--no-curves", action="store_true",
                        help="score only the test split at U (no valid-split translations along the way)")
    parser.add_argument("--dry-run", action="store_true", help="print every command, run nothing")
    parser.add_argument("--report-only", action="store_true", help="write the table and figures, run nothing")
    parser.add_argument("--smoke", action="store_true", help="a tiny model on 200 pairs per split (tests)")
    parser.add_argument("--recorded", metavar="DIR", default=None,
                        help="the runs' records (ROW/seedN.json; the repository's: docs/study-records): the report "
                             "takes a run whose directory is not in --output-dir from its record")
    parser.add_argument("--write-records", metavar="DIR", default=None,
                        help="after the runs (or with --report-only), write the record of every run of --rows and "
                             "--seeds that --output-dir holds into DIR/ROW/seedN.json, naming this checkout's commit")
    parser.add_argument("--trained-at", metavar="COMMIT", default=None,
                        help="with --write-records: the commit that trained the runs, where another checkout "
                             "trained them (default: this checkout's)")
    args = parser.parse_args(argv)
    output = os.path.abspath(args.output_dir)
    if args.rows is not None:
        rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    elif args.report_only:  # every row that has a run on disk, in the study's order
        rows = [key for key in design.ROW if os.path.isdir(os.path.join(output, key))]
    else:
        rows = [r.key for r in ROWS]
    unknown = [r for r in rows if r not in design.ROW]
    if unknown:
        console.fail(PROG, f"--rows: unknown row {unknown[0]!r}; rows: {', '.join(design.ROW)}")
    budget = Budget(args.updates, model=design.SMOKE_MODEL if args.smoke else design.MODEL,
                    max_tokens=args.max_tokens, interval=args.interval)
    if args.parallel < 1 or args.threads < 1 or args.interval < 1:
        console.fail(PROG, "--parallel, --threads and --interval must be >= 1")
    if budget.cgap()[1] < 1 or args.updates % args.interval or budget.dense_updates() % args.interval:
        console.fail(PROG, f"--updates {args.updates}: give a multiple of 2 x --interval {args.interval}, >= 12 "
                           "(C-GaP: 9 steps of at least one update; prune-from-dense: half and half)")
    if args.train_to and (args.train_to <= args.updates or args.train_to % args.interval):
        console.fail(PROG, f"--train-to {args.train_to}: give a multiple of --interval above --updates {args.updates}")
    if args.trained_at and not (args.write_records and re.fullmatch(r"[0-9a-f]{7,40}", args.trained_at)):
        console.fail(PROG, "--trained-at takes a commit's hash and names it in the records of --write-records DIR")
    data = os.path.join(output, "data-bin")
    try:
        jobs = [j for row in rows for seed in args.seeds
                for j in design.jobs(design.ROW[row], seed, output, data, budget, args.train_to, args.smoke,
                                           curves=not args.no_curves)]
    except ValueError as e:
        console.fail(PROG, f"--train-to: {e}")
    if args.dry_run:
        if args.recorded or args.write_records:
            console.fail(PROG, "--dry-run runs nothing and reports nothing: drop --recorded and --write-records")
        return runner.print_dry_run(jobs)
    if not args.report_only:
        os.makedirs(output, exist_ok=True)
        design.prepare_data(output, PROG, limit=200 if args.smoke else 0)
        command = "python scripts/study.py " + " ".join(argv if argv is not None else sys.argv[1:])
        runner.run_recorded(jobs, args.parallel, args.threads, PROG, command,
                            lambda entry: runs.record_invocation(output, entry))
    if args.recorded:
        report.use_records(args.recorded)
    if not os.path.isdir(output) and not args.recorded:
        console.fail(PROG, f"--report-only: no study in {output} (--output-dir)")
    os.makedirs(output, exist_ok=True)
    paths = report.write(output, [design.ROW[r] for r in rows], args.seeds, budget)
    if args.write_records:
        paths += report.write_records(output, [design.ROW[r] for r in rows], args.seeds, budget,
                                            args.write_records, args.trained_at or runs.checkout_commit())
    print(f"{PROG}: wrote {', '.join(paths)}")


if __name__ == "__main__":
    main()
