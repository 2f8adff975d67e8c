"""The GaP ladder's report: OUTPUT/ladder.md (tables), OUTPUT/ladder.png (C-GaP minus prune-from-dense against
the step length; at the longest rung, every network's test BLEU and valid loss against the updates it had) and
OUTPUT/ladder.json (every number), from the runs of scripts/gap_ladder.py.

Test BLEU as the study's (tokenized BLEU-4, lowercased, beam 4, BPE removed) of each network's checkpoint
at its last update; valid loss: the validation of its training's log at that update (bits per token,
label-smoothed). A cell of a run not finished yet is "-". Per step of every C-GaP run: harness/ladder/steps.py.
Every seed that the runs and records hold is reported: a cell is the mean over its seeds, "[n]" after it when
there are n > 1 (each number over the seeds that have it); a difference, the mean of the differences over the
seeds that both cells have.

Each seed's numbers come from its runs in OUTPUT; a run whose directory is gone, from its record
(``recorded`` DIR: harness/ladder/records.py); and a rung (or the control) with no number yet, or a cell (or the
steps) of a rung measured in part, from a ladder.json written earlier (``recorded`` FILE: docs/gap-ladder.json
keeps the repository's, of runs whose directories were lost). The tables mark each row or cell taken from a
record and name the record and the measurement it keeps.
"""
import glob
import json
import os
import re
import statistics
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from harness import plots, runs
from harness.console import markdown_table
from harness.ladder import design, records
from harness.ladder.records import Runs

CELLS = ("dense", "prune", "cgap", "cgap2", "random", "dense-matched", "matched", "matched-ft")  # a rung's networks
CONTROL = ("one process", "a process per step")
CELL_NAMES = {"dense": "dense at D", "prune": "prune-from-dense", "cgap": "C-GaP, 1 round",
              "cgap2": "C-GaP, 2 rounds", "random": "random mask", "dense-matched": "dense at half C-GaP's budget",
              "matched": "prune-from-dense at C-GaP's budget, half and half",
              "matched-ft": "prune-from-dense at C-GaP's budget, fine-tuned on", "steps": "the steps",
              "one process": "the control in one process", "a process per step": "the control as processes"}


def _pair(runs_of: Runs, run: str, name: str, log: str, updates: int):
    """(test BLEU, valid loss) of a network, and the records they came from."""
    (score, a), (loss, b) = runs_of.bleu(run, name), runs_of.valid_at(run, log, updates)
    return (score, loss), {s for s in (a, b) if s}


def _shifted(points, by: int, until: Optional[int] = None) -> List[List[float]]:
    return [[u + by, v] for u, v in points if until is None or u <= until]


def measure(output: str, rungs: List[int], seed: int, control: Tuple[int, int, int], updates: int,
            recorded: Dict) -> dict:
    """Every number of one seed (None where not measured yet): per rung, each network's (test BLEU, valid
    loss), the C-GaP run's steps and each network's valid-loss curve against the updates it had (the dense
    part of prune-from-dense, C-GaP's steps before its fine-tune); the control's two C-GaP runs and its steps.
    A cell (or the steps) that a run's record gave is listed with the record in the entry's "recorded"."""
    _, control_step, finetune = control
    of = Runs(output, seed, recorded)
    out = {"seed": seed, "updates_per_epoch": of.updates_per_epoch("dense", "train"), "rungs": {}}
    for dense in rungs:
        n = design.step_length(dense)
        (half, rest), (_, longer) = design.matched_splits(dense)
        prune, cgap = f"prune-{dense}", f"cgap-{dense}"
        cells = {"dense": _pair(of, "dense", f"full-{dense}", "train", dense),
                 "prune": _pair(of, prune, "sparse", "train", dense),
                 "cgap": _pair(of, cgap, "sparse-finetune1", "finetune1", dense),
                 "cgap2": _pair(of, cgap, "sparse-finetune2", "finetune2", dense),
                 "random": _pair(of, "random-mask", f"sparse-{2 * dense}", "train", 2 * dense),
                 "dense-matched": _pair(of, "dense", f"full-{half}", "train", half),
                 "matched": _pair(of, f"prune-matched-{dense}", "sparse", "train", rest),
                 "matched-ft": _pair(of, prune, f"sparse-{longer}", "train", longer)}
        steps, steps_source = of.steps(cgap)
        entry = {c: value for c, (value, _) in cells.items()} | {"steps": steps}
        step_logs = sorted((int(k[len("train-step"):]), k) for k in of.logs(cgap) if k.startswith("train-step"))
        entry["curves"] = {k: v for k, v in {
            "dense": _shifted(of.curve("dense", "train")[0], 0, half),
            "prune": _shifted(of.curve(prune, "train")[0], dense, longer),
            "matched": _shifted(of.curve(f"prune-matched-{dense}", "train")[0], half, rest),
            "cgap-steps": [p for k, log in step_logs for p in _shifted(of.curve(cgap, log)[0], k * n)],
            "cgap-finetune1": _shifted(of.curve(cgap, "finetune1")[0], (1 + design.KAPPA) * n),
            "cgap-finetune2": _shifted(of.curve(cgap, "finetune2")[0], (1 + 2 * design.KAPPA) * n),
            "random": _shifted(of.curve("random-mask", "train")[0], 0, 2 * dense)}.items() if v}
        sources = {c: s for c, (_, s) in cells.items()} | {"steps": {steps_source} - {None}}
        _record_sources(entry, sources)
        out["rungs"][str(dense)] = entry
    steps_run = f"cgap-{control_step}-steps"
    cells = {"one process": _pair(of, "cgap", "sparse", "train", updates),
             "a process per step": _pair(of, steps_run, "sparse-finetune", "finetune", finetune)}
    steps, steps_source = of.steps(steps_run)
    out["control"] = {c: value for c, (value, _) in cells.items()} | {"steps": steps}
    _record_sources(out["control"], {c: s for c, (_, s) in cells.items()} | {"steps": {steps_source} - {None}})
    return out


def _record_sources(entry: dict, sources: Dict[str, set]):
    by_source = {}
    for cell, found in sources.items():
        for source in sorted(found):
            by_source.setdefault(source, []).append(cell)
    if by_source:
        entry["recorded"] = [{"cells": cells, "source": source} for source, cells in by_source.items()]


def _has(entry: dict, cell: str) -> bool:
    if cell == "steps":
        return bool(entry.get("steps"))
    return any(x is not None for x in entry.get(cell) or ())


def _measured(entry: dict, cells) -> bool:
    return any(_has(entry, c) for c in (*cells, "steps"))


def load_record(path: str) -> Dict[int, dict]:
    """A ladder.json written by ``write`` (or by the ladder of one seed before it: docs/gap-ladder.json), as
    seed -> that seed's numbers; ValueError names what is wrong with it."""
    try:
        with open(path) as f:
            record = json.load(f)
        by_seed = ({int(s): e for s, e in record["by_seed"].items()} if "by_seed" in record
                   else {int(record.get("seed", 1)): record})
        for seeded in by_seed.values():
            for entry in [*seeded["rungs"].values(), seeded["control"]]:
                if not entry.get("source"):
                    raise ValueError("an entry without its source")
                for recorded in entry.get("recorded", []):
                    if not recorded.get("source") or not recorded["cells"] or \
                            not set(recorded["cells"]) <= set(CELL_NAMES):
                        raise ValueError(f"a recorded item without its source or its cells: {recorded}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # ValueError: JSON too
        raise ValueError(f"not a ladder record ({e})") from None
    return by_seed


def _source_of(entry: dict, cell: str) -> str:
    """Where a rung's cell (or its "steps") was measured: its own "recorded" list, else its source."""
    return next((r["source"] for r in entry.get("recorded", []) if cell in r["cells"]), entry["source"])


def merge(measured: dict, record: Optional[dict], source: str) -> Tuple[dict, set]:
    """``measured`` (one seed's) with its source, and from the record (the same seed's): the rungs and control
    where ``measured`` has no number, and of a rung measured in part, each cell (and the steps) it has no number
    for, listed with their source in the rung's "recorded"; and the keys taken whole from the record (rungs as
    D, "control")."""
    out, taken = json.loads(json.dumps(measured)), set()  # tuples as lists, as in a record
    for entry in [*out["rungs"].values(), out["control"]]:
        entry.setdefault("source", source)
    if record is None:
        return out, taken
    for dense, entry in record["rungs"].items():
        mine = out["rungs"].get(dense)
        if mine is None or not _measured(mine, CELLS):
            out["rungs"][dense] = entry
            taken.add(dense)
            continue
        by_source = {}
        for cell in (*CELLS, "steps"):
            if not _has(mine, cell) and _has(entry, cell):
                mine[cell] = entry[cell]
                by_source.setdefault(_source_of(entry, cell), []).append(cell)
        for curve, points in (entry.get("curves") or {}).items():
            mine.setdefault("curves", {}).setdefault(curve, points)
        if by_source:
            mine["recorded"] = mine.get("recorded", []) + [{"cells": cells, "source": where}
                                                           for where, cells in by_source.items()]
    if not _measured(out["control"], CONTROL):
        out["control"] = record["control"]
        taken.add("control")
    out["updates_per_epoch"] = out["updates_per_epoch"] or record.get("updates_per_epoch")
    out["rungs"] = dict(sorted(out["rungs"].items(), key=lambda kv: int(kv[0])))
    return out, taken


# ------------------------------------------------------------------------------------------ over seeds
def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    found = [v for v in values if v is not None]
    return statistics.mean(found) if found else None


def _over_seeds(pairs: List[Sequence]) -> Tuple[Optional[float], Optional[float], int]:
    """(mean test BLEU, mean valid loss, seeds with a number) of one cell's per-seed pairs."""
    pairs = [p for p in pairs if p is not None and any(x is not None for x in p)]
    return _mean([p[0] for p in pairs]), _mean([p[1] for p in pairs]), len(pairs)


def _difference(a: List[Sequence], b: List[Sequence]) -> Tuple[Optional[float], Optional[float], int]:
    """The mean over the seeds of a minus b, each number over the seeds that have it in both."""
    both = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    diffs = [tuple(None if u is None or v is None else u - v for u, v in zip(x, y)) for x, y in both]
    return _over_seeds(diffs)


def _cell(value: Tuple, sign: str = "") -> str:
    """``value``: (test BLEU, valid loss, seeds); ``sign="+"``: a difference."""
    score, loss, n = value
    if score is None and loss is None:
        return "-"
    return (f"{'-' if score is None else f'{score:{sign}.2f}'} / {'-' if loss is None else f'{loss:{sign}.3f}'}"
            + (f" [{n}]" if n > 1 else ""))


def _mean_curve(curves: List[List]) -> List[Tuple[float, float]]:
    by_update: Dict[float, List[float]] = {}
    for curve in curves:
        for u, v in curve:
            by_update.setdefault(u, []).append(v)
    return [(u, statistics.mean(vs)) for u, vs in sorted(by_update.items())]


def seeds_of(output: str, recorded_runs: Dict, recorded_ladders: List[Dict[int, dict]]) -> List[int]:
    """Every seed with a run in OUTPUT (RUN/seedN/) or a record."""
    found = {int(m.group(1)) for p in glob.glob(os.path.join(output, "*", "seed*"))
             if os.path.isdir(p) and (m := re.fullmatch(r"seed(\d+)", os.path.basename(p)))}
    return sorted(found | {seed for _, seed in recorded_runs} | {s for ladder in recorded_ladders for s in ladder})


def _budgets(dense: int) -> Dict[str, int]:
    """The updates each network of a rung had, from scratch."""
    n = design.step_length(dense)
    (half, _), _ = design.matched_splits(dense)
    total = design.matched_budget(dense)
    return {"dense": dense, "dense-matched": half, "prune": 2 * dense, "matched": total, "matched-ft": total,
            "cgap": (1 + design.KAPPA) * n + dense, "cgap2": total, "random": 2 * dense}


def collect(output: str, rungs: List[int], control: Tuple[int, int, int], updates: int,
            recorded: Sequence[str]) -> Tuple[Dict[int, dict], Dict[int, set]]:
    """Every seed's numbers (``measure``, then ``merge`` with each ladder.json of ``recorded``), and per seed the
    keys its ladder.json records gave whole."""
    source = f"measured in {os.path.basename(os.path.normpath(output))}/, report of {time.strftime('%Y-%m-%d')}"
    run_records = {k: v for path in recorded if os.path.isdir(path) for k, v in records.read(path).items()}
    ladders = [load_record(path) for path in recorded if not os.path.isdir(path)]
    by_seed, taken = {}, {}
    for seed in seeds_of(output, run_records, ladders):
        by_seed[seed], taken[seed] = merge(measure(output, rungs, seed, control, updates, run_records), None, source)
        for ladder in ladders:
            if seed in ladder:
                by_seed[seed], more = merge(by_seed[seed], ladder[seed], source)
                taken[seed] |= more
    return by_seed, taken


@dataclass
class Rung:
    """A rung over the seeds with a number at it (``entries``: seed -> its numbers): the cells a record gave
    (``marked``), and whether every seed's came whole from a ladder.json (``whole``: the row is marked)."""
    dense: int
    entries: Dict[int, dict]
    marked: set
    whole: bool

    def values(self, cell: str) -> List[Optional[tuple]]:
        """Each seed's (test BLEU, valid loss), in the order of ``entries``."""
        return [tuple(e[cell]) if e.get(cell) is not None else None for e in self.entries.values()]

    def mean(self, cell: str) -> Tuple[Optional[float], Optional[float], int]:
        return _over_seeds(self.values(cell))

    def shown(self, cell: str) -> str:
        return _cell(self.mean(cell)) + ("*" if cell in self.marked and not self.whole else "")

    def minus(self, cell: str, other: str) -> Tuple[Optional[float], Optional[float], int]:
        return _difference(self.values(cell), self.values(other))


def write(output: str, rungs: List[int], control: Tuple[int, int, int], updates: int,
          recorded: Sequence[str] = ()) -> List[str]:
    """``control``: the control's C-GaP (steps, updates per step, fine-tune updates), ``updates`` in all;
    ``recorded``: run records (directories: harness/ladder/records.py) and ladder.json files, for the runs that
    are not in ``output``."""
    steps_k, control_step, finetune = control
    by_seed, taken = collect(output, rungs, control, updates, recorded)
    seeds, several = list(by_seed), len(by_seed) > 1
    keys = sorted({*map(str, rungs), *(k for r in by_seed.values() for k in r["rungs"])}, key=int)
    epoch = next((r["updates_per_epoch"] for r in by_seed.values() if r["updates_per_epoch"]), None)
    mean = {"seeds": seeds, "updates_per_epoch": epoch, "rungs": {}, "control": {}}
    from_record: Dict[str, List[str]] = {}

    def note(where: str, what: str, seed: int):
        from_record.setdefault(where, []).append(what + (f" (seed {seed})" if several else ""))

    rows, points, step_tables, ladder = [], [], [], []
    for key in keys:
        dense, n = int(key), design.step_length(int(key))
        entries = {s: r["rungs"][key] for s, r in by_seed.items()  # the seeds with a number here
                   if key in r["rungs"] and _measured(r["rungs"][key], CELLS)}
        marked = set()
        for seed, e in entries.items():
            if key in taken[seed]:
                marked |= {c for c in (*CELLS, "steps") if _has(e, c)}
                note(e["source"], f"D = {dense}", seed)
            for item in e.get("recorded", []):
                marked |= set(item["cells"])
                note(item["source"], f"D = {dense}'s {', '.join(CELL_NAMES[c] for c in item['cells'])}", seed)
        rung = Rung(dense, entries, marked, bool(entries) and all(key in taken[s] for s in entries))
        ladder.append(rung)
        mean["rungs"][key] = {c: list(rung.mean(c)[:2]) for c in CELLS} | {
            "seeds": {c: [s for s, e in entries.items() if _has(e, c)] for c in CELLS}}
        ahead, ahead2, floor = rung.minus("cgap", "prune"), rung.minus("cgap2", "prune"), rung.minus("random", "prune")
        epochs = n / epoch if epoch else None
        rows.append([f"{dense}{'*' if rung.whole else ''}", f"{n}" + (f" ({epochs:.2f})" if epochs else ""),
                     rung.shown("dense"), rung.shown("prune"), rung.shown("cgap"), _cell(ahead, "+"),
                     rung.shown("cgap2"), _cell(ahead2, "+"), rung.shown("random")])
        points.append((epochs or n, ahead, ahead2, floor))
        for seed, e in entries.items():
            if e.get("steps"):
                step_mark = "*" if rung.whole or "steps" in marked else ""
                step_tables.append((f"C-GaP, D = {dense}{step_mark} (N = {n})" + (f", seed {seed}" if several else ""),
                                    e["steps"]))
    controls = {s: r["control"] for s, r in by_seed.items() if _measured(r["control"], CONTROL)}
    control_whole = bool(controls) and all("control" in taken[s] for s in controls)
    control_marked = set()
    for seed, c in controls.items():
        if "control" in taken[seed]:
            note(c["source"], "the control", seed)
            control_marked |= set(CONTROL)
        for item in c.get("recorded", []):
            control_marked |= set(item["cells"])
            note(item["source"], ", ".join(CELL_NAMES[x] for x in item["cells"]), seed)
    control_values = {k: _over_seeds([tuple(c[k]) for c in controls.values()]) for k in CONTROL}
    mean["control"] = {k: list(control_values[k][:2]) for k in CONTROL}
    for seed, c in controls.items():
        if c.get("steps"):
            step_tables.append((f"C-GaP as processes, N = {control_step} (the control{'*' if control_whole else ''})"
                                + (f", seed {seed}" if several else ""), c["steps"]))
    seed_text = (f"seeds {', '.join(map(str, seeds))}: each cell the mean over the seeds that have it, [n] after it "
                 "when n > 1 (a difference: over the seeds both cells have)" if several
                 else f"seed {seeds[0]}" if seeds else "no seed measured yet")
    lines = [
        "# The GaP ladder: C-GaP against prune-from-dense as the steps grow longer",
        "",
        f"The study's model and recipe, {seed_text}, 90% sparsity, kappa = 3. For each dense pre-training length D: "
        "prune-from-dense (D dense updates, one-shot magnitude prune, D fine-tune updates); C-GaP with steps of "
        "N = D / 4 updates, each its own process, a fine-tune of D updates after the first round (1 + kappa "
        "steps: 2 D in all, prune-from-dense's budget) and, at the longest D, after the second (the paper's "
        "extra budget); a fixed random mask trained 2 D updates. "
        + (f"An epoch is {epoch} updates. " if epoch else "")
        + "Each cell: test BLEU / valid loss of the checkpoint at the network's last update.",
        "",
        markdown_table(["D", "N (epochs)", "dense at D", "prune-from-dense", "C-GaP, 1 round", "C-GaP - prune",
                        "C-GaP, 2 rounds", "2 rounds - prune", "random mask, 2 D"], rows),
        "",
    ]
    matched = [rung for rung in ladder if any(_has(e, c) for e in rung.entries.values()
                                              for c in ("cgap2", "dense-matched", "matched", "matched-ft"))]
    for rung in matched:
        lines += _matched_table(rung) + [""]
    lines += [
        f"The control, the study's C-GaP ({steps_k} steps of {control_step} updates, a {finetune}-update fine-tune): "
        "in one process "
        "(Adam moments and step counts carried across steps, but for the elements a step changes) against a "
        "process per step (fresh ones; the same data order and learning rate):",
        "",
        markdown_table(["C-GaP", "test BLEU / valid loss"],
                       [[k + ("*" if control_whole else ""),
                         _cell(control_values[k]) + ("*" if k in control_marked and not control_whole else "")]
                        for k in CONTROL]),
        "",
    ]
    if from_record:
        lines += [f"\\* From the record{'s' if len(recorded) > 1 else ''} {', '.join(recorded)}, their runs not in "
                  f"{output}: " + "; ".join(f"{', '.join(what)} ({where})" for where, what in from_record.items())
                  + ".", ""]
    for title, steps in step_tables:
        lines += [f"Per step, {title}: the share of the weights the end-of-step prune keeps in the grown partition "
                  "that the step grew; valid loss with the partition dense and after the prune:", "",
                  markdown_table(["step", "matrices", "grown share", "valid dense", "valid at S", "lost"],
                                 [[str(r["step"]), str(r["matrices"]), f"{r['grown_share']:.3f}",
                                   f"{r['valid_dense']:.3f}", f"{r['valid_at_s']:.3f}", f"{r['lost']:+.3f}"]
                                  for r in steps]), ""]
    path = os.path.join(output, "ladder.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    record = os.path.join(output, "ladder.json")
    runs.write_record(record, mean | {"by_seed": {str(s): r for s, r in by_seed.items()}})
    shown = (matched or ladder or [None])[-1]  # the longest rung with C-GaP's second round, else the longest
    return [path, record, plot(os.path.join(output, "ladder.png"), points, bool(epoch), shown)]


MATCHED_ROWS = (("dense", "dense at D"), ("dense-matched", "dense, trained on to half the budget"),
                ("prune", "prune-from-dense, D + D"), ("matched", "prune-from-dense, half and half"),
                ("matched-ft", "prune-from-dense, D + the rest (the one above trained on)"),
                ("cgap", "C-GaP, 1 round"), ("cgap2", "C-GaP, 2 rounds"), ("random", "random mask, 2 D"))
# each network's color and marker in the figure (a run's curve has its color)
STYLES = {"dense": ("black", "o"), "dense-matched": ("black", "s"), "prune": ("C5", "o"), "matched": ("C1", "s"),
          "matched-ft": ("C5", "s"), "cgap": ("C4", "o"), "cgap2": ("C4", "s"), "random": ("C7", "v")}


def _matched_table(rung: Rung) -> List[str]:
    """At a rung where C-GaP has its second round: every network beside it, with the updates each had."""
    dense = rung.dense
    n, budget = design.step_length(dense), _budgets(dense)
    (half, rest), (_, longer) = design.matched_splits(dense)
    rows = [[label, f"{budget[cell]:,}", rung.shown(cell),
             "" if cell == "cgap2" else _cell(rung.minus("cgap2", cell), "+")] for cell, label in MATCHED_ROWS]
    return [f"At C-GaP's budget with its second round, D = {dense}{'*' if rung.whole else ''}: {budget['cgap2']:,} "
            f"updates ({1 + 2 * design.KAPPA} steps of {n:,} and a {dense:,}-update fine-tune). Prune-from-dense is "
            f"given as many twice: in today's proportions, half dense, half fine-tune ({half:,} + {rest:,}: the dense "
            f"run trained on to {half:,}), and from the dense checkpoint at D with the rest as fine-tune ({dense:,} + "
            f"{longer:,}: the rung's prune-from-dense trained on). Updates: each network's, from scratch.", "",
            markdown_table(["network", "updates", "test BLEU / valid loss", "C-GaP, 2 rounds - it"], rows)]


CURVES = (("dense", "dense", "black", "-"), ("prune", "prune-from-dense, D + fine-tune", "C5", "-"),
          ("matched", "prune-from-dense, half + half", "C1", "-"), ("cgap-steps", "C-GaP steps (at S)", "C4", ":"),
          ("cgap-finetune1", "C-GaP fine-tune, 1 round", "C4", "--"),
          ("cgap-finetune2", "C-GaP fine-tune, 2 rounds", "C4", "-"), ("random", "random mask", "C7", "-"))


def plot(path: str, points, in_epochs: bool, rung: Optional[Rung]) -> str:
    """Top: C-GaP minus prune-from-dense by step length. Bottom, at ``rung``: each network's test BLEU, and its
    valid loss along its training, against the updates it had (means over the seeds)."""
    plt = plots.pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for i, (ax, what) in enumerate(zip(axes[0], ("test BLEU", "valid loss"))):
        for marker, label, k in (("o", "C-GaP, 1 round (equal budget)", 1), ("s", "C-GaP, 2 rounds (the paper's budget)", 2),
                                 ("v", "fixed random mask (equal budget)", 3)):
            xy = [(p[0], p[k][i]) for p in points if p[k][i] is not None]
            if xy:
                ax.plot(*zip(*xy), marker=marker, linestyle="-" if k == 1 else "none", label=label)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("C-GaP step length (" + ("epochs" if in_epochs else "updates") + ")")
        ax.set_ylabel(f"{what}: minus prune-from-dense's")
        ax.grid(True, alpha=0.3)
    if axes[0][0].get_legend_handles_labels()[0]:  # none before a rung is scored
        axes[0][0].legend(fontsize=7)
    bleu_ax, loss_ax = axes[1]
    if rung is not None:
        budget, curves = _budgets(rung.dense), [e.get("curves") or {} for e in rung.entries.values()]
        for cell, label in MATCHED_ROWS:
            score = rung.mean(cell)[0]
            if score is not None:
                color, marker = STYLES[cell]
                bleu_ax.plot([budget[cell]], [score], color=color, marker=marker, linestyle="none", label=label)
        for key, label, color, style in CURVES:
            curve = _mean_curve([c[key] for c in curves if c.get(key)])
            if curve:
                loss_ax.plot(*zip(*curve), color=color, linestyle=style, linewidth=1, label=label)
        for ax in (bleu_ax, loss_ax):
            ax.set_xlabel(f"updates from scratch, D = {rung.dense}")
            ax.grid(True, alpha=0.3)
        bleu_ax.set_ylabel("test BLEU (mean over seeds)")
        loss_ax.set_ylabel("valid loss (bits, label-smoothed; mean over seeds)")
    for ax in (bleu_ax, loss_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
        else:
            ax.text(0.5, 0.5, "not measured yet", ha="center", va="center", transform=ax.transAxes, fontsize=8)
    fig.suptitle("C-GaP against prune-from-dense at 90% sparsity: by step length (top); at the longest rung (bottom)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
