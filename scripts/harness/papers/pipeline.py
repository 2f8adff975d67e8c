"""A run of the papers' tables as fairseq command lines, and where each of its outputs is.

One run (tables.py) and one seed live in OUTPUT_DIR/RUN/seedN/ (runs.run_dir): train.log, checkpoints/,
generate-NETWORK.txt (one per network the tables evaluate: full, core, sparse) and run.json (the record
reproduce.py writes: cells, commands, completed steps, parameter counts). reproduce.py runs the steps,
collect_results.py reads their outputs, make_hydra_configs.py writes the training flags as configs.

Command lines and paths: importing this module needs neither fairseq nor torch (a checkpoint is read only
by ``checkpoint_parameters``).
"""
import fnmatch
import os
import shlex
import sys
from typing import Dict, List, Optional

from harness import recipe
from harness.papers import tables
from harness.papers.tables import DATASETS, RECIPES, RUNS, TABLES
from harness.recipe import start_from
from harness.runner import Job
from harness.runs import run_dir

RECORD = "run.json"
SMOKE_DATA = "smoke-data"  # --smoke: the bundled IWSLT14 sample, prepared into OUTPUT_DIR/smoke-data/

# --smoke: tiny settings, the same pipeline. d=64 with 2 heads keeps every core of the tables non-empty
# (small width r = 0.03125 of a 32-dim head is 1 unit; rank r = 0.015625 of 64 is 1); GaP's kappa = 6
# needs 2 encoder and 4 decoder layers.
SMOKE_SHAPE = ("--encoder-embed-dim", "64", "--decoder-embed-dim", "64", "--encoder-ffn-embed-dim", "128",
               "--decoder-ffn-embed-dim", "128", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2")
SMOKE_MODEL = {
    "ats": ("--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1") + SMOKE_SHAPE
    + ("--share-decoder-input-output-embed",),
    # no --share-all-embeddings: the sample has two dictionaries
    "gap": ("--arch", "transformer", "--encoder-layers", "2", "--decoder-layers", "4") + SMOKE_SHAPE,
}
SMOKE_UPDATES = 3
SMOKE_MAX_TOKENS = 1024
SMOKE_GAP_STEP_UPDATES = 2
SMOKE_GAP_STEPS = 2
SMOKE_GAP_ROUNDS = 1
SMOKE_EVAL_BLEU_ARGS = '{"beam": 1, "max_len_a": 0, "max_len_b": 5}'
SMOKE_GEN_SUBSET = "valid"
SMOKE_GENERATE = ("--max-len-a", "0", "--max-len-b", "8", "--cpu", "--num-workers", "0")
# --smoke leaves out of a recipe's training flags (each with its number of values): fp16, which needs a GPU, and
# the GaP recipe's 8 batches accumulated per update, which make every smoke update 8 times dearer on the CPU
# and run no other step of the pipeline (tests/test_gap.py trains through --update-freq)
SMOKE_LEFT_OUT = {"--fp16": 0, "--update-freq": 1}

# ------------------------------------------------------------------------------------------ which


def select(table_names: List[str], patterns: Optional[List[str]]):
    """[(run, [(table, row, column, cell)])] of the tables' rows that match ``patterns`` (globs over row keys
    and run ids; None: every row), in table order, dependencies (the dense pretrain) first; ValueError names
    a pattern that matches nothing."""
    chosen: Dict[str, list] = {}
    matched = set()
    for name in table_names:
        for row in TABLES[name].rows:
            for column, cell in row.cells.items():
                hits = [p for p in patterns or ["*"] if fnmatch.fnmatchcase(row.key, p)
                        or fnmatch.fnmatchcase(cell.run, p)]
                if hits:
                    matched.update(hits)
                    chosen.setdefault(cell.run, []).append((name, row, column, cell))
    for p in patterns or []:
        if p not in matched:
            keys = sorted({r.key for n in table_names for r in TABLES[n].rows})
            raise ValueError(f"--rows pattern {p!r} matches no row or run of {', '.join(table_names)} "
                             f"(rows: {', '.join(keys)})")
    ordered: List[str] = []
    for run_id in chosen:
        after = RUNS[run_id].after
        if after and after not in ordered:
            ordered.append(after)
        if run_id not in ordered:
            ordered.append(run_id)
    return [(RUNS[r], chosen.get(r, [])) for r in ordered]


def smoke_data_command(output_dir: str, data: str) -> List[str]:
    """--smoke: the command that prepares the bundled IWSLT14 sample into ``data`` (its text beside it)."""
    return [sys.executable, os.path.join(recipe.ROOT, "data-prep", "prepare_sample.py"),
            "--output", os.path.join(output_dir, SMOKE_DATA, "text"), "--binarize", data]


# ------------------------------------------------------------------------------------------ where


def generation_checkpoint(run, directory: str) -> str:
    """The checkpoint a run is translated from: its best (C-GaP, P-GaP: the best of its round's fine-tunes)."""
    return os.path.join(directory, "checkpoints", "checkpoint_best.pt")


def generate_output(directory: str, network: str) -> str:
    return os.path.join(directory, f"generate-{network}.txt")


def record_path(directory: str) -> str:
    """A run directory's record (runs.read_record, runs.write_record)."""
    return os.path.join(directory, RECORD)


def checkpoint_parameters(run, directory: str) -> Dict[str, int]:
    """Parameters of each evaluated network, as the checkpoint it is translated from records them
    (ATS: core and the full network as a standard Transformer; GaP: nonzero; plain fairseq: all)."""
    path = generation_checkpoint(run, directory)
    if not os.path.isfile(path):
        return {}
    from fairseq_partitioned import checkpoints  # torch: only when there is a checkpoint to read

    counts = checkpoints.parameter_counts(checkpoints.load_lazily(path))
    return {network: counts[network] for network in run.networks if network in counts}


# ------------------------------------------------------------------------------------------- flags


def _family(run) -> str:
    return "ats" if run.method in ("vanilla", "ats") else "gap"


def _plugin(run) -> bool:
    return run.method not in ("vanilla", "dense")  # those two are plain fairseq: a standard Transformer


def _fp16(run, smoke: bool) -> bool:
    return not smoke and "--fp16" in RECIPES[run.dataset].training


def train_flags(run, data: str, smoke: bool = False) -> List[str]:
    """fairseq-train arguments of a run, without --seed, --save-dir and the run's length."""
    training = RECIPES[run.dataset]
    task = recipe.task(_plugin(run))
    argv = recipe.data_and_task(data, task)
    argv += SMOKE_MODEL[_family(run)] if smoke else training.model
    argv += ["--optimizer", recipe.optimizer(task)]
    argv += _smoke_left_out(training.training) if smoke else list(training.training)
    argv += ["--lr-scheduler", "gap_inverse_sqrt" if run.method == "cgap" else training.lr_scheduler]
    argv += ["--max-tokens", str(SMOKE_MAX_TOKENS if smoke else training.max_tokens)]
    evaluation = list(training.evaluation)
    if smoke and "--eval-bleu-args" in evaluation:
        evaluation[evaluation.index("--eval-bleu-args") + 1] = SMOKE_EVAL_BLEU_ARGS
    argv += evaluation
    argv += run.flags
    if _fp16(run, smoke) and _plugin(run):
        argv += ["--fp16-no-flatten-grads"]  # the plugin's optimizer matches fp32 copies by position
    if smoke:
        argv += ["--cpu", "--num-workers", "0", "--max-valid-steps", "1"]
    return argv


def _smoke_left_out(flags) -> List[str]:
    """``flags`` without each flag of ``SMOKE_LEFT_OUT`` and its values."""
    out, i = [], 0
    while i < len(flags):
        if flags[i] in SMOKE_LEFT_OUT:
            i += 1 + SMOKE_LEFT_OUT[flags[i]]
        else:
            out.append(flags[i])
            i += 1
    return out


def length_flags(run, smoke: bool = False) -> List[str]:
    """How long a fairseq-train run trains (P-GaP: set by fairseq-partitioned-pgap). C-GaP: the plugin's
    one-process C-GaP with the official code's steps and one fine-tune (the hydra configs;
    reproduce.py runs it as the official code does: ``steps``)."""
    if run.method == "cgap":
        if smoke:  # C-GaP stops by itself where its schedule ends
            return ["--gap-step-updates", str(SMOKE_GAP_STEP_UPDATES), "--gap-steps", str(SMOKE_GAP_STEPS),
                    "--gap-finetune-updates", "2"]
        return ["--gap-step-epochs", str(tables.GAP_STEP_EPOCHS), "--gap-steps", str(tables.gap_steps(_kappa(run))),
                "--gap-finetune-epochs", str(tables.GAP_FINETUNE_EPOCHS)]
    if smoke:
        return ["--max-update", str(SMOKE_UPDATES)] + ([] if run.method == "pgap" else ["--max-epoch", "1"])
    if run.method == "pgap":
        return []
    epochs = {"prune": tables.GAP_FINETUNE_EPOCHS, "dense": tables.GAP_PRETRAIN_EPOCHS}
    return ["--max-epoch", str(epochs.get(run.method, RECIPES[run.dataset].max_epoch))]


def _kappa(run) -> int:
    return int(_flag_values(run.flags)["--gap-partitions"])


def _flag_values(flags) -> Dict[str, str]:
    return {a: b for a, b in zip(flags, list(flags[1:]) + [""]) if a.startswith("--")}


# ------------------------------------------------------------------------------------------- steps
# A step is a runner.Job named train, prune, generate-full, ...; its argv starts with a console script's name
# (recipe.PROGRAMS), so that a printed command reads as a user would type it.


def command_line(step: Job) -> str:
    return f"{shlex.join(step.argv)} > {shlex.quote(step.log)} 2>&1"


def steps(run, seed: int, data: str, output_dir: str, smoke: bool, pgap_parallel: int = 0,
          networks=None) -> List[Job]:
    """The commands of one run and seed; ``networks``: those to translate (default: all of the run's)."""
    d = run_dir(output_dir, run.id, seed)
    ckpt_dir = os.path.join(d, "checkpoints")
    train_log = os.path.join(d, "train.log")
    out: List[Job] = []
    if run.method in ("cgap", "pgap"):
        out += _gap_as_the_official_code(run, seed, data, d, smoke, pgap_parallel)
    else:
        base = train_flags(run, data, smoke) + length_flags(run, smoke) + ["--seed", str(seed)]
        train = ["fairseq-train", *base, "--save-dir", ckpt_dir, "--no-epoch-checkpoints"]
        if run.method == "prune":
            # GaP B.5: one-shot magnitude pruning of the dense pretrain of the same seed, then fixed masks
            dense = generation_checkpoint(RUNS[run.after], run_dir(output_dir, run.after, seed))
            pruned = os.path.join(d, "pruned.pt")
            values = _flag_values(run.flags)
            prune = ["fairseq-partitioned-prune", dense, "--sparsity", values["--gap-sparsity"]]
            for flag, option in (("--gap-distribution", "--distribution"), ("--gap-granularity", "--granularity")):
                if flag in values:
                    prune += [option, values[flag]]
            out.append(Job("prune", prune + ["--output", pruned], os.path.join(d, "prune.log")))
            train += start_from(pruned)
        out.append(Job("train", train, train_log))
    subset = SMOKE_GEN_SUBSET if smoke else DATASETS[run.dataset].gen_subset
    for network in run.networks if networks is None else [n for n in run.networks if n in networks]:
        generate = ["fairseq-generate", *recipe.generate(data, recipe.task(_plugin(run)), generation_checkpoint(run, d),
                                                         subset, RECIPES[run.dataset].generate, network)]
        if smoke:
            generate += SMOKE_GENERATE
        out.append(Job(f"generate-{network}", generate, generate_output(d, network)))
    return out


def _gap_as_the_official_code(run, seed: int, data: str, d: str, smoke: bool, pgap_parallel: int) -> List[Job]:
    """C-GaP and P-GaP as the official code runs them (tables.py): every C-GaP step a process of its own
    (``--gap-grow-step k``: fresh optimizer, learning rate and data order, from the step before), a
    fine-tune branched from the end of every round, and the fine-tune with the best validation BLEU kept
    as the run's checkpoint_best.pt (selected on the validation split, never on the test split)."""
    kappa, ckpt = _kappa(run), os.path.join(d, "checkpoints")
    rounds = SMOKE_GAP_ROUNDS if smoke else tables.GAP_ROUNDS
    base = [a for a in train_flags(run, data, smoke) if a != "--alternate"] + ["--seed", str(seed)]
    base[base.index("--lr-scheduler") + 1] = RECIPES[run.dataset].lr_scheduler  # each process restarts it
    step_length = ["--max-update", str(SMOKE_UPDATES), "--max-epoch", "1"] if smoke else [
        "--max-epoch", str(tables.GAP_STEP_EPOCHS)]
    finetune_length = ["--max-update", str(SMOKE_UPDATES), "--max-epoch", "1"] if smoke else [
        "--max-epoch", str(tables.GAP_FINETUNE_EPOCHS)]
    out: List[Job] = []
    if run.method == "pgap":  # 10 rounds of kappa workers (the paper counts a round as kappa steps)
        me = ["fairseq-partitioned-pgap", "--save-dir", ckpt, "--rounds", str(rounds),
              "--step-epochs", "1" if smoke else str(tables.GAP_STEP_EPOCHS), "--finetune-epochs", "0"]
        if smoke or pgap_parallel:
            me += ["--parallel", str(3 if smoke else pgap_parallel)]
        out.append(Job("train", me + ["--", *base, "--no-epoch-checkpoints"] + (
            ["--max-update", str(SMOKE_UPDATES)] if smoke else []), os.path.join(d, "train.log")))
        round_ends = [(r, os.path.join(ckpt, f"round{r}", "combined.pt")) for r in range(rounds)]
    else:
        round_ends, previous = [], None
        for step in range(1 + rounds * kappa):
            save = os.path.join(ckpt, f"step{step}")
            argv = ["fairseq-train", *base, "--gap-grow-step", str(step), *step_length, "--save-dir", save,
                    "--no-epoch-checkpoints", "--disable-validation"]
            if previous is not None:
                argv += start_from(previous)
            out.append(Job(f"train-step{step}", argv, os.path.join(d, f"train-step{step}.log")))
            previous = os.path.join(save, "checkpoint_last.pt")
            if step > 0 and step % kappa == 0:  # a round ends: its partition grown first is dense again
                round_ends.append((step // kappa, previous))
    finetuned = []
    for r, start in round_ends:
        save = os.path.join(ckpt, f"finetune{r}")
        argv = ["fairseq-train", *base, *finetune_length, "--save-dir", save, "--no-epoch-checkpoints",
                *start_from(start)]
        out.append(Job(f"finetune-round{r}", argv, os.path.join(d, f"finetune-round{r}.log")))
        finetuned.append(os.path.join(save, "checkpoint_best.pt"))
    out.append(Job("select", ["select-best", *finetuned, "--output", os.path.join(ckpt, "checkpoint_best.pt")],
                    os.path.join(d, "select.log")))
    return out

