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
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
PLUGIN = os.path.join(ROOT, "fairseq_partitioned")


def run(cmd, log=None):
    print("+ " + " ".join(cmd), flush=True)
    if log is None:
        subprocess.run(cmd, check=True)
        return ""
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
    with open(log, "w") as f:
        f.write(out)
    return out


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


def generate(data, ckpt, extra, log):
    out = run([
        sys.executable, "-m", "fairseq_cli.generate", data, "--path", ckpt,
        "--user-dir", PLUGIN, "--task", "translation_with_partitioned_model",
        "--gen-subset", "test", "--beam", "4", "--batch-size", "128", "--max-len-a", "1.2", "--max-len-b", "10",
        "--remove-bpe", "--cpu", "--num-workers", "0", *extra,
    ], log=log)
    bleu = re.search(r"BLEU4 = ([0-9.]+)", out)
    if not bleu:
        raise RuntimeError(f"no BLEU in {log}")
    return float(bleu.group(1))


def parameter_counts(ckpt):
    from fairseq_partitioned import checkpoints  # torch and fairseq: only once there is a checkpoint

    counts = checkpoints.parameter_counts(checkpoints.load_lazily(ckpt))
    return counts["core"], counts["full"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=os.path.join(ROOT, "quickstart"))
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    start = time.time()
    text, data, ckpt_dir = (os.path.join(args.workdir, d) for d in ("text", "data-bin", "checkpoints"))
    if not os.path.isfile(os.path.join(data, "train.de-en.de.bin")):
        run([sys.executable, os.path.join(ROOT, "data-prep", "prepare_sample.py"), "--output", text, "--binarize", data])
    ckpt = os.path.join(ckpt_dir, "checkpoint_best.pt")
    train_log = os.path.join(args.workdir, "train.log")
    # fairseq logs to stdout (kept in the log); its tqdm progress bar is on stderr (the terminal)
    cmd = train_command(data, ckpt_dir, args.epochs)
    print("+ " + " ".join(cmd), flush=True)
    print(f"training ({args.epochs} epochs; the log: {train_log})", flush=True)
    with open(train_log, "w") as log:
        if subprocess.run(cmd, stdout=log).returncode != 0:
            sys.exit(f"quickstart: training failed, see {train_log}")
    trained = time.time()
    full_bleu = generate(data, ckpt, [], os.path.join(args.workdir, "generate-full.log"))
    core_bleu = generate(data, ckpt, ["--max-level", "1"], os.path.join(args.workdir, "generate-core.log"))
    core_params, full_params = parameter_counts(ckpt)
    print()
    print(f"Low-rank ATS (r = 0.25) on the IWSLT14 sample, {args.epochs} epochs on CPU "
          f"(training {trained - start:.0f} s, total {time.time() - start:.0f} s)")
    print(f"{'network':<8} {'parameters':>12} {'test BLEU':>10}")
    print(f"{'full':<8} {full_params:>12,} {full_bleu:>10.2f}")
    print(f"{'core':<8} {core_params:>12,} {core_bleu:>10.2f}")
    print(f"(tokenized BLEU4 of fairseq-generate, BPE removed; logs and checkpoint in {args.workdir})")


if __name__ == "__main__":
    main()
