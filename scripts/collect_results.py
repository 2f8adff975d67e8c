#!/usr/bin/env python3
"""Print a table of the ATS or GaP paper from the runs of scripts/reproduce.py, beside the published one.

    python scripts/collect_results.py TABLE --runs runs/ [--seeds 1,2,3] [--plot bleu_vs_params.png]
        [--bleu tokenized|sacrebleu]

TABLE as for reproduce.py (ats-1a ... gap-9, or all). Each cell is the mean (sample std) over the seeds
of the BLEU of RUNS/RUN/seedN/generate-NETWORK.txt, next to the paper's number. BLEU conventions, as
the papers report them (scripts/harness/bleu.py):

- ATS (Tables 1-2): fairseq's tokenized BLEU-4 from the H- and T- lines of fairseq-generate (BPE
  removed, the data's Moses tokenization kept; fairseq-score's counts). WMT en-de outputs are
  compound-split first, as fairseq's examples/translation compound_split_bleu.sh does.
- GaP (Tables 4, 6, 8, 9): detokenized SacreBLEU (13a, with its signature) of the D- and T- lines
  detokenized with sacremoses' MosesDetokenizer, cased (the paper says SacreBLEU) and uncased (the
  official code's BLEU: sacrebleu -lc), both printed. The reference is the detokenized test side of the
  binarized data, not the raw newstest file (close to it, not byte-identical).

A cell without output for some seed (no generate file, or one cut short before fairseq-generate's final
"Generate ... BLEU" line) is reported in the table ("missing (0/3 seeds)", or the mean of the seeds
that exist marked "[2/3 seeds]") and listed below it; nothing is dropped silently.

--plot draws BLEU against parameters: the core and the full network (the full network of a low-rank
run counted as the standard Transformer it converts to), and the sparse models with their nonzero
parameters. Counts come from run.json (written by reproduce.py) or, failing that, from the checkpoint.
"""
import argparse
import os
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from harness import bleu, plots, runs
from harness.console import fail, format_table, mean_std, seed_list
from harness.papers.pipeline import checkpoint_parameters, generate_output, record_path
from harness.papers.tables import DATASETS, RUNS, TABLES

PROG = "collect_results"


@dataclass
class CellResult:
    scores: Dict[int, float] = field(default_factory=dict)  # seed -> BLEU
    missing: List[int] = field(default_factory=list)  # seeds without (complete) output
    parameters: Optional[int] = None
    signature: Optional[str] = None
    smoke: bool = False


def collect_cell(runs_dir: str, cell, seeds: List[int], convention: str) -> CellResult:
    run = RUNS[cell.run]
    result = CellResult()
    for seed in seeds:
        directory = runs.run_dir(runs_dir, run.id, seed)
        record = runs.read_record(record_path(directory))
        lang = record.get("target_lang", DATASETS[run.dataset].target)
        score = bleu.score(generate_output(directory, cell.network), convention, lang)
        if score is None:
            result.missing.append(seed)
            continue
        result.smoke = result.smoke or record.get("smoke", False)
        result.scores[seed], result.signature = score.bleu, score.signature
        if result.parameters is None:
            result.parameters = record.get("parameters", {}).get(cell.network)
            if result.parameters is None:
                result.parameters = checkpoint_parameters(run, directory).get(cell.network)
    return result


def fmt_scores(result: CellResult, n_expected: int) -> str:
    n = len(result.scores)
    if n == 0:
        return f"missing (0/{n_expected} seeds)"
    text = mean_std(list(result.scores.values()))
    return text + (f" [{n}/{n_expected} seeds]" if result.missing else "")


def conventions(table, chosen: Optional[str]) -> List[str]:
    """The BLEU conventions a table is printed in: ``chosen``, or the paper's (GaP: cased and uncased SacreBLEU)."""
    if chosen:
        return [chosen]
    return ["sacrebleu", "sacrebleu-uncased"] if table.bleu == "sacrebleu" else [table.bleu]


def collect_table(name: str, runs_dir: str, seeds: List[int], chosen: Optional[str] = None):
    """(table, conventions, {convention: {(row, column): CellResult}})."""
    table = TABLES[name]
    results = {}
    for convention in conventions(table, chosen):
        by_cell: Dict[Tuple[str, str], CellResult] = {}  # a cell repeated across columns is read once
        results[convention] = {}
        for row in table.rows:
            for column, cell in row.cells.items():
                key = (cell.run, cell.network)
                if key not in by_cell:
                    by_cell[key] = collect_cell(runs_dir, cell, seeds, convention)
                results[convention][row.key, column] = by_cell[key]
    return table, conventions(table, chosen), results


def render(table, used: List[str], results, seeds: List[int]) -> str:
    n = len(seeds)
    first = results[used[0]]
    smoke = any(r.smoke for r in first.values())
    compound = used[0] == "tokenized" and DATASETS[table.dataset].target == "de" and not smoke
    lines = [table.title]
    for convention in used:
        signature = next((r.signature for r in results[convention].values() if r.signature), "(no output yet)")
        lines.append(f"BLEU ({convention}): " + bleu.describe(convention, compound)
                     + (signature if convention != "tokenized" else ""))
    lines.append(f"ours: mean (sample std) over seeds {','.join(map(str, seeds))}; paper: as published")
    if smoke:
        lines.append("SMOKE RUNS (tiny settings on the bundled sample): the numbers only show the pipeline")
    names = {"sacrebleu": "cased", "sacrebleu-uncased": "uncased"}
    header = [""] + [text for column in table.columns
                     for text in [f"{column}: ours" + (f" {names[c]}" if len(used) > 1 else "") for c in used] + ["paper"]]
    rows, missing = [], {}
    for row in table.rows:
        cells = [row.label]
        for column in table.columns:
            cell = row.cells.get(column)
            if cell is None:
                cells += ["-"] * (len(used) + 1)
                continue
            cells += [fmt_scores(results[c][row.key, column], n) for c in used] + [cell.paper or "-"]
            result = first[row.key, column]
            if result.missing:  # a cell spanning columns (prune-from-dense over kappa) is listed once
                missing.setdefault((row.key, cell.run, cell.network), (row.label, [], cell, result))[1].append(column)
        rows.append(cells)
    lines.append(format_table(header, rows))
    lines += [f"Note: {note}" for note in table.notes]
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


MARKERS = {"core": ("o", "core (sub-network)"), "full": ("s", "full network"), "sparse": ("^", "sparse (nonzero)")}


def plot(tables_results, path: str) -> int:
    points, labelled = [], set()
    for table, used, results in tables_results:
        for row in table.rows:
            for column, cell in row.cells.items():
                result = results[used[0]][row.key, column]
                if not result.scores or result.parameters is None:
                    continue
                values = list(result.scores.values())
                mean = statistics.mean(values)
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                marker, legend = MARKERS[cell.network]
                points.append(plots.Point(result.parameters, mean, std, marker, f"C{list(MARKERS).index(cell.network)}",
                                          None if cell.network in labelled else legend,
                                          f"{row.key}" + ("" if len(table.columns) < 3 else f" {column}")))
                labelled.add(cell.network)
    plots.bleu_against_parameters(path, points, ", ".join(t.name for t, _, _ in tables_results)
                                  + ": BLEU against parameters", "parameters (sparse models: nonzero)", "BLEU",
                                  (8, 5.5), legend={}, empty="no results with parameter counts yet")
    return len(points)


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("table", help=f"one of {', '.join(TABLES)}, or all")
    parser.add_argument("--runs", default="runs", help="reproduce.py's --output-dir (default runs/)")
    parser.add_argument("--seeds", type=seed_list, default="1,2,3",
                        help="the seeds each cell should have (default 1,2,3)")
    parser.add_argument("--plot", metavar="PNG", help="draw BLEU against parameter count into this file")
    parser.add_argument("--bleu", choices=bleu.CONVENTIONS, help="override the table's convention")
    args = parser.parse_args(argv)
    if args.table != "all" and args.table not in TABLES:
        fail(PROG, f"unknown table {args.table!r}: choose from {', '.join(TABLES)}, all")
    if not os.path.isdir(args.runs):
        fail(PROG, f"no runs directory {args.runs} (reproduce.py --output-dir)")
    names = list(TABLES) if args.table == "all" else [args.table]
    collected = [collect_table(name, args.runs, args.seeds, args.bleu) for name in names]
    print("\n\n".join(render(t, used, results, args.seeds) for t, used, results in collected))
    if args.plot:
        drawn = plot(collected, args.plot)
        print(f"\nplot: {args.plot} ({drawn} points)")


if __name__ == "__main__":
    main()
