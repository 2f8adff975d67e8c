#!/usr/bin/env python3
"""The CPU quickstart: the core of an ATS run next to the same core trained alone, on the bundled corpus.

    python scripts/quickstart.py [--workdir quickstart] [--updates 800] [--width 128] [--lr 0.003]
        [--warmup 100]

1. prepares the bundled English -> Spanish Bible corpus (data-prep/prepare_bible.py);
2. trains, side by side (one CPU core each), the study's two ATS rows (scripts/harness/study/design.py) on a
   3+3-layer Transformer of d=128 (--width 256: the study's model, about twice as slow): alternating
   training with a low-rank core r = 1/32, and the same core trained alone (--max-level 1), for the same
   number of updates;
3. translates the test split with the ATS core, the core trained alone and the ATS full network (beam 4,
   the last checkpoint of each run);
4. prints their parameters and BLEU, and what they say at this budget.

A few CPU minutes: the numbers show where each network stands early in training, not where it ends;
the study (docs/evidence.md) has the comparison at 1,500 updates, with seeds, and over training.
"""
import argparse
import os
import time

from harness import runner
from harness.console import fail, format_table, shown
from harness.recipe import ROOT
from harness.study import design, report

PROG = "quickstart"
ROWS = ("ats-rank", "core-rank")


def main():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=os.path.join(ROOT, "quickstart"))
    parser.add_argument("--updates", type=int, default=800, help="updates of each run (default 800)")
    parser.add_argument("--width", type=int, default=128, choices=[128, 256], help="d (FFN 4d, 4 heads; default 128)")
    parser.add_argument("--lr", type=float, default=0.003, help="peak learning rate (default 0.003)")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up updates (default 100)")
    args = parser.parse_args()
    if args.updates < 1:
        fail(PROG, f"--updates must be >= 1, got {args.updates}")
    start = time.time()
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    data = design.prepare_data(workdir, PROG)
    budget = design.Budget(args.updates, model=design.model(args.width, 4 * args.width, 4),
                                 lr=args.lr, warmup_updates=args.warmup, interval=args.updates)
    rows = [design.ROW[key] for key in ROWS]
    jobs = [job for row in rows for job in design.jobs(row, 1, workdir, data, budget, curves=False)]
    print(f"{PROG}: training the two runs side by side, {args.updates} updates each (logs: "
          f"{shown(workdir)}/{{{','.join(ROWS)}}}/seed1/train.log), then translating the test split", flush=True)
    runner.run_jobs(jobs, parallel=2, threads=1, prog=PROG)
    bleu = {(row.key, net): report.test_bleu(workdir, row, 1, net) for row in rows for net in row.networks}
    params = {(row.key, net): report.parameters(workdir, row, [1], net) for row in rows for net in row.networks}
    table = [["ATS core (alternating training)", ("ats-rank", "core")],
             ["the same core trained alone", ("core-rank", "core")],
             ["ATS full network", ("ats-rank", "full")]]
    print()
    print(f"Low-rank core r = 1/32 of a d={args.width} Transformer on the Bible corpus (en -> es), {args.updates} updates each, "
          f"{(time.time() - start) / 60:.1f} min on this machine")
    print(format_table(["network", "parameters", "test BLEU"],
                       [[name, f"{params[key]:,}", f"{bleu[key]:.2f}"] for name, key in table]))
    gap = bleu["ats-rank", "core"] - bleu["core-rank", "core"]
    where = "level with" if abs(gap) < 0.005 else f"{abs(gap):.2f} BLEU {'above' if gap > 0 else 'below'}"
    print(f"At {args.updates} updates the core trained with ATS is {where} the same core trained alone, and the "
          f"full network that comes with it is at {bleu['ats-rank', 'full']:.2f} BLEU (one seed, early in "
          "training: docs/evidence.md compares them on a d=256 model at 1,500 updates and beyond).")
    print(f"(tokenized BLEU-4 of the lowercased test split, BPE removed; logs and checkpoints in {shown(workdir)})")


if __name__ == "__main__":
    main()
