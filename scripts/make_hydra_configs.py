#!/usr/bin/env python3
"""Write configs/*.yaml: the papers' runs as configs for fairseq's hydra entry point.

    python scripts/make_hydra_configs.py [--output configs/] [--check]

One YAML per run of scripts/harness/papers/tables.py that a user would start by hand: ATS Table 3 (IWSLT14 and
WMT17 at its r = 0.03125: standard training, the core alone, alternating training, for the low-rank and
the small-width core) and every C-GaP run of GaP Tables 4, 6, 8, 9 (appendix B.5), as the plugin's
one-process C-GaP with the official code's steps and one final fine-tune (reproduce.py runs the tables
as the official code does: a process per step, a fine-tune branched from every round). Train with

    fairseq-hydra-train --config-dir configs --config-name ats_iwslt14_rank_r0.03125_alternate \\
        task.data=data-bin/iwslt14.tokenized.de-en checkpoint.save_dir=checkpoints/ats

from the repository root (common.user_dir is the relative path fairseq_partitioned; override it
elsewhere). Each YAML holds the values that the run's fairseq-train command line (harness/papers/pipeline.py) sets
differently from the defaults hydra fills in: a registered config class's defaults for task, optimizer,
lr_scheduler, criterion and the top-level groups; for the model (fairseq's Transformer is a legacy
model without a config class) whatever the --arch function does not set by itself. So the composed
configuration is the command line's (tests/test_reproduce.py checks a pair; the code: harness/papers/hydra_configs.py).

fairseq-hydra-train fills defaults before it imports common.user_dir, so the plugin's task and optimizer
get their defaults only when fairseq builds them (fairseq merges a config class's defaults again there):
the training is the same. To have them in the composed configuration from the start, import the plugin
first: python -c "import fairseq_partitioned; from fairseq_cli.hydra_train import cli_main; cli_main()"
--config-dir configs --config-name ... (the same arguments).

--check compares the files with what this script would write (exit status 1 if they differ).
"""
import argparse
import os

from harness.console import fail
from harness.papers.generated import write_or_check
from harness.papers.hydra_configs import config_runs, render
from harness.recipe import ROOT

PROG = "make_hydra_configs"


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=os.path.join(ROOT, "configs"))
    parser.add_argument("--check", action="store_true", help="only compare the files with what would be written")
    args = parser.parse_args(argv)
    stale = write_or_check(((os.path.join(args.output, f"{name}.yaml"), render(name, run)) for name, run in config_runs()),
                           args.check)
    if stale:
        fail(PROG, f"out of date (run scripts/make_hydra_configs.py): {', '.join(stale)}")


if __name__ == "__main__":
    main()
