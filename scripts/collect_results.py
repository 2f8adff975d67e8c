#!/usr/bin/env python3
"""Print a table of the ATS or GaP paper from the runs of scripts/reproduce.py, beside the published one.

    python scripts/collect_results.py TABLE --runs runs/ [--seeds 1,2,3] [--plot bleu_vs_params.png]
        [--bleu tokenized|sacrebleu]

TABLE as for reproduce.py (ats-1a ... gap-9, or all). Each cell is the mean (sample std) over the seeds
of the BLEU of RUNS/RUN/seedN/generate-NETWORK.txt, next to the paper's number. BLEU conventions, as
the papers report them:

- ATS (Tables 1-2): fairseq's tokenized BLEU-4, computed from the H- and T- lines of fairseq-generate
  (BPE removed, the data's Moses tokenization kept), with sacrebleu's tokenize='none' and no smoothing:
  the n-gram counts of fairseq-score (fairseq's C scorer now and then counts a spurious match that
  depends on dictionary order; measured here: < 0.01 BLEU apart from fairseq-generate's BLEU4).
  WMT en-de outputs are compound-split first, as fairseq's examples/translation
  compound_split_bleu.sh does (perl -ple 's{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g' on hypotheses and
  references).
- GaP (Tables 4, 6, 8, 9): detokenized SacreBLEU (13a, with its signature): the D- (hypothesis) and T-
  (reference) lines detokenized with sacremoses' MosesDetokenizer. The reference is the detokenized
  test side of the binarized data, not the raw newstest file (close to it, not byte-identical).

A cell without output for some seed (no generate file, or one cut short before fairseq-generate's final
"Generate ... BLEU" line) is reported in the table ("missing (0/3 seeds)", or the mean of the seeds
that exist marked "[2/3 seeds]") and listed below it; nothing is dropped silently.

--plot draws BLEU against parameters: the core and the full network (the full network of a low-rank
run counted as the standard Transformer it converts to), and the sparse models with their nonzero
parameters. Counts come from run.json (written by reproduce.py) or, failing that, from the checkpoint.
"""
import argparse
import json
import os
import re
import statistics
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from tables import DATASETS, RUNS, TABLES  # noqa: E402

PROG = "collect_results"
COMPOUND = re.compile(r"(\S)-(\S)")


def fail(message: str):
    sys.exit(f"{PROG}: error: {message}")


# --------------------------------------------------------------------------------------------- BLEU


@dataclass
class Output:
    hypotheses: List[str]  # H-: tokenized, BPE removed
    detokenized: List[str]  # D-: the same without --tokenizer (the collector detokenizes)
    references: List[str]  # T-


def read_generate(path: str) -> Optional[Output]:
    """The sentences of a fairseq-generate output, by sentence id; None if absent or cut short."""
    if not os.path.isfile(path):
        return None
    hyp, detok, ref = {}, {}, {}
    complete = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("Generate ") and "BLEU" in line:
                complete = True
            tag, _, rest = line.partition("\t")
            if len(tag) < 3 or tag[1] != "-" or not tag[2:].isdigit():
                continue
            i = int(tag[2:])
            if tag[0] == "T":
                ref[i] = rest
            elif tag[0] in "HD":
                (hyp if tag[0] == "H" else detok)[i] = rest.partition("\t")[2]  # after the score
    if not complete or not hyp or set(hyp) != set(ref):
        return None
    ids = sorted(hyp)
    return Output([hyp[i] for i in ids], [detok.get(i, hyp[i]) for i in ids], [ref[i] for i in ids])


def compound_split(line: str) -> str:
    return COMPOUND.sub(r"\1 ##AT##-##AT## \2", line)


def tokenized_bleu(out: Output, compound: bool) -> float:
    from sacrebleu.metrics import BLEU

    hyps, refs = out.hypotheses, out.references
    if compound:
        hyps, refs = [compound_split(h) for h in hyps], [compound_split(r) for r in refs]
    return BLEU(tokenize="none", smooth_method="none", force=True).corpus_score(hyps, [refs]).score


def sacrebleu_bleu(out: Output, lang: str) -> Tuple[float, str]:
    from sacrebleu.metrics import BLEU
    from sacremoses import MosesDetokenizer

    detok = MosesDetokenizer(lang=lang)
    hyps = [detok.detokenize(h.split()) for h in out.detokenized]
    refs = [detok.detokenize(r.split()) for r in out.references]
    metric = BLEU()
    return metric.corpus_score(hyps, [refs]).score, str(metric.get_signature())


def convention(bleu: str, compound: bool) -> str:
    if bleu == "tokenized":
        split = "; compound-split (##AT##-##AT##) as fairseq's compound_split_bleu.sh for WMT en-de"
        return ("fairseq's tokenized BLEU-4 (as the ATS paper): H-/T- lines, BPE removed, sacrebleu "
                "tokenize=none, no smoothing (fairseq-score's counts)" + (split if compound else ""))
    return ("detokenized SacreBLEU (as the GaP paper): D-/T- lines detokenized with sacremoses "
            "MosesDetokenizer; signature ")


# ---------------------------------------------------------------------------------------- parameters


def count_parameters(path: str, nonzero: bool = False) -> int:
    """Parameters of a fairseq checkpoint's model (tied tensors once); nonzero: only the nonzero ones
    (a GaP model's masked weights are exact zeros). Masks and buffers are not parameters."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    seen, total = set(), 0
    for name, value in state["model"].items():
        if not torch.is_tensor(value) or not value.is_floating_point():
            continue  # masks (bool), GaP's _extra_state (dicts)
        if name.endswith((".version", "._float_tensor")):
            continue
        key = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape))
        if key in seen:
            continue
        seen.add(key)
        total += int(torch.count_nonzero(value)) if nonzero else value.numel()
    return total


# ------------------------------------------------------------------------------------------ collect


@dataclass
class CellResult:
    scores: Dict[int, float] = field(default_factory=dict)  # seed -> BLEU
    missing: List[int] = field(default_factory=list)  # seeds without (complete) output
    parameters: Optional[int] = None
    signature: Optional[str] = None
    smoke: bool = False


def _record(directory: str) -> dict:
    try:
        with open(os.path.join(directory, "run.json")) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _checkpoint_parameters(run, directory: str, network: str) -> Optional[int]:
    from reproduce import generation_checkpoint

    path = generation_checkpoint(run, directory)
    # an ATS checkpoint holds the super-network: its core and merged sizes are in run.json (the training log)
    if network == "core" or run.method == "ats" or not os.path.isfile(path):
        return None
    return count_parameters(path, nonzero=network == "sparse")


def collect_cell(runs_dir: str, cell, seeds: List[int], bleu: str) -> CellResult:
    run = RUNS[cell.run]
    result = CellResult()
    for seed in seeds:
        directory = os.path.join(runs_dir, run.id, f"seed{seed}")
        out = read_generate(os.path.join(directory, f"generate-{cell.network}.txt"))
        if out is None:
            result.missing.append(seed)
            continue
        record = _record(directory)
        result.smoke = result.smoke or record.get("smoke", False)
        lang = record.get("target_lang", DATASETS[run.dataset].target)
        if bleu == "tokenized":
            result.scores[seed] = tokenized_bleu(out, compound=lang == "de")
        else:
            result.scores[seed], result.signature = sacrebleu_bleu(out, lang)
        if result.parameters is None:
            result.parameters = record.get("parameters", {}).get(cell.network)
            if result.parameters is None:
                result.parameters = _checkpoint_parameters(run, directory, cell.network)
    return result


def fmt_scores(result: CellResult, n_expected: int) -> str:
    n = len(result.scores)
    if n == 0:
        return f"missing (0/{n_expected} seeds)"
    values = list(result.scores.values())
    text = f"{statistics.mean(values):.2f}" + (f" ({statistics.stdev(values):.2f})" if n > 1 else "")
    return text + (f" [{n}/{n_expected} seeds]" if result.missing else "")


def collect_table(name: str, runs_dir: str, seeds: List[int], bleu: Optional[str] = None):
    table = TABLES[name]
    bleu = bleu or table.bleu
    by_cell: Dict[Tuple[str, str], CellResult] = {}  # a cell repeated across columns is read once
    results = {}
    for row in table.rows:
        for column, cell in row.cells.items():
            key = (cell.run, cell.network)
            if key not in by_cell:
                by_cell[key] = collect_cell(runs_dir, cell, seeds, bleu)
            results[row.key, column] = by_cell[key]
    return table, bleu, results


def format_table(table, bleu: str, results, seeds: List[int]) -> str:
    n = len(seeds)
    results_list = list(results.values())
    compound = bleu == "tokenized" and DATASETS[table.dataset].target == "de" and not any(
        r.smoke for r in results_list)
    signature = next((r.signature for r in results_list if r.signature), "(no output yet)")
    lines = [table.title,
             "BLEU: " + convention(bleu, compound) + (signature if bleu == "sacrebleu" else ""),
             f"ours: mean (sample std) over seeds {','.join(map(str, seeds))}; paper: as published"]
    if any(r.smoke for r in results_list):
        lines.append("SMOKE RUNS (tiny settings on the bundled sample): the numbers only show the pipeline")
    width = max(len(r.label) for r in table.rows) + 2
    cellw = max(26, max((len(fmt_scores(r, n)) for r in results_list), default=0) + 2)
    paperw = 14
    lines.append("".join([" " * width] + [f"{c:<{cellw + paperw}}" for c in table.columns]).rstrip())
    lines.append("".join([f"{'':<{width}}"] + [f"{'ours':<{cellw}}{'paper':<{paperw}}" for _ in table.columns])
                 .rstrip())
    missing = {}
    for row in table.rows:
        parts = [f"{row.label:<{width}}"]
        for column in table.columns:
            cell = row.cells.get(column)
            if cell is None:
                parts.append(f"{'-':<{cellw}}{'-':<{paperw}}")
                continue
            result = results[row.key, column]
            parts.append(f"{fmt_scores(result, n):<{cellw}}{cell.paper or '-':<{paperw}}")
            if result.missing:  # a cell spanning columns (prune-from-dense over kappa) is listed once
                missing.setdefault((row.key, cell.run, cell.network), (row.label, [], cell, result))[1].append(column)
        lines.append("".join(parts).rstrip())
    for note in table.notes:
        lines.append(f"Note: {note}")
    distinct = len({(row.key, c.run, c.network) for row in table.rows for c in row.cells.values()})
    if missing:
        lines.append(f"\nMissing ({len(missing)} of {distinct} cells incomplete):")
        for label, columns, cell, result in missing.values():
            seeds_text = ", ".join(map(str, result.missing))
            lines.append(f"  {label} / {', '.join(columns)}: {n - len(result.missing)}/{n} seeds; no complete "
                         f"generate-{cell.network}.txt for seed {seeds_text} in {cell.run}/")
    else:
        lines.append(f"\nAll {distinct} cells complete ({n} seeds each).")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- plot


MARKERS = {"core": ("o", "core (sub-network)"), "full": ("s", "full network"), "sparse": ("^", "sparse (nonzero)")}


def plot(tables_results, path: str) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    drawn, labelled = 0, set()
    for table, _, results in tables_results:
        for row in table.rows:
            for column, cell in row.cells.items():
                result = results[row.key, column]
                if not result.scores or result.parameters is None:
                    continue
                values = list(result.scores.values())
                mean = statistics.mean(values)
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                marker, legend = MARKERS[cell.network]
                ax.errorbar(result.parameters, mean, yerr=std, fmt=marker, capsize=3,
                            color=f"C{list(MARKERS).index(cell.network)}",
                            label=None if cell.network in labelled else legend)
                labelled.add(cell.network)
                ax.annotate(f"{row.key}" + ("" if len(table.columns) < 3 else f" {column}"),
                            (result.parameters, mean), textcoords="offset points", xytext=(4, 4), fontsize=7)
                drawn += 1
    if drawn:
        ax.set_xscale("log")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no results with parameter counts yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("parameters (sparse models: nonzero)")
    ax.set_ylabel("BLEU")
    ax.set_title(", ".join(t.name for t, _, _ in tables_results) + ": BLEU against parameters")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("table", help=f"one of {', '.join(TABLES)}, or all")
    parser.add_argument("--runs", default="runs", help="reproduce.py's --output-dir (default runs/)")
    parser.add_argument("--seeds", default="1,2,3", help="the seeds each cell should have (default 1,2,3)")
    parser.add_argument("--plot", metavar="PNG", help="draw BLEU against parameter count into this file")
    parser.add_argument("--bleu", choices=["tokenized", "sacrebleu"], help="override the table's convention")
    args = parser.parse_args(argv)
    if args.table != "all" and args.table not in TABLES:
        fail(f"unknown table {args.table!r}: choose from {', '.join(TABLES)}, all")
    if not os.path.isdir(args.runs):
        fail(f"no runs directory {args.runs} (reproduce.py --output-dir)")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        fail(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not seeds:
        fail("--seeds is empty")
    names = list(TABLES) if args.table == "all" else [args.table]
    collected = [collect_table(name, args.runs, seeds, args.bleu) for name in names]
    print("\n\n".join(format_table(t, bleu, results, seeds) for t, bleu, results in collected))
    if args.plot:
        drawn = plot(collected, args.plot)
        print(f"\nplot: {args.plot} ({drawn} points)")


if __name__ == "__main__":
    main()
