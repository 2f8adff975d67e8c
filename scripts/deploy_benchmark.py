#!/usr/bin/env python
"""Deployment: each network of the study in fairseq-generate and in CTranslate2 (float32, int8).

What is measured
----------------
The networks of a study (scripts/study.py) at its U updates: the standard Transformer, the ATS full
networks and cores (low-rank and small-width, r = 1/32) and the 90% sparse network (prune-from-dense); with
``--networks``, also the depth core's rows (3+1: ATS, every update, trained alone).
Each runs in

- ``fairseq``: as the study's own fairseq-generate command runs it (``harness.study.design.generate``:
  the plugin's task, ``--max-level 1`` for a core, beam and length limits as the study scores them),
  through ``task.inference_step`` (scripts/harness/bench/engines.py);
- ``ct2-float32`` and ``ct2-int8``: the network exported with ``fairseq-partitioned-export
  --ctranslate2`` (without and with ``--quantization int8``), in a ``ctranslate2.Translator`` on one
  thread with fairseq-generate's settings. The low-rank core has no CTranslate2 form (docs/deploy.md).

For every network and engine: parameters (of the network: the sparse one's non-zero weights; the narrow
core without its zero q/k rows), the file the engine loads (the exported fairseq checkpoint, the
low-rank core's compact one; CTranslate2's model.bin), test BLEU (fairseq's tokenized BLEU-4 as the
study's, scripts/harness/bleu.py) with beam 4 and greedy on the whole test split in batches of 32; for
a CTranslate2 model, the share of test sentences whose beam-4 hypothesis is fairseq's own ("same
hyps") and how far its log-probabilities of the test references are from fairseq's ("Δ log p": mean
over sentences of |difference| in bits per token, EOS included, teacher-forced); and target tokens per
second (EOS included) with beam 4 and greedy, at batch 1 and 32.

Timing: one process, one thread (torch and CTranslate2). The same sentences every round (a fixed
random sample of the test split, sorted by length: ``--timing-sentences`` of them in batches of 32,
``--timing-sentences-bs1`` of them one by one); after a warm-up pass, every cell (network x engine x
beam x batch size) runs once per round, interleaved, so drift and other processes' load hit them
alike. A cell reports tokens per second over all rounds and, as its ratio, the median over rounds of
its tokens per second over that of the standard Transformer in fairseq-generate in the same round, and
a second table the same against the standard Transformer in the same engine (what a deployment in that
engine gains). The JSON names the CPU, its vector instructions (CTranslate2's int8 kernels differ with
AVX-512 and VNNI), the libraries' versions and the machine's load before and after the timing.
Decoding is natural (each network stops where it emits EOS), so tokens per second, not time, compares
networks whose outputs differ in length.

    python scripts/deploy_benchmark.py --study-dir study [--seed 1] [--updates 1500] [--rounds 5]
        [--networks standard/full,ats-width/core] [--json deploy.json] [--markdown deploy.md]
"""
import argparse
import json
import logging
import math
import os
import random
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from a checkout without installing the plugin
    sys.path.insert(0, ROOT)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from harness import console  # noqa: E402  (first: it quiets fairseq's import)
from harness import bleu, runner, runs  # noqa: E402
from harness.bench.engines import CTranslate2Engine, FairseqEngine, batches  # noqa: E402
from harness.bench.timing import timed  # noqa: E402
from harness.console import fail, format_table  # noqa: E402
from harness.study import design  # noqa: E402
from fairseq_partitioned import checkpoints, deploy  # noqa: E402
from fairseq_partitioned.cli.export import export  # noqa: E402

PROG = "deploy_benchmark"
DEFAULT_NETWORKS = ("standard/full", "ats-rank/full", "ats-rank/core", "ats-width/full", "ats-width/core",
                    "prune/sparse")
NETWORKS = DEFAULT_NETWORKS + ("ats-depth/full", "ats-depth/core", "every-depth/full", "every-depth/core",
                               "core-depth/core")
LABELS = {"standard/full": "standard Transformer", "ats-rank/full": "ATS full (low-rank run)",
          "ats-rank/core": "ATS low-rank core", "ats-width/full": "ATS full (small-width run)",
          "ats-width/core": "ATS small-width core", "prune/sparse": "90% sparse (prune-from-dense)",
          "ats-depth/full": "ATS full (depth run)", "ats-depth/core": "ATS depth core 3+1",
          "every-depth/full": "full (depth, every update)", "every-depth/core": "depth core 3+1, every update",
          "core-depth/core": "3+1 trained alone"}
ENGINES = ("fairseq", "ct2-float32", "ct2-int8")
QUANTIZATION = {"ct2-float32": None, "ct2-int8": "int8"}
BEAMS = (4, 1)
BATCH_SIZES = (1, 32)
REFERENCE = ("standard/full", "fairseq")
MAX_LEN_A, MAX_LEN_B = 1.2, 10  # the study's fairseq-generate length limit (design.generate)
logger = logging.getLogger(PROG)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[1])
    parser.add_argument("--study-dir", required=True, help="the output directory of scripts/study.py")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--updates", type=int, default=1500,
                        help="U: the study's --updates, where its networks are read (default 1500, the study's)")
    parser.add_argument("--networks", default=",".join(DEFAULT_NETWORKS),
                        help=f"comma-separated ROW/NETWORK of {', '.join(NETWORKS)} (default: {', '.join(DEFAULT_NETWORKS)})")
    parser.add_argument("--work", help="where the exports go (default STUDY-DIR/deploy)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timing-sentences", type=int, default=128, help="timed at batch 32 (default 128)")
    parser.add_argument("--timing-sentences-bs1", type=int, default=32, help="timed one by one (default 32)")
    parser.add_argument("--bleu-sentences", type=int, help="translate only the first N test sentences for BLEU")
    parser.add_argument("--json", help="write every measurement here")
    parser.add_argument("--markdown", help="write the table here as markdown")
    args = parser.parse_args(argv)
    unknown = [n for n in args.networks.split(",") if n not in NETWORKS]
    if unknown:
        fail(PROG, f"--networks: {unknown[0]} is none of {', '.join(NETWORKS)}")
    if REFERENCE[0] not in args.networks.split(","):
        fail(PROG, f"--networks must include {REFERENCE[0]}: the ratios are against it")
    return args


# -------------------------------------------------------------------------------------- networks
def checkpoint_of(args, name: str) -> str:
    """The checkpoint the study scores this network from: its run's checkpoint at U."""
    row = design.ROW[name.split("/")[0]]
    budget = design.Budget(args.updates)
    ckpt_dir = os.path.join(runs.run_dir(args.study_dir, row.key, args.seed), "checkpoints")
    updates = design.training_updates(row, budget, budget.updates)
    try:
        return runner.resolve([runner.checkpoint_at(ckpt_dir, updates)])[0]
    except FileNotFoundError as e:
        fail(PROG, f"{name}: {e} (train it: scripts/study.py --rows {row.key})")


def prepare(args, name: str, data: str) -> dict:
    """Exports and engines of one network; its parameters and file sizes."""
    row_key, network = name.split("/")
    ckpt = checkpoint_of(args, name)
    level = "core" if network == "core" else "full"
    plain = os.path.join(args.work, f"{name.replace('/', '-')}.pt")
    print(f"{PROG}: {name}: exporting {ckpt}", flush=True)
    export(ckpt, level, plain)
    counts = checkpoints.parameter_counts(checkpoints.load_lazily(ckpt))
    net = {"name": name, "checkpoint": ckpt, "parameters": counts[network], "engines": {}}
    task = "translation" if design.ROW[row_key].method == "vanilla" else design.PLUGIN_TASK
    fairseq = {beam: FairseqEngine(design.generate(data, ckpt, task, network, "test", beam, False)[2:])
               for beam in BEAMS}
    net["engines"]["fairseq"] = {"bytes": os.path.getsize(plain), "engine": fairseq}
    convertible = not (network == "core" and row_key == "ats-rank")
    for engine, quantization in QUANTIZATION.items():
        if not convertible:
            continue
        out = os.path.join(args.work, f"{name.replace('/', '-')}-{engine}")
        deploy.convert_to_ctranslate2(plain, data, out, quantization)
        ct2 = CTranslate2Engine(out)
        net["engines"][engine] = {"bytes": os.path.getsize(os.path.join(out, "model.bin")),
                                  "engine": {beam: ct2 for beam in BEAMS}}
    return net


# ------------------------------------------------------------------------------------------ BLEU
def bleu_pass(net: dict, engine: str, beam: int, test_batches, references) -> dict:
    hyps = []
    for batch in test_batches:
        hyps += net["engines"][engine]["engine"][beam].translate(batch, beam)
    words = [post_process(h) for h in hyps]
    out = bleu.Output(words, words, references)
    return {"bleu": bleu.tokenized_bleu(out, compound=design.TGT == "de"), "hypotheses": hyps}


def study_bleu(args, name: str):
    """The test BLEU the study itself scored (its generate-NETWORK.txt; batches of 64): a check that this
    script translates as fairseq-generate does."""
    row, network = name.split("/")
    path = os.path.join(runs.run_dir(args.study_dir, row, args.seed), f"generate-{network}.txt")
    scored = bleu.score(path, "tokenized", design.TGT)
    return None if scored is None else round(scored.bleu, 2)


def post_process(hypothesis: str) -> str:
    from fairseq.data.data_utils import post_process as remove_bpe

    return remove_bpe(hypothesis, "subword_nmt")  # as fairseq-generate --remove-bpe


# ---------------------------------------------------------------------------------------- timing
def time_cells(args, nets, timing) -> dict:
    """Tokens per second of every cell, interleaved over rounds (module docstring)."""
    cells = [(net["name"], engine, beam, bs) for beam in BEAMS for bs in BATCH_SIZES
             for net in nets for engine in net["engines"]]
    by_name = {net["name"]: net for net in nets}
    rows = {cell: {"seconds": [], "cpu_seconds": [], "tokens": []} for cell in cells}

    def run(cell):
        name, engine, beam, bs = cell
        translator = by_name[name]["engines"][engine]["engine"][beam]
        return sum(len(h.split()) + 1 for batch in timing[bs] for h in translator.translate(batch, beam))

    for cell in cells:  # warm-up: first calls allocate and cache
        run(cell)
    for r in range(args.rounds):
        for cell in cells:
            seconds, cpu, tokens = timed(lambda: run(cell), cuda=False)
            rows[cell]["seconds"].append(seconds)
            rows[cell]["cpu_seconds"].append(cpu)
            rows[cell]["tokens"].append(tokens)
        print(f"{PROG}: timing round {r + 1}/{args.rounds} done", flush=True)
    def median_ratio(row, ref, seconds="seconds"):  # of tokens per second, round by round
        return statistics.median((t / s) / (rt / rs) for t, s, rt, rs in
                                 zip(row["tokens"], row[seconds], ref["tokens"], ref[seconds]))

    for (name, engine, beam, bs), row in rows.items():
        ref = rows[(REFERENCE[0], REFERENCE[1], beam, bs)]
        row["tokens_per_s"] = sum(row["tokens"]) / sum(row["seconds"])
        row["ratio"] = median_ratio(row, ref)
        row["ratio_cpu"] = median_ratio(row, ref, "cpu_seconds")
        # against the standard Transformer in the same engine (what a deployment in that engine gains)
        row["ratio_in_engine"] = median_ratio(row, rows[(REFERENCE[0], engine, beam, bs)])
    return rows


def machine() -> dict:
    """What the timings depend on beyond the code: the CPU and its vector instructions (CTranslate2's int8
    kernels differ with AVX-512 and VNNI), the libraries, the load the machine carried."""
    import platform

    import ctranslate2

    cpu, flags = platform.processor(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    cpu = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16") if f in flags]
    return {"cpu": cpu, "cores": os.cpu_count(), "vector_instructions": isa, "ctranslate2": ctranslate2.__version__,
            "torch": torch.__version__, "load_average_1min": os.getloadavg()[0]}


# ---------------------------------------------------------------------------------------- report
def table(nets, bleus, fidelity, speeds, markdown: bool = False) -> str:
    header = ["network", "engine", "parameters", "MiB", "BLEU beam 4", "BLEU greedy", "same hyps", "Δ log p",
              *[f"tok/s {'beam 4' if beam == 4 else 'greedy'} bs{bs}" for beam in BEAMS for bs in BATCH_SIZES]]
    rows = []
    for net in nets:
        for engine, held in net["engines"].items():
            name = net["name"]
            b = {beam: bleus[(name, engine, beam)] for beam in BEAMS}
            same = "" if engine == "fairseq" else f"{100 * b[4]['same']:.1f}%"
            delta = "" if engine == "fairseq" else f"{fidelity[(name, engine)]:.1e}"
            cells = [f"{speeds[(name, engine, beam, bs)]['tokens_per_s']:.0f} ({speeds[(name, engine, beam, bs)]['ratio']:.2f}x)"
                     for beam in BEAMS for bs in BATCH_SIZES]
            rows.append([LABELS[name], engine, f"{net['parameters']:,}", f"{held['bytes'] / 2 ** 20:.1f}",
                         f"{b[4]['bleu']:.2f}", f"{b[1]['bleu']:.2f}", same, delta, *cells])
    if markdown:
        return console.markdown_table(header, rows)
    return format_table(header, rows)


def in_engine_table(nets, speeds, markdown: bool = False) -> str:
    """Each network's tokens per second against the standard Transformer's in the same engine."""
    header = ["network", "engine", *[f"{'beam 4' if beam == 4 else 'greedy'} bs{bs}" for beam in BEAMS for bs in BATCH_SIZES]]
    rows = [[LABELS[net["name"]], engine, *[f"{speeds[(net['name'], engine, beam, bs)]['ratio_in_engine']:.2f}x"
                                            for beam in BEAMS for bs in BATCH_SIZES]]
            for net in nets[1:] for engine in net["engines"]]
    return console.markdown_table(header, rows) if markdown else format_table(header, rows)


def main(argv=None):
    args = parse_args(argv)
    console.quiet_third_party()
    torch.set_num_threads(1)
    args.work = args.work or os.path.join(args.study_dir, "deploy")
    os.makedirs(args.work, exist_ok=True)
    data = os.path.join(args.study_dir, "data-bin")
    deploy.require_ctranslate2()
    names = args.networks.split(",")
    nets = [prepare(args, name, data) for name in [REFERENCE[0]] + [n for n in names if n != REFERENCE[0]]]

    task = nets[0]["engines"]["fairseq"]["engine"][4].task
    task.load_dataset("test")
    dataset = task.dataset("test")
    order = [int(i) for i in dataset.ordered_indices()]  # by length, as fairseq-generate batches
    position = {i: k for k, i in enumerate(order)}
    scored = [i for i in order if args.bleu_sentences is None or i < args.bleu_sentences]
    test = batches(dataset, task.source_dictionary, scored, 32, MAX_LEN_A, MAX_LEN_B)
    references = [task.target_dictionary.string(dataset[i]["target"], "subword_nmt", escape_unk=True)
                  for batch in test for i in batch.ids]

    bleus = {}
    for net in nets:
        for engine in net["engines"]:
            for beam in BEAMS:
                result = bleu_pass(net, engine, beam, test, references)
                reference = bleus.get((net["name"], "fairseq", beam))
                result["same"] = 1.0 if reference is None else statistics.mean(
                    a == b for a, b in zip(result["hypotheses"], reference["hypotheses"]))
                bleus[(net["name"], engine, beam)] = result
                check = ""
                if engine == "fairseq" and beam == 4 and args.bleu_sentences is None:
                    result["study_bleu"] = study_bleu(args, net["name"])
                    check = f" (the study's fairseq-generate: {result['study_bleu']})"
                print(f"{PROG}: {net['name']} {engine} beam {beam}: BLEU {result['bleu']:.2f}{check}", flush=True)

    fidelity = {}  # how far each CTranslate2 model's log-probabilities of the references are from fairseq's
    for net in nets:
        scores = {e: [x for batch in test for x in held["engine"][4].score(batch)] for e, held in net["engines"].items()}
        lengths = [len(t) + 1 for batch in test for t in batch.targets]
        for engine in scores:
            if engine != "fairseq":
                bits = [abs(c - f) / math.log(2) / n for c, f, n in zip(scores[engine], scores["fairseq"], lengths)]
                fidelity[(net["name"], engine)] = statistics.mean(bits)
                print(f"{PROG}: {net['name']} {engine}: log-probabilities of the references "
                      f"{fidelity[(net['name'], engine)]:.2g} bits per token from fairseq's (mean)", flush=True)

    rng = random.Random(0)
    sample = sorted(rng.sample(range(len(dataset)), min(args.timing_sentences, len(dataset))), key=position.get)
    one_by_one = sample[:: max(1, len(sample) // args.timing_sentences_bs1)][: args.timing_sentences_bs1]
    timing = {32: batches(dataset, task.source_dictionary, sample, 32, MAX_LEN_A, MAX_LEN_B),
              1: batches(dataset, task.source_dictionary, one_by_one, 1, MAX_LEN_A, MAX_LEN_B)}
    before = machine()
    speeds = time_cells(args, nets, timing)
    after = machine()

    print(table(nets, bleus, fidelity, speeds))
    print("\nAgainst the standard Transformer in the same engine (tokens/s, median over rounds):")
    print(in_engine_table(nets, speeds))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table(nets, bleus, fidelity, speeds, markdown=True) + "\n\n")
            f.write(in_engine_table(nets, speeds, markdown=True) + "\n")
        print(f"{PROG}: wrote {args.markdown}")
    if args.json:
        record = {
            "networks": {n["name"]: {"checkpoint": n["checkpoint"], "parameters": n["parameters"],
                                     "bytes": {e: h["bytes"] for e, h in n["engines"].items()}} for n in nets},
            "bleu": {"/".join(map(str, k)): {"bleu": v["bleu"], "same_as_fairseq": v["same"], "study_bleu": v.get("study_bleu")}
                     for k, v in bleus.items()},
            "log_prob_bits_per_token_from_fairseq": {"/".join(k): v for k, v in fidelity.items()},
            "speed": {"/".join(map(str, k)): v for k, v in speeds.items()},
            "settings": vars(args),
            "machine": {**before, "load_average_1min": [before["load_average_1min"], after["load_average_1min"]]},
        }
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
        print(f"{PROG}: wrote {args.json}")


if __name__ == "__main__":
    main()
