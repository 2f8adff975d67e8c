"""The GaP ladder's commands: C-GaP against prune-from-dense as the steps grow longer (scripts/gap_ladder.py).

The study's model and recipe (harness/study/design.py), one seed; for each dense pre-training length D:
prune-from-dense (D dense updates, a one-shot 90% prune, D fine-tune updates), C-GaP with steps of N = D / 4
updates, each its own process going on from the step before (``continue_from``), with a fine-tune of D
updates after the first round (and after the second at the longest D), and a fixed random mask trained
2 D updates; and the control at the study's N = 125. Runs live in OUTPUT/ARM/seedN/ (runs.run_dir).
Importing this module needs neither fairseq nor torch.
"""
import os
from typing import List

from harness import recipe
from harness.recipe import PLUGIN_TASK, start_from
from harness.runner import Job, checkpoint_at, continue_from
from harness.runs import run_dir
from harness.study import design as study
from harness.study.design import Budget, generate, training

SPARSITY = ("--gap-sparsity", "0.9")
KAPPA = 3
CONTROL_STEP = 125  # the study's C-GaP step (9 steps of 125, 375 fine-tune updates, U = 1,500)


def step_length(dense: int) -> int:
    """N = D / 4, rounded down (D = 750: 187; the rung's C-GaP budget is then 4 N + D, 2 updates short)."""
    return dense // 4


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


def jobs(output: str, data: str, rungs: List[int], seed: int, budget: Budget, smoke: bool) -> List[Job]:
    """Every command of the ladder, rung by rung (the runner starts them in this order): each rung
    complete before the next (dense, prune-from-dense, C-GaP, then the random mask), the N = 125
    control after the first rung's C-GaP."""
    by_rung = {dense: [] for dense in rungs}
    # the dense run (plain fairseq), trained on from rung to rung
    d = run_dir(output, "dense", seed)
    dense = _chained(f"dense/seed{seed}", d, rungs,
                     lambda n: training(data, "translation", smoke, budget, n, seed, os.path.join(d, "checkpoints")),
                     data, "translation", "full", smoke)
    for length, chain in zip(rungs, dense):
        by_rung[length] += chain
    for length, chain in zip(rungs, dense):
        key = f"prune-{length}"
        name, d = f"{key}/seed{seed}", run_dir(output, key, seed)
        pruned = os.path.join(d, "pruned.pt")
        prune = Job(f"{name}/prune", [*recipe.PROGRAMS["fairseq-partitioned-prune"],
                                      checkpoint_at(os.path.join(run_dir(output, "dense", seed), "checkpoints"), length),
                                      "--sparsity", "0.9", "--output", pruned],
                    os.path.join(d, "prune.log"), [chain[0].name])
        train = Job(f"{name}/train", training(data, PLUGIN_TASK, smoke, budget, length, seed,
                                               os.path.join(d, "checkpoints")) + list(SPARSITY) + start_from(pruned),
                    os.path.join(d, "train.log"), [prune.name], updates=length)
        by_rung[length] += [prune, train, _test(name, data, os.path.join(d, "checkpoints"), length, PLUGIN_TASK,
                                                "sparse", d, smoke, train.name)]
    for length in rungs:
        key = f"cgap-{length}"
        name, d = f"{key}/seed{seed}", run_dir(output, key, seed)
        per_step = step_length(length)
        rounds = 2 if length == max(rungs) else 1
        warmup = max(1, round(budget.warmup_updates * per_step / budget.updates))  # the study's share of a step
        steps = _cgap_steps(name, d, data, budget, seed, smoke, per_step, 1 + rounds * KAPPA, warmup)
        by_rung[length] += steps
        for r in range(1, rounds + 1):
            by_rung[length] += _finetune(name, d, data, budget, seed, smoke, steps[r * KAPPA], length, f"finetune{r}")
    # the fixed random mask, 2 D updates: the floor, last in each rung (the first is the study's row)
    d = run_dir(output, "random-mask", seed)
    random = _chained(f"random-mask/seed{seed}", d, [2 * n for n in rungs],
                      lambda n: training(data, PLUGIN_TASK, smoke, budget, n, seed, os.path.join(d, "checkpoints"))
                      + list(SPARSITY), data, PLUGIN_TASK, "sparse", smoke)
    for length, chain in zip(rungs, random):
        by_rung[length] += chain
    # the control: the study's one-process C-GaP and the same schedule as processes
    control_budget = budget  # the study's U
    steps_k, per_step, finetune = control_budget.cgap()
    warmup = max(1, round(budget.warmup_updates * per_step / budget.updates))
    name, d = f"cgap-{per_step}-steps/seed{seed}", run_dir(output, f"cgap-{per_step}-steps", seed)
    control = study.jobs(study.ROW["cgap"], seed, output, data, control_budget, smoke=smoke, curves=False)
    steps = _cgap_steps(name, d, data, budget, seed, smoke, per_step, steps_k, warmup)
    control += steps + _finetune(name, d, data, budget, seed, smoke, steps[-1], finetune, "finetune", warmup, go_on=True)
    first = rungs[0]
    floor = [j for j in by_rung[first] if j.name.startswith("random-mask/")]
    return ([j for j in by_rung[first] if j not in floor] + control + floor
            + [j for n in rungs[1:] for j in by_rung[n]])
