"""The GaP ladder's report: OUTPUT/ladder.md (tables) and OUTPUT/ladder.png (C-GaP minus prune-from-dense
against the step length), from the outputs of scripts/gap_ladder.py.

Test BLEU as the study's (tokenized BLEU-4, lowercased, beam 4, BPE removed) of each network's checkpoint
at its last update; valid loss: the last validation of its training's log, at that update (bits per token,
label-smoothed). A cell of a run not finished yet is "-". Per step of every C-GaP run: harness/ladder/steps.py,
measured once all its steps are done (kept in the run's steps.json).

Every number also goes to OUTPUT/ladder.json. A rung (or the control) whose runs are not in OUTPUT can come
from such a file, ``recorded``: a ladder measured earlier whose run directories are gone (docs/gap-ladder.json
keeps the repository's), and so can each network (and the steps) of a rung measured in part. The tables mark
each row or cell taken from the record and name the measurement it keeps.
"""
import glob
import json
import os
import time
from typing import List, Optional, Tuple

from harness import bleu as bleu_conventions, fairseq_log, plots, runs
from harness.console import markdown_table
from harness.ladder.steps import analyse as analyse_steps
from harness.runs import run_dir
from harness.study import design as study

LANG = study.TGT


def bleu(d: str, name: str) -> Optional[float]:
    scored = bleu_conventions.score(os.path.join(d, f"generate-{name}.txt"), "tokenized", LANG)
    return None if scored is None else scored.bleu


def valid_at(log: str, updates: int) -> Optional[float]:
    """The valid loss of a log's validation at ``updates`` (the training's own count)."""
    return dict(fairseq_log.valid_losses(log)).get(updates)


def updates_per_epoch(output: str, seed: int) -> Optional[int]:
    """Updates in the dense run's first epoch (the end-of-epoch record of its JSON log)."""
    return fairseq_log.updates_per_epoch(os.path.join(run_dir(output, "dense", seed), "train.log"))


def steps_done(d: str) -> bool:
    logs = glob.glob(os.path.join(d, "train-step*.log"))
    return bool(logs) and all(glob.glob(runs.marker(log) + "*") for log in logs)  # a marker of any length


def per_step(d: str, data: str) -> List[dict]:
    """analyse_steps of a C-GaP run once its steps are done, measured once (steps.json)."""
    cached = os.path.join(d, "steps.json")
    if os.path.isfile(cached):
        return runs.read_record(cached, default=[])
    if not steps_done(d):
        return []
    rows = analyse_steps(d, data)
    runs.write_record(cached, rows)
    return rows


def _cell(score: Optional[float], loss: Optional[float], sign: str = "") -> str:
    """``sign="+"``: a difference."""
    return "-" if score is None and loss is None else (
        f"{'-' if score is None else f'{score:{sign}.2f}'} / {'-' if loss is None else f'{loss:{sign}.3f}'}")


def _difference(a: Tuple, b: Tuple) -> Tuple[Optional[float], Optional[float]]:
    return tuple(None if x is None or y is None else x - y for x, y in zip(a, b))


CELLS = ("dense", "prune", "cgap", "cgap2", "random")  # a rung's networks (see measure)


def measure(output: str, rungs: List[int], seed: int, control: Tuple[int, int, int], updates: int) -> dict:
    """Every number of the ladder in ``output`` (None where not measured yet): per rung, each network's
    (test BLEU, valid loss) and the C-GaP run's steps; the control's two C-GaP runs and its steps."""
    steps_k, control_step, finetune = control
    data = os.path.join(output, "data-bin")
    out = {"seed": seed, "updates_per_epoch": updates_per_epoch(output, seed), "rungs": {}}
    for dense in rungs:
        d_dense, d_prune, d_cgap, d_random = (run_dir(output, key, seed) for key in
                                              ("dense", f"prune-{dense}", f"cgap-{dense}", "random-mask"))
        out["rungs"][str(dense)] = {
            "dense": (bleu(d_dense, f"full-{dense}"), valid_at(os.path.join(d_dense, "train.log"), dense)),
            "prune": (bleu(d_prune, "sparse"), valid_at(os.path.join(d_prune, "train.log"), dense)),
            "cgap": (bleu(d_cgap, "sparse-finetune1"), valid_at(os.path.join(d_cgap, "finetune1.log"), dense)),
            "cgap2": (bleu(d_cgap, "sparse-finetune2"), valid_at(os.path.join(d_cgap, "finetune2.log"), dense)),
            "random": (bleu(d_random, f"sparse-{2 * dense}"), valid_at(os.path.join(d_random, "train.log"), 2 * dense)),
            "steps": per_step(d_cgap, data),
        }
    d_steps = run_dir(output, f"cgap-{control_step}-steps", seed)
    out["control"] = {"one process": (bleu(run_dir(output, "cgap", seed), "sparse"),
                                      valid_at(os.path.join(run_dir(output, "cgap", seed), "train.log"), updates)),
                      "a process per step": (bleu(d_steps, "sparse-finetune"),
                                             valid_at(os.path.join(d_steps, "finetune.log"), finetune)),
                      "steps": per_step(d_steps, data)}
    return out


def _has(entry: dict, cell: str) -> bool:
    return bool(entry["steps"]) if cell == "steps" else any(x is not None for x in entry[cell])


def _measured(entry: dict, cells) -> bool:
    return any(_has(entry, c) for c in (*cells, "steps"))


def load_record(path: str) -> dict:
    """A ladder.json written by ``write``; ValueError names what is wrong with it."""
    try:
        with open(path) as f:
            record = json.load(f)
        for entry in [*record["rungs"].values(), record["control"]]:
            if not entry.get("source"):
                raise ValueError("an entry without its source")
            for recorded in entry.get("recorded", []):
                if not recorded.get("source") or not recorded["cells"] or \
                        not set(recorded["cells"]) <= set(CELL_NAMES):
                    raise ValueError(f"a recorded item without its source or its cells: {recorded}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # ValueError: JSON too
        raise ValueError(f"not a ladder record ({e})") from None
    return record


CELL_NAMES = {"dense": "dense at D", "prune": "prune-from-dense", "cgap": "C-GaP, 1 round",
              "cgap2": "C-GaP, 2 rounds", "random": "random mask", "steps": "the steps"}


def _source_of(entry: dict, cell: str) -> str:
    """Where a rung's cell (or its "steps") was measured: its own "recorded" list, else its source."""
    return next((r["source"] for r in entry.get("recorded", []) if cell in r["cells"]), entry["source"])


def merge(measured: dict, record: Optional[dict], source: str) -> Tuple[dict, set]:
    """``measured`` with its source, and from the record: the rungs and control where ``measured`` has no
    number, and of a rung measured in part, each cell (and the steps) it has no number for, listed with
    their source in the rung's "recorded"; and the keys taken whole from the record (rungs as D, "control")."""
    out, taken = json.loads(json.dumps(measured)), set()  # tuples as lists, as in a record
    for entry in [*out["rungs"].values(), out["control"]]:
        entry["source"] = source
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
        if by_source:
            mine["recorded"] = [{"cells": cells, "source": where} for where, cells in by_source.items()]
    if not _measured(out["control"], ("one process", "a process per step")):
        out["control"] = record["control"]
        taken.add("control")
    out["updates_per_epoch"] = out["updates_per_epoch"] or record.get("updates_per_epoch")
    out["rungs"] = dict(sorted(out["rungs"].items(), key=lambda kv: int(kv[0])))
    return out, taken


def write(output: str, rungs: List[int], seed: int, control: Tuple[int, int, int], updates: int,
          recorded: Optional[str] = None) -> List[str]:
    """``control``: the control's C-GaP (steps, updates per step, fine-tune updates), ``updates`` in all;
    ``recorded``: a ladder.json for the rungs and control whose runs are not in ``output``."""
    steps_k, control_step, finetune = control
    source = f"measured in {os.path.basename(os.path.normpath(output))}/, report of {time.strftime('%Y-%m-%d')}"
    results, taken = merge(measure(output, rungs, seed, control, updates),
                           load_record(recorded) if recorded else None, source)
    epoch = results["updates_per_epoch"]
    rows, points, step_tables, from_record = [], [], [], {}
    for key, at in results["rungs"].items():
        dense = int(key)
        n = dense // 4
        cells = [c for item in at.get("recorded", []) for c in item["cells"]]  # from the record (merge)
        for item in at.get("recorded", []):
            from_record.setdefault(item["source"], []).append(
                f"D = {dense}'s {', '.join(CELL_NAMES[c] for c in item['cells'])}")
        at = {c: tuple(at[c]) for c in CELLS} | {"steps": at["steps"], "source": at["source"]}
        ahead = _difference(at["cgap"], at["prune"])
        ahead2 = _difference(at["cgap2"], at["prune"])
        floor = _difference(at["random"], at["prune"])
        epochs = n / epoch if epoch else None
        mark = "*" if key in taken else ""
        if mark:
            from_record.setdefault(at["source"], []).append(f"D = {dense}")
        shown = {c: _cell(*at[c]) + ("*" if c in cells else "") for c in CELLS}
        rows.append([f"{dense}{mark}", f"{n}" + (f" ({epochs:.2f})" if epochs else ""), shown["dense"],
                     shown["prune"], shown["cgap"], _cell(*ahead, "+"), shown["cgap2"],
                     _cell(*ahead2, "+"), shown["random"]])
        points.append((epochs or n, ahead, ahead2, floor))
        if at["steps"]:
            step_mark = "*" if mark or "steps" in cells else ""
            step_tables.append((f"C-GaP, D = {dense}{step_mark} (N = {n})", at["steps"]))
    at_control = results["control"]
    control_mark = "*" if "control" in taken else ""
    if control_mark:
        from_record.setdefault(at_control["source"], []).append("the control")
    if at_control["steps"]:
        step_tables.append((f"C-GaP as processes, N = {control_step} (the control{control_mark})",
                            at_control["steps"]))
    lines = [
        "# The GaP ladder: C-GaP against prune-from-dense as the steps grow longer",
        "",
        f"The study's model and recipe, seed {seed}, 90% sparsity, kappa = 3. For each dense pre-training length D: "
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
        f"The control, the study's C-GaP ({steps_k} steps of {control_step} updates, a {finetune}-update fine-tune): "
        "in one process "
        "(Adam moments and step counts carried across steps, but for the elements a step changes) against a "
        "process per step (fresh ones; the same data order and learning rate):",
        "",
        markdown_table(["C-GaP", "test BLEU / valid loss"],
                       [[k + control_mark, _cell(*at_control[k])] for k in ("one process", "a process per step")]),
        "",
    ]
    if from_record:
        lines += [f"\\* From the record {recorded}, their runs not in {output}: "
                  + "; ".join(f"{', '.join(what)}, {where}" for where, what in from_record.items()) + ".", ""]
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
    runs.write_record(record, results)
    return [path, record, plot(os.path.join(output, "ladder.png"), points, bool(epoch))]


def plot(path: str, points, in_epochs: bool) -> str:
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, (ax, what) in enumerate(zip(axes, ("test BLEU", "valid loss"))):
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
    if axes[0].get_legend_handles_labels()[0]:  # none before a rung is scored
        axes[0].legend(fontsize=7)
    fig.suptitle("C-GaP against prune-from-dense at 90% sparsity, by step length")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
