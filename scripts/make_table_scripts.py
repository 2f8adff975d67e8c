#!/usr/bin/env python3
"""Write scripts/paper-tables/TABLE.sh: each table of the papers as a shell script a user reads and runs.

    python scripts/make_table_scripts.py [--output scripts/paper-tables/] [--check]
        [--smoke --table TABLE [--rows PATTERNS]]

One script per table of scripts/harness/papers/tables.py (ats-1a, ats-1b, ats-2a, ats-2b, gap-4, gap-6,
gap-8, gap-9): for every seed, every run of the table with the commands `scripts/reproduce.py TABLE` runs
(its --dry-run prints them), with the data folder, the output folder, the seeds, the GPU and the Python as
variables at the top; C-GaP's steps and the fine-tune branched from every round as loops. Run one as

    DATA=data-bin/iwslt14.tokenized.de-en SEEDS="1 2 3" GPU=0 bash scripts/paper-tables/ats-1a.sh

(fairseq-train and the plugin's console scripts on the PATH), then
python scripts/collect_results.py ats-1a --runs runs. Unlike reproduce.py, a script runs every step again
when run again (a training resumes from its checkpoint_last.pt) and records no run.json.

--check compares the files with what this script would write (exit status 1 if they differ). --smoke
prints the --smoke variant of --table (tiny settings on the bundled IWSLT14 sample, on the CPU), which
the tests run.
"""
import argparse
import os
import sys

from harness.console import fail
from harness.papers import shell
from harness.papers.generated import write_or_check
from harness.papers.tables import TABLES
from harness.recipe import ROOT

PROG = "make_table_scripts"


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--output", default=os.path.join(ROOT, "scripts", "paper-tables"))
    parser.add_argument("--check", action="store_true", help="only compare the files with what would be written")
    parser.add_argument("--smoke", action="store_true", help="print the --smoke variant of --table")
    parser.add_argument("--table", choices=list(TABLES), help="with --smoke: the table")
    parser.add_argument("--rows", help="with --smoke: comma-separated glob patterns over row keys or run ids")
    args = parser.parse_args(argv)
    if args.smoke:
        if not args.table:
            fail(PROG, "--smoke prints one table's script: give --table")
        rows = [p.strip() for p in args.rows.split(",") if p.strip()] if args.rows else None
        try:
            sys.stdout.write(shell.script(args.table, smoke=True, rows=rows))
        except ValueError as e:
            fail(PROG, str(e))
        return
    stale = write_or_check(((shell.path(args.output, name), shell.script(name)) for name in TABLES), args.check,
                           mode=0o755)
    if stale:
        fail(PROG, f"out of date (run scripts/make_table_scripts.py): {', '.join(stale)}")


if __name__ == "__main__":
    main()
