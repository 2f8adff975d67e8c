"""The GaP ladder's commands: C-GaP against prune-from-dense as the steps grow longer (scripts/gap_ladder.py).

The study's model and recipe (harness/study/design.py), one seed; for each dense pre-training length D:
prune-from-dense (D dense updates, a one-shot 90% prune, D fine-tune updates), C-GaP with steps of N = D / 4
updates, each its own process going on from the step before (``continue_from``), with a fine-tune of D
updates after the first round (and after the second at the longest D), and a fixed random mask trained
2 D updates; and the control at the study's N = 125. At the longest D, prune-from-dense again at C-GaP's
budget with its second round (``matched_splits``). Runs live in OUTPUT/RUN/seedN/ (runs.run_dir); the jobs
belong to arms (``ARMS``), and ``jobs`` gives those of the chosen arms with every job they need.
Importing this module needs neither fairseq nor torch.
"""
import os
import re
from typing import Dict, List, Sequence, Tuple

from harness import recipe
from harness.recipe import PLUGIN_TASK, start_from
from harness.runner import Job, checkpoint_at, continue_from
from harness.runs import run_dir
from harness.study import design as study
from harness.study.design import Budget, generate, training

SPARSITY = ("--gap-sparsity", "0.9")
KAPPA = 3
CONTROL_STEP = 125  # the study's C-GaP step (9 steps of 125, 375 fine-tune updates, U = 1,500)
# What --arms chooses: each a family of runs, the rung's own (prune-D, cgap-D, prune-matched-D) for every D
ARMS = ("dense", "prune", "cgap", "random-mask", "prune-matched", "control")
BY_RUNG = ("prune", "cgap", "prune-matched")  # also chosen one rung at a time: prune-6000


def step_length(dense: int) -> int:
    """N = D / 4, rounded down (D = 750: 187; the rung's C-GaP budget is then 4 N + D, 2 updates short)."""
    return dense // 4


def matched_budget(dense: int) -> int:
    """C-GaP's updates at the longest rung with its second round: 1 + 2 kappa steps of N, then D fine-tune
    updates (D = 6,000: 7 x 1,500 + 6,000 = 16,500)."""
    return (1 + 2 * KAPPA) * step_length(dense) + dense


def matched_splits(dense: int) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """Prune-from-dense at ``matched_budget``, as (dense updates, fine-tune updates), two ways: today's
    proportions, half dense and half fine-tune (D = 6,000: 8,250 + 8,250; the ladder's dense run trained on
    to the half, rounded down), and the rung's dense checkpoint at D with the rest as fine-tune (6,000 +
    10,500: the rung's prune-from-dense trained on, its first D fine-tune updates the same run)."""
    total = matched_budget(dense)
    return (total // 2, total - total // 2), (dense, total - dense)


def _test(name: str, data: str, ckpt_dir: str, updates: int, task: str, network: str, d: str, smoke: bool,
          after: str, suffix: str = "") -> Job:
    return Job(f"{name}/test-{network}{suffix}", generate(data, checkpoint_at(ckpt_dir, updates), task, network,
                                                         "test", 4, smoke),
               os.path.join(d, f"generate-{network}{suffix}.txt"), [after])


def _chained(name: str, d: str, lengths: List[int], argv_at, data: str, task: str, network: str,
             smoke: bool) -> List[List[Job]]:
    """One run trained on from length to length (each a job resuming the one before), tested at each."""
    out, before = [], []
    for length in lengths:
        train = Job(f"{name}/train-{length}", argv_at(length), os.path.join(d, "train.log"), before, updates=length)
        out.append([train, _test(name, data, os.path.join(d, "checkpoints"), length, task, network, d, smoke,
                                 train.name, f"-{length}")])
        before = [train.name]
    return out


def _cgap_steps(name: str, d: str, data: str, budget: Budget, seed: int, smoke: bool, per_step: int, steps: int,
                warmup: int) -> List[Job]:
    """C-GaP steps 0..steps-1 as processes, each going on from the one before."""
    out, previous = [], None
    for step in range(steps):
        save = os.path.join(d, "checkpoints", f"step{step}")
        argv = training(data, PLUGIN_TASK, smoke, budget, per_step, seed, save, warmup=warmup, keep=1)
        argv += [*SPARSITY, "--gap-partitions", str(KAPPA), "--gap-grow-step", str(step)]
        if previous is not None:
            argv.append(continue_from(os.path.join(previous, "checkpoint_last.pt"), save))
        out.append(Job(f"{name}/step{step}", argv, os.path.join(d, f"train-step{step}.log"),
                       [out[-1].name] if out else [], updates=per_step))
        previous = save
    return out


def _finetune(name: str, d: str, data: str, budget: Budget, seed: int, smoke: bool, after: Job, updates: int,
              label: str, warmup: int = None, go_on: bool = False) -> List[Job]:
    """A fixed-mask fine-tune from the last checkpoint of the step ``after`` (its dense partition is pruned
    at the first update), then its test translation; ``go_on``: with the data order where the step stopped."""
    save = os.path.join(d, "checkpoints", label)
    start = os.path.join(after.argv[after.argv.index("--save-dir") + 1], "checkpoint_last.pt")
    argv = training(data, PLUGIN_TASK, smoke, budget, updates, seed, save, warmup=warmup) + list(SPARSITY)
    argv += [continue_from(start, save)] if go_on else start_from(start)
    train = Job(f"{name}/{label}", argv, os.path.join(d, f"{label}.log"), [after.name], updates=updates)
    return [train, _test(name, data, save, updates, PLUGIN_TASK, "sparse", d, smoke, train.name, f"-{label}")]


def _prune_from_dense(key: str, output: str, data: str, budget: Budget, seed: int, smoke: bool, dense: int,
                      finetune: int, trained: Job) -> List[Job]:
    """The dense run's checkpoint at ``dense`` (``trained``: the job that trains it there) pruned once to 90%
    by magnitude, then ``finetune`` updates with fixed masks from it, then its test translation."""
    name, d = f"{key}/seed{seed}", run_dir(output, key, seed)
    pruned = os.path.join(d, "pruned.pt")
    prune = Job(f"{name}/prune", [*recipe.PROGRAMS["fairseq-partitioned-prune"],
                                  checkpoint_at(os.path.join(run_dir(output, "dense", seed), "checkpoints"), dense),
                                  "--sparsity", "0.9", "--output", pruned],
                os.path.join(d, "prune.log"), [trained.name])
    train = Job(f"{name}/train", _finetune_argv(data, budget, seed, smoke, d, finetune),
                os.path.join(d, "train.log"), [prune.name], updates=finetune)
    return [prune, train, _test(name, data, os.path.join(d, "checkpoints"), finetune, PLUGIN_TASK, "sparse", d, smoke,
                                train.name)]


def _finetune_argv(data: str, budget: Budget, seed: int, smoke: bool, d: str, updates: int) -> List[str]:
    """Prune-from-dense's fine-tune of the run in ``d``: from its pruned.pt, fixed masks, ``updates`` long."""
    return (training(data, PLUGIN_TASK, smoke, budget, updates, seed, os.path.join(d, "checkpoints"))
            + list(SPARSITY) + start_from(os.path.join(d, "pruned.pt")))


def _matched(output: str, data: str, longest: int, seed: int, budget: Budget, smoke: bool, dense_on: List[Job],
             prune: List[Job]) -> List[Job]:
    """Prune-from-dense at C-GaP's budget with its second round (``matched_splits``): the dense run trained on
    (``dense_on``: its train and test jobs at the half), pruned there and fine-tuned the other half (run
    prune-matched-D); and the rung's prune-from-dense (``prune``: its jobs) trained on to the rest of the budget
    (its own run, a chained length: train-UPDATES, test-sparse-UPDATES)."""
    (half, rest), (_, longer) = matched_splits(longest)
    out = dense_on + _prune_from_dense(f"prune-matched-{longest}", output, data, budget, seed, smoke, half, rest,
                                       dense_on[0])
    name, d = f"prune-{longest}/seed{seed}", run_dir(output, f"prune-{longest}", seed)
    train = Job(f"{name}/train-{longer}", _finetune_argv(data, budget, seed, smoke, d, longer),
                os.path.join(d, "train.log"), [prune[1].name], updates=longer)
    return out + [train, _test(name, data, os.path.join(d, "checkpoints"), longer, PLUGIN_TASK, "sparse", d, smoke,
                               train.name, f"-{longer}")]


def _ladder(output: str, data: str, rungs: List[int], seed: int, budget: Budget,
            smoke: bool) -> Tuple[List[Job], Dict[str, str]]:
    """Every job of the ladder in the order the runner starts them, and each job's arm (``arms``)."""
    longest = max(rungs)
    by_rung = {dense: [] for dense in rungs}
    arm = {}  # job name -> its arm
    # the dense run (plain fairseq), trained on from rung to rung, and to the matched budget's half
    d = run_dir(output, "dense", seed)
    dense = _chained(f"dense/seed{seed}", d, rungs + [matched_splits(longest)[0][0]],
                     lambda n: training(data, "translation", smoke, budget, n, seed, os.path.join(d, "checkpoints")),
                     data, "translation", "full", smoke)
    for length, chain in zip(rungs, dense):
        by_rung[length] += chain
        arm.update({j.name: "dense" for j in chain})
    prune = {}
    for length, chain in zip(rungs, dense):
        prune[length] = _prune_from_dense(f"prune-{length}", output, data, budget, seed, smoke, length, length,
                                          chain[0])
        by_rung[length] += prune[length]
        arm.update({j.name: f"prune-{length}" for j in prune[length]})
    for length in rungs:
        key = f"cgap-{length}"
        name, d = f"{key}/seed{seed}", run_dir(output, key, seed)
        per_step = step_length(length)
        rounds = 2 if length == longest else 1
        warmup = max(1, round(budget.warmup_updates * per_step / budget.updates))  # the study's share of a step
        steps = _cgap_steps(name, d, data, budget, seed, smoke, per_step, 1 + rounds * KAPPA, warmup)
        for r in range(1, rounds + 1):
            steps += _finetune(name, d, data, budget, seed, smoke, steps[r * KAPPA], length, f"finetune{r}")
        by_rung[length] += steps
        arm.update({j.name: key for j in steps})
    matched = _matched(output, data, longest, seed, budget, smoke, dense[-1], prune[longest])
    by_rung[longest] += matched
    arm.update({j.name: f"prune-matched-{longest}" for j in matched})
    # the fixed random mask, 2 D updates: the floor, last in each rung (the first is the study's row)
    d = run_dir(output, "random-mask", seed)
    random = _chained(f"random-mask/seed{seed}", d, [2 * n for n in rungs],
                      lambda n: training(data, PLUGIN_TASK, smoke, budget, n, seed, os.path.join(d, "checkpoints"))
                      + list(SPARSITY), data, PLUGIN_TASK, "sparse", smoke)
    for length, chain in zip(rungs, random):
        by_rung[length] += chain
        arm.update({j.name: "random-mask" for j in chain})
    # the control: the study's one-process C-GaP and the same schedule as processes
    control_budget = budget  # the study's U
    steps_k, per_step, finetune = control_budget.cgap()
    warmup = max(1, round(budget.warmup_updates * per_step / budget.updates))
    name, d = f"cgap-{per_step}-steps/seed{seed}", run_dir(output, f"cgap-{per_step}-steps", seed)
    control = study.jobs(study.ROW["cgap"], seed, output, data, control_budget, smoke=smoke, curves=False)
    steps = _cgap_steps(name, d, data, budget, seed, smoke, per_step, steps_k, warmup)
    control += steps + _finetune(name, d, data, budget, seed, smoke, steps[-1], finetune, "finetune", warmup, go_on=True)
    arm.update({j.name: "control" for j in control})
    first = rungs[0]
    floor = [j for j in by_rung[first] if j.name.startswith("random-mask/")]
    return ([j for j in by_rung[first] if j not in floor] + control + floor
            + [j for n in rungs[1:] for j in by_rung[n]]), arm


def arms(output: str, data: str, rungs: List[int], seed: int, budget: Budget, smoke: bool) -> Dict[str, List[Job]]:
    """Every job of the ladder by arm: dense (the dense run at every D), prune-D, cgap-D, prune-matched-D (at
    the longest D: the dense run trained on to the matched budget's half, its test there, run prune-matched-D,
    and prune-D trained on to the rest of the budget), random-mask (its run at every 2 D), control (the
    study's cgap and cgap-125-steps); each arm's jobs in the runner's order."""
    ordered, arm = _ladder(output, data, rungs, seed, budget, smoke)
    out: Dict[str, List[Job]] = {}
    for job in ordered:
        out.setdefault(arm[job.name], []).append(job)
    return out


def chosen(names: Sequence[str], rungs: List[int]) -> List[str]:
    """The arms that ``names`` choose (an arm of ``ARMS``: all its runs; prune-D, cgap-D, prune-matched-D: that
    rung's), in the ladder's order; ValueError names the first that is none, or needs a rung not in ``rungs``."""
    longest = max(rungs)
    every = ["dense", *[f"{family}-{d}" for family in ("prune", "cgap") for d in rungs], "random-mask", "control",
             f"prune-matched-{longest}"]
    out = set()
    for name in names:
        by_rung = re.fullmatch(rf"({'|'.join(BY_RUNG)})-(\d+)", name)
        if name in ARMS:
            out |= {a for a in every if a == name or re.fullmatch(rf"{name}-\d+", a)}
        elif by_rung is None:
            raise ValueError(f"unknown arm {name!r} (arms: {', '.join(ARMS)}; one rung's: "
                             f"{', '.join(f'{f}-D' for f in BY_RUNG)})")
        elif int(by_rung.group(2)) not in rungs:
            raise ValueError(f"{name} needs rung {by_rung.group(2)}, not in --dense {','.join(map(str, rungs))}")
        elif name not in every:
            raise ValueError(f"{name}: prune-from-dense at C-GaP's budget with its second round is at the longest "
                             f"rung only (prune-matched-{longest})")
        else:
            out.add(name)
    if not out:
        raise ValueError("choose at least one arm")
    return [a for a in every if a in out]


def jobs(output: str, data: str, rungs: List[int], seed: int, budget: Budget, smoke: bool,
         choose: Sequence[str] = ARMS) -> List[Job]:
    """The commands of the arms chosen (``chosen``; all by default) and of every job they need (the dense
    run that prune-from-dense prunes, the steps a fine-tune goes on from), in the ladder's order."""
    ordered, arm = _ladder(output, data, rungs, seed, budget, smoke)
    by_name = {j.name: j for j in ordered}
    picked = set(chosen(choose, rungs))
    todo, wanted = [j.name for j in ordered if arm[j.name] in picked], set()
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo += by_name[name].needs
    return [j for j in ordered if j.name in wanted]
