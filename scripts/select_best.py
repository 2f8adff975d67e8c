#!/usr/bin/env python3
"""Keep the best of several fine-tunes: copy the checkpoint with the best validation score to OUTPUT.

    python scripts/select_best.py CHECKPOINT... --output OUTPUT

Each CHECKPOINT is a fairseq checkpoint_best.pt; its score is the best validation value fairseq recorded
(``extra_state["best"]``: the --best-checkpoint-metric, BLEU for the GaP recipes, higher is better
under --maximize-best-checkpoint-metric). The official GaP code branches a fine-tune from the end of
every round and reports the best; here the best is chosen on the validation split, never the test split.
"""
import argparse
import os
import shutil
import sys

from harness.console import fail

PROG = "select_best"


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from fairseq_partitioned import checkpoints

    scored = []
    for path in args.checkpoints:
        if not os.path.isfile(path):
            fail(PROG, f"checkpoint not found: {path}")
        state = checkpoints.load_lazily(path)
        maximize = bool(((state.get("cfg") or {}).get("checkpoint") or {}).get("maximize_best_checkpoint_metric"))
        best = state["extra_state"].get("best")
        if best is None:
            fail(PROG, f"{path} records no validation score (trained with --disable-validation?)")
        scored.append((best if maximize else -best, best, path))
        print(f"{PROG}: {path}: {best}")
    _, best, path = max(scored)
    shutil.copyfile(path, args.output)
    print(f"{PROG}: kept {path} (best validation score {best}) as {args.output}")


if __name__ == "__main__":
    main()
