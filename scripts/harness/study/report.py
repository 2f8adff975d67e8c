"""The study's results: its table (study.md), BLEU against parameters (study.png), and each network's valid
loss and valid BLEU against updates (curves.png), from the outputs of scripts/study.py.

Test BLEU: fairseq's tokenized BLEU-4 (lowercased, Moses-tokenized, BPE removed; harness/bleu.py) of the
last checkpoint, beam 4. Parameters: as the checkpoint records them (the ATS full network counted as the
standard Transformer it converts to; sparse models by the weights their masks keep). Valid loss: the
``valid`` records of the training's JSON log (``loss`` of the full or sparse network and of a core trained
alone, ``core_loss`` of an ATS core); valid BLEU: greedy translations of the valid split by the checkpoints saved along the way.
"""
import glob
import os
import statistics
from typing import Dict, List, Optional, Tuple

from harness import bleu, fairseq_log, plots, runs
from harness.console import markdown_table, mean_std
from harness.recipe import ROOT
from harness.study import design
from harness.study.design import Budget, Row

LANG = design.TGT
RECORDS = os.path.join(ROOT, "docs", "study-records")  # the repository's records: ROW/seedN.json

# The runs' records (``use_records``): what the report takes for a run whose directory is not on this machine.
_recorded: Dict[Tuple[str, int], dict] = {}
_used: set = set()  # (row, seed) whose numbers came from a record in this report


# ------------------------------------------------------------------------------------ records
def run_record(output: str, row: Row, seed: int, budget: Budget, commit: str) -> Optional[dict]:
    """A run's numbers (None before its training has a log): its commands, the parameters, test BLEU (at U
    and at every length it was trained further to), valid loss and valid BLEU at every checkpoint of each
    network, and the training's wall time. Small, to be committed (``RECORDS``) as soon as the run ends."""
    d = runs.run_dir(output, row.key, seed)
    log = os.path.join(d, "train.log")
    if not os.path.isfile(log):
        return None
    networks = {}
    for network in row.networks:
        scores = {str(budget.updates): _run_test_bleu(output, row, seed, network)}
        scores.update({str(u): v[0] for u, v in _run_trained_further(output, row, [seed], network).items()})
        networks[network] = {"parameters": _run_parameters(output, row, [seed], network),
                             "test_bleu": {u: v for u, v in scores.items() if v is not None},
                             "valid_loss": _run_valid_losses(output, row, seed, network),
                             "valid_bleu": _run_valid_bleus(output, row, seed, network)}
    with open(log, errors="replace") as f:
        wall, invocations = fairseq_log.wall_seconds(f)
    length = max([budget.updates] + [int(u) for n in networks.values() for u in n["test_bleu"]])
    data = os.path.join(output, "data-bin")
    commands = [" ".join(["python", *j.argv]).replace(output, "OUTPUT").replace(ROOT + os.sep, "")
                for j in design.jobs(row, seed, output, data, budget, length)]
    return {"row": row.key, "seed": seed, "updates": budget.updates, "commit": commit,
            "training_wall_seconds": wall, "training_invocations": invocations, "commands": commands,
            "networks": networks}


def write_records(output: str, rows: List[Row], seeds: List[int], budget: Budget, directory: str,
                  commit: str) -> List[str]:
    """The record of every run of ``rows`` and ``seeds`` that OUTPUT holds, written into DIRECTORY/ROW/seedN.json."""
    written = []
    for row in rows:
        for seed in seeds:
            record = run_record(output, row, seed, budget, commit)
            if record is None:
                continue
            path = os.path.join(directory, row.key, f"seed{seed}.json")
            runs.write_record(path, record)
            written.append(path)
    return written


def use_records(directory: str):
    """Take the records under DIRECTORY for the runs whose directories are not in the report's OUTPUT."""
    _recorded.clear()
    for path in glob.glob(os.path.join(directory, "*", "seed*.json")):
        record = runs.read_record(path)
        _recorded[(record["row"], int(record["seed"]))] = record


def _record_of(row: Row, seed: int, network: str) -> dict:
    return ((_recorded.get((row.key, seed)) or {}).get("networks") or {}).get(network) or {}


def _from_record(row: Row, seed: int, network: str, field: str):
    value = _record_of(row, seed, network).get(field)
    if value is not None:
        _used.add((row.key, seed))
    return value


# ------------------------------------------------------------------------------------ numbers
# Each reads the run directory, and a run's record where the directory has nothing.
def test_bleu(output: str, row: Row, seed: int, network: str) -> Optional[float]:
    found = _run_test_bleu(output, row, seed, network)
    if found is None and _recorded.get((row.key, seed)):
        found = (_from_record(row, seed, network, "test_bleu") or {}).get(str(_recorded[(row.key, seed)]["updates"]))
    return found


def parameters(output: str, row: Row, seeds: List[int], network: str) -> Optional[int]:
    found = _run_parameters(output, row, seeds, network)
    for seed in seeds if found is None else []:
        found = found or _from_record(row, seed, network, "parameters")
    return found


def valid_losses(output: str, row: Row, seed: int, network: str) -> List[Tuple[int, float]]:
    return _run_valid_losses(output, row, seed, network) or [tuple(p) for p in _from_record(row, seed, network, "valid_loss") or []]


def valid_bleus(output: str, row: Row, seed: int, network: str) -> List[Tuple[int, float]]:
    return _run_valid_bleus(output, row, seed, network) or [tuple(p) for p in _from_record(row, seed, network, "valid_bleu") or []]


def trained_further(output: str, row: Row, seeds: List[int], network: str) -> Dict[int, List[float]]:
    found = _run_trained_further(output, row, seeds, network)
    for seed in seeds:
        record = _recorded.get((row.key, seed))
        if record is None or any(os.path.isfile(p) for p in glob.glob(os.path.join(
                runs.run_dir(output, row.key, seed), f"generate-{network}-*.txt"))):
            continue
        for updates, score in (_from_record(row, seed, network, "test_bleu") or {}).items():
            if int(updates) != int(record["updates"]):
                found.setdefault(int(updates), []).append(score)
    return found


def _run_test_bleu(output: str, row: Row, seed: int, network: str) -> Optional[float]:
    scored = bleu.score(os.path.join(runs.run_dir(output, row.key, seed), f"generate-{network}.txt"),
                                 "tokenized", LANG)
    return None if scored is None else scored.bleu


def _run_parameters(output: str, row: Row, seeds: List[int], network: str) -> Optional[int]:
    from fairseq_partitioned import checkpoints  # torch: only once there are checkpoints to read

    for seed in seeds:
        path = os.path.join(runs.run_dir(output, row.key, seed), "checkpoints", "checkpoint_last.pt")
        if not os.path.isfile(path):
            continue
        state = checkpoints.load_lazily(path)
        if network == "pruned":  # the tensors fairseq keeps when it prunes the decoder at inference
            kept = f"decoder.layers.{design.LAYERDROP_KEEP}."
            return checkpoints.count_tensors({k: v for k, v in state["model"].items()
                                              if not k.startswith("decoder.layers.") or k.startswith(kept)})
        return checkpoints.parameter_counts(state).get(network)
    return None


def _run_valid_losses(output: str, row: Row, seed: int, network: str) -> List[Tuple[int, float]]:
    """(update, valid loss in bits) of every validation in the training's JSON log (none of a network pruned at
    inference: the training validates the whole network)."""
    if network == "pruned":
        return []
    # an ATS run logs its core's validation as valid_core_loss; a core trained alone is the run's only network
    key = "valid_core_loss" if network == "core" and "full" in row.networks else "valid_loss"
    return fairseq_log.valid_losses(os.path.join(runs.run_dir(output, row.key, seed), "train.log"), key)


def _run_valid_bleus(output: str, row: Row, seed: int, network: str) -> List[Tuple[int, float]]:
    """(update, valid BLEU) of every checkpoint of the run scored on the valid split so far."""
    d = runs.run_dir(output, row.key, seed)
    points = []
    for path in glob.glob(os.path.join(d, f"valid-{network}-*.txt")):
        scored = bleu.score(path, "tokenized", LANG)
        if scored is not None:
            points.append((int(path.rsplit("-", 1)[1][: -len(".txt")]), scored.bleu))
    return sorted(points)


def _run_trained_further(output: str, row: Row, seeds: List[int], network: str) -> Dict[int, List[float]]:
    """Test BLEU of a row trained beyond U: updates -> the seeds' BLEU there."""
    found: Dict[int, List[float]] = {}
    for seed in seeds:
        d = runs.run_dir(output, row.key, seed)
        for path in glob.glob(os.path.join(d, f"generate-{network}-*.txt")):
            scored = bleu.score(path, "tokenized", LANG)
            if scored is not None:
                found.setdefault(int(path.rsplit("-", 1)[1][: -len(".txt")]), []).append(scored.bleu)
    return found


def _mean_std(values: List[float]) -> str:
    return mean_std(values) if values else "-"


def table(output: str, rows: List[Row], seeds: List[int]) -> Tuple[str, list]:
    lines, points, missing = [], [], []
    for row in rows:
        for network in row.networks:
            scores = {s: test_bleu(output, row, s, network) for s in seeds}
            got = [v for v in scores.values() if v is not None]
            missing += [f"{row.key} seed {s} ({network})" for s, v in scores.items() if v is None]
            params = parameters(output, row, seeds, network)
            lines.append([row.label, network, f"{params:,}" if params else "-", _mean_std(got),
                          f"{len(got)}/{len(seeds)}", row.claims.get(network, "")])
            if got and params:
                points.append((row, network, params, statistics.mean(got),
                               statistics.stdev(got) if len(got) > 1 else 0.0))
    header = ["row", "network", "parameters", "test BLEU", "seeds", "the paper"]
    text = markdown_table(header, lines)
    if missing:
        text += "\n\nMissing: " + ", ".join(missing) + "."
    return text, points


def valid_at(output: str, row: Row, seeds: List[int], network: str, updates: int) -> Tuple[str, str]:
    """Mean valid loss and valid BLEU (greedy) over the seeds at ``updates`` (the training's count)."""
    losses = [dict(valid_losses(output, row, s, network)).get(updates) for s in seeds]
    bleus = [dict(valid_bleus(output, row, s, network)).get(updates) for s in seeds]
    fmt = lambda values, f: f"{statistics.mean(values):{f}}" if values else "-"  # noqa: E731
    return fmt([v for v in losses if v is not None], ".3f"), fmt([v for v in bleus if v is not None], ".2f")


def choices_table(output: str, rows: List[Row], seeds: List[int], budget: Budget) -> str:
    """Each choice the papers leave open next to the default it varies, on the valid split at U."""
    lines = []
    for row in rows:
        if not row.varies:
            continue
        default = design.ROW[row.varies]
        for network in row.networks:
            # the seeds that both the choice and its default have (a valid loss, or for a network fairseq does
            # not validate, LayerDrop's pruned one, a valid BLEU)
            same = [s for s in seeds if all(budget.updates in dict(valid_losses(output, r, s, network))
                                            or budget.updates in dict(valid_bleus(output, r, s, network))
                                            for r in (row, default))]
            ours = valid_at(output, row, same, network, budget.updates)
            theirs = valid_at(output, default, same, network, budget.updates)
            lines.append([row.label, network, ",".join(map(str, same)) or "-", *ours, *theirs])
    header = ["choice", "network", "seeds", "valid loss", "valid BLEU", "default: valid loss",
              "default: valid BLEU"]
    return markdown_table(header, lines) if lines else ""


def convergence_table(output: str, rows: List[Row], seeds: List[int], budget: Budget) -> str:
    """For every run trained beyond U: its valid loss at its last validation, its best and where, and
    whether it still improves: a new best within its last 4 intervals (1,000 updates in the study)."""
    window = 4 * budget.interval
    lines = []
    for row in rows:
        end = design.training_updates(row, budget, budget.updates)
        for seed in seeds:
            for network in row.networks:
                losses = {u: v for u, v in valid_losses(output, row, seed, network) if u % budget.interval == 0}
                if not losses or max(losses) <= end:  # not trained beyond U
                    continue
                last = max(losses)
                best = min(losses, key=lambda u: (losses[u], u))
                change = f"{losses[last] - losses[last - window]:+.3f}" if last - window in losses else "-"
                lines.append([row.label, network, str(seed), str(last), f"{losses[last]:.3f}",
                              f"{losses[best]:.3f} ({best})", change, "yes" if best > last - window else "no"])
    header = ["row", "network", "seed", "last validation", "valid loss", "best (at update)",
              f"change over the last {window} updates", f"a new best in the last {window}"]
    return markdown_table(header, lines) if lines else ""


def write(output: str, rows: List[Row], seeds: List[int], budget: Budget) -> List[str]:
    tested = [row for row in rows if not row.varies]
    text, points = table(output, tested, seeds)
    choices = choices_table(output, rows, seeds, budget)
    further = [[row.label, network, f"{updates}", _mean_std(values), f"{len(values)}"]
               for row in tested for network in row.networks
               for updates, values in sorted(trained_further(output, row, seeds, network).items())]
    invocations = runs.read_invocations(output)
    steps, per_step, finetune = budget.cgap()
    lines = [
        "# The study: the papers' claims at CPU scale",
        "",
        f"English -> Spanish Bible verses (data-prep/bible/kjv-rv1909: {design.SRC}-{design.TGT}, "
        "27976 training pairs), a 3+3-layer d=256 pre-norm Transformer, every row "
        f"{budget.updates} updates of {budget.max_tokens} tokens (C-GaP: {steps} steps of {per_step} updates and "
        f"a {finetune}-update fine-tune; prune-from-dense: half dense, half fine-tune), seeds "
        f"{','.join(map(str, seeds))}. Test BLEU: tokenized BLEU-4 (lowercased), beam 4, the checkpoint at update "
        f"{budget.updates}; "
        "mean (sample std) over the seeds.",
        "",
        text,
        "",
    ]
    if choices:
        lines += [f"Choices the papers leave open, on the valid split only (at update {budget.updates}; greedy "
                  "BLEU; mean over the seeds that the choice and its default both have; never scored on the "
                  "test split):", "", choices, ""]
    if further:
        lines += ["Trained further (the same runs, the same rule: the test BLEU of the checkpoint at that update):",
                  "", markdown_table(["row", "network", "updates", "test BLEU", "seeds"], further), ""]
    converging = convergence_table(output, tested, seeds, budget)
    if converging:
        lines += ["Whether the runs trained further still improve (valid loss at the validations every "
                  f"{budget.interval} updates):", "", converging, ""]
    if _used:
        lines += ["Runs whose directories are not in OUTPUT, their numbers from their committed records (docs/"
                  "study-records/ROW/seedN.json): " + ", ".join(f"{r} seed {s}" for r, s in sorted(_used)) + ".", ""]
    lines += ["Invocations (wall time on this machine; OUTPUT: the directory of this report):"]
    for inv in invocations:
        ended = "" if inv.get("finished", True) else " (not finished: its time until the last record)"
        command = inv["command"].replace(f"--output-dir {output}", "--output-dir OUTPUT")
        lines.append(f"- {inv['date']}: `{command}`: {inv['seconds'] / 3600:.2f} h{ended}")
    path = os.path.join(output, "study.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    paths = [path, plot(os.path.join(output, "study.png"), points, budget),
             curves(os.path.join(output, "curves.png"), output, tested, seeds, budget, until=budget.updates)]
    # the runs trained further, on their own (over their whole length, the curves up to U would be squeezed
    # into its start) and over their own seeds only (a mean that loses a seed past U would jump there)
    beyond = {row.key: seeds_beyond(output, row, seeds, budget) for row in tested}
    longer = [row for row in tested if beyond[row.key]]
    if longer:
        longer_seeds = sorted(set().union(*beyond.values()))
        paths.append(curves(os.path.join(output, "curves-further.png"), output, longer, longer_seeds, budget))
    return paths


COLORS = {"standard": "black", "ats-rank": "C0", "core-rank": "C1", "ats-width": "C2", "core-width": "C3",
          "cgap": "C4", "prune": "C5", "random-mask": "C7", "ats-depth": "C6", "every-depth": "C8", "core-depth": "C1",
          "layerdrop": "C5"}
MARKERS = {"full": "s", "core": "o", "sparse": "^", "pruned": "v"}


def plot(path: str, points, budget: Budget) -> str:
    drawn = [plots.Point(params, mean, std, MARKERS[network], COLORS.get(row.key, "C9"), f"{row.label}: {network}")
             for row, network, params, mean, std in points]
    # the legend beside the axes: inside, it hides points (the two ATS full networks sit at the right edge)
    return plots.bleu_against_parameters(
        path, drawn, f"BLEU against parameters, {budget.updates} updates each",
        "parameters (sparse: kept by the masks; ATS full: as a standard Transformer)", "test BLEU", (10, 5),
        legend=dict(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0)))


def _mean_curve(curves: List[List[Tuple[int, float]]]) -> List[Tuple[int, float]]:
    by_update: Dict[int, List[float]] = {}
    for curve in curves:
        for u, v in curve:
            by_update.setdefault(u, []).append(v)
    return [(u, statistics.mean(vs)) for u, vs in sorted(by_update.items())]


def seeds_beyond(output: str, row: Row, seeds: List[int], budget: Budget) -> List[int]:
    """The seeds of the row with a validation beyond U (trained further); the log's first network tells."""
    end = design.training_updates(row, budget, budget.updates)
    return [s for s in seeds if any(u > end for u, _ in valid_losses(output, row, s, row.networks[0]))]


def curves(path: str, output: str, rows: List[Row], seeds: List[int], budget: Budget,
           until: Optional[int] = None) -> str:
    """Valid loss and valid BLEU against updates (up to ``until``, when given), each the mean over the seeds."""
    plt = plots.pyplot()
    fig, (loss_ax, bleu_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for row in rows:
        shift = budget.updates - design.training_updates(row, budget, budget.updates)  # prune: its dense part
        for network in row.networks:
            style = dict(color=COLORS.get(row.key, "C9"), marker=MARKERS[network], markersize=3,
                         linestyle="--" if network == "core" else "-", label=f"{row.label}: {network}")
            loss = [(u + shift, v) for u, v in _mean_curve([valid_losses(output, row, s, network) for s in seeds])]
            scores = [(u + shift, v) for u, v in _mean_curve([valid_bleus(output, row, s, network) for s in seeds])]
            if until is not None:
                loss, scores = ([(u, v) for u, v in points if u <= until] for points in (loss, scores))
            if loss:
                loss_ax.plot(*zip(*loss), **style)
            if scores:
                bleu_ax.plot(*zip(*scores), **style)
    loss_ax.set_ylabel("valid loss (bits, label-smoothed)")
    bleu_ax.set_ylabel("valid BLEU (greedy)")
    pruned = any(row.method == "prune" for row in rows)
    for ax in (loss_ax, bleu_ax):
        ax.set_xlabel("updates" + (f" (prune-from-dense: dense to {budget.dense_updates()}, then pruned and "
                                   "fine-tuned)" if pruned else ""))
        ax.grid(True, alpha=0.3)
        if until is None:  # the runs trained further: where the table is read
            ax.axvline(budget.updates, color="grey", linewidth=0.8, linestyle=":")
    if until is None:
        fig.suptitle(f"Trained further (seed {','.join(map(str, seeds))}); dotted: update {budget.updates}, where "
                     "the table is read", fontsize=10)
    if bleu_ax.get_legend_handles_labels()[0]:
        bleu_ax.legend(fontsize=6)
    else:  # --no-curves: no valid-split translations along the way
        bleu_ax.text(0.5, 0.5, "no valid BLEU curves (--no-curves)", ha="center", va="center",
                     transform=bleu_ax.transAxes, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
