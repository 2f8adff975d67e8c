#!/usr/bin/env python3
"""The CPU quickstart: low-rank ATS on the bundled IWSLT14 sample, both networks evaluated.

    python scripts/quickstart.py [--workdir quickstart] [--epochs 10]

1. prepares the bundled sample (data-prep/prepare_sample.py): 5636 train, 397 valid, 490 test pairs;
2. trains a small Transformer (3+3 layers, d=256) jointly with its low-rank core (r = 0.25) by
   alternating training, on the CPU, with fairseq-train's progress bar;
3. translates the test split with the full network and with the core (fairseq-generate, beam 4);
4. prints parameters and BLEU (fairseq's tokenized BLEU4, BPE removed) of both.

A toy: a few thousand sentence pairs and a few minutes of CPU give single-digit BLEU. The numbers
show the pipeline, not the papers' results (scripts/ has those, for GPUs).
"""
import argparse
import os
import sys
import time

import generate_bleu
from console import fail, format_table, run_logged

PROG = "quickstart"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = os.path.join(ROOT, "fairseq_partitioned")
sys.path.insert(0, ROOT)  # the plugin's checkpoints module, from this checkout


def train_command(data, save_dir, epochs):
    return [
        sys.executable, "-m", "fairseq_cli.train", data,
        "--user-dir", PLUGIN, "--task", "translation_with_partitioned_model",
        "--arch", "transformer", "--encoder-layers", "3", "--decoder-layers", "3",
        "--encoder-embed-dim", "256", "--decoder-embed-dim", "256",
        "--encoder-ffn-embed-dim", "512", "--decoder-ffn-embed-dim", "512",
        "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
        "--encoder-normalize-before", "--decoder-normalize-before",  # pre-norm: stable at a high lr
        "--share-decoder-input-output-embed", "--dropout", "0.2",
        "--optimizer", "adam_for_partitioned_model", "--adam-betas", "(0.9, 0.98)",
        "--lr", "0.002", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "100",
        "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--max-tokens", "2048", "--max-epoch", str(epochs), "--validate-interval", str(epochs),
        "--partitioned-linear-module-name", "PartitionedRankLinear", "--small-ratio", "0.25", "--alternate",
        "--cpu", "--num-workers", "0", "--seed", "1",
        "--save-dir", save_dir, "--no-epoch-checkpoints", "--no-last-checkpoints",
        "--log-format", "tqdm", "--log-interval", "5",
    ]


def generate(data, ckpt, network, workdir) -> float:
    """Translate the test split with one network; its tokenized BLEU (BPE removed)."""
    log = os.path.join(workdir, f"generate-{network}.log")
    run_logged(PROG, f"translating the test split with the {network} network", [
        sys.executable, "-m", "fairseq_cli.generate", data, "--path", ckpt,
        "--user-dir", PLUGIN, "--task", "translation_with_partitioned_model",
        "--gen-subset", "test", "--beam", "4", "--batch-size", "128", "--max-len-a", "1.2", "--max-len-b", "10",
        "--remove-bpe", "--cpu", "--num-workers", "0", *(["--max-level", "1"] if network == "core" else []),
    ], log)
    score = generate_bleu.score(log, "tokenized", lang="en")
    if score is None:
        fail(PROG, f"no complete translation in {log}")
    return score.bleu


def parameter_counts(ckpt) -> dict:
    from fairseq_partitioned import checkpoints  # torch and fairseq: only once there is a checkpoint

    return checkpoints.parameter_counts(checkpoints.load_lazily(ckpt))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=os.path.join(ROOT, "quickstart"))
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    start = time.time()
    text, data, ckpt_dir = (os.path.join(args.workdir, d) for d in ("text", "data-bin", "checkpoints"))
    if not os.path.isfile(os.path.join(data, "train.de-en.de.bin")):
        run_logged(PROG, f"preparing the bundled sample into {data}",
                   [sys.executable, os.path.join(ROOT, "data-prep", "prepare_sample.py"), "--output", text,
                    "--binarize", data], os.path.join(args.workdir, "prepare.log"))
    ckpt = os.path.join(ckpt_dir, "checkpoint_best.pt")
    train_log = os.path.join(args.workdir, "train.log")
    # fairseq logs to stdout (kept in the log); its tqdm progress bar is on stderr (the terminal)
    run_logged(PROG, f"training ({args.epochs} epochs; the log: {train_log})",
               train_command(data, ckpt_dir, args.epochs), train_log, stderr_to_console=True)
    trained = time.time()
    bleu = {network: generate(data, ckpt, network, args.workdir) for network in ("full", "core")}
    params = parameter_counts(ckpt)
    print()
    print(f"Low-rank ATS (r = 0.25) on the IWSLT14 sample, {args.epochs} epochs on CPU "
          f"(training {trained - start:.0f} s, total {time.time() - start:.0f} s)")
    print(format_table(["network", "parameters", "test BLEU"],
                       [[n, f"{params[n]:,}", f"{bleu[n]:.2f}"] for n in ("full", "core")]))
    print(f"(tokenized BLEU4 of fairseq-generate, BPE removed; logs and checkpoint in {args.workdir})")


if __name__ == "__main__":
    main()
