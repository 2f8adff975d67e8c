"""fairseq-partitioned-pgap: parallel grow-and-prune, P-GaP (Ma et al., ICLR 2022, Algorithm 2).

    fairseq-partitioned-pgap --save-dir DIR --rounds K --step-epochs T [--finetune-epochs T'] \\
        [--parallel N] [--print-commands] -- FAIRSEQ_TRAIN_ARGS...

FAIRSEQ_TRAIN_ARGS is a whole fairseq-train command line without --save-dir/--max-epoch (data,
--user-dir fairseq_partitioned, --task translation_with_partitioned_model, --arch, --optimizer
adam_for_partitioned_model, --gap-sparsity S, --gap-partitions kappa, ...). Each round runs kappa
workers, worker i a fairseq-train process that grows partition i (``--gap-grow-partition i``) for T
epochs from the same start (round 0: the same seed, so the same random weights and masks, every matrix
masked as in the official code: ``--gap-first-step masked`` unless given; later rounds: the combined
checkpoint of the round before). Then the dense partitions (a worker's checkpoint holds its model at S,
the dense values set aside in its task state) are combined and the whole model is pruned back to S
(lines 9-11). After K rounds the model is fine-tuned with fixed masks for T' epochs.

Workers run concurrently as local processes (one GPU each when there are GPUs, else on the CPU with the
cores shared out); ``--print-commands`` prints every command instead, for a cluster scheduler, with
``--combine-round r`` as the step that combines round r.

Combine rule: ``pruning/combine.py`` (every tensor from the one worker that owns it; none averaged).
"""
import argparse
import os
import shlex
import subprocess
import sys
from typing import List, Tuple

import torch
from omegaconf import open_dict

from .. import checkpoints
from ..errors import UnreadableCheckpoint, UsageError
from ..pruning import PruningSpec, combine, owners, prune
from ..tasks.gap_pruning_config import add_gap_pruning_args


def _train_flags(train_args: List[str]) -> Tuple[argparse.Namespace, PruningSpec]:
    """What the workers' fairseq-train arguments say of the GaP model (the task's own flags, read as the
    task reads them): its partitions, ``--cpu``, and its pruning options."""
    p = argparse.ArgumentParser(prog="fairseq-partitioned-pgap", add_help=False)
    add_gap_pruning_args(p)
    p.add_argument("--cpu", action="store_true")
    known, _ = p.parse_known_args(train_args)
    for flag in ("--save-dir", "--max-epoch", "--restore-file", "--gap-grow-partition", "--gap-grow-step", "--alternate"):
        if flag in train_args:
            raise UsageError(f"{flag} is set by fairseq-partitioned-pgap: remove it from the fairseq-train arguments")
    if not 0 < known.gap_sparsity < 1:
        raise UsageError("the fairseq-train arguments need --gap-sparsity S with 0 < S < 1")
    return known, PruningSpec.from_args(known)


def worker_command(train_args, save_dir, rnd, worker, step_epochs) -> List[str]:
    cmd = ["fairseq-train", *train_args, "--gap-grow-partition", str(worker),
           "--save-dir", worker_dir(save_dir, rnd, worker), "--max-epoch", str((rnd + 1) * step_epochs)]
    if rnd > 0:
        cmd += ["--restore-file", combined_path(save_dir, rnd - 1),
                "--reset-optimizer", "--reset-lr-scheduler", "--reset-meters"]
    elif "--gap-first-step" not in train_args:
        cmd += ["--gap-first-step", "masked"]  # the official P-GaP: every worker grows from the random masks
    return cmd


def finetune_command(train_args, save_dir, rounds, step_epochs, finetune_epochs) -> List[str]:
    return ["fairseq-train", *train_args, "--save-dir", os.path.join(save_dir, "finetune"),
            "--restore-file", combined_path(save_dir, rounds - 1),
            "--reset-optimizer", "--reset-lr-scheduler", "--reset-meters",
            "--max-epoch", str(rounds * step_epochs + finetune_epochs)]


def worker_dir(save_dir, rnd, worker):
    return os.path.join(save_dir, f"round{rnd}", f"worker{worker}")


def combined_path(save_dir, rnd):
    return os.path.join(save_dir, f"round{rnd}", "combined.pt")


def combine_round(save_dir: str, rnd: int, flags: argparse.Namespace, spec: PruningSpec) -> str:
    """Algorithm 2 lines 9-11: combine the workers' dense partitions, prune the whole model to S."""
    kappa = flags.gap_partitions
    states = [checkpoints.load(os.path.join(worker_dir(save_dir, rnd, w), "checkpoint_last.pt")) for w in range(kappa)]
    models = [checkpoints.with_set_aside(s) for s in states]  # each worker's grown partition, dense
    model = combine(models, owners(models[0], kappa, flags.gap_partition_layout))
    names = spec.prunable_names(list(model))
    pruned = prune({n: model[n].float() for n in names}, spec)
    checkpoints.set_masks(model, pruned)
    state = states[0]
    state["model"] = model
    state.pop("last_optimizer_state", None)  # the next round starts its optimizer afresh
    with open_dict(state["cfg"]):
        state["cfg"].task.gap_grow_partition = -1
    gap = checkpoints.task_state(state)["gap"]
    state["task_state"]["gap"] = {**gap, "grown": {}, "set_aside": {}}  # pruned: nothing grown
    state["task_state"]["counts"] = checkpoints.sparse_counts(model)
    path = combined_path(save_dir, rnd)
    checkpoints.save(state, path)
    return path


def worker_done(state: dict, rnd: int, step_epochs: int) -> bool:
    """Whether a worker's checkpoint holds the whole of its round: epochs 1..(rnd + 1) T (a round after the
    first starts where the round before ended). Once an epoch ends, fairseq saves its iterator at the
    start of the next: the round is done at epoch (rnd + 1) T + 1 with no iteration in it."""
    itr = state["extra_state"]["train_iterator"]
    position, end = (itr["epoch"], itr.get("iterations_in_epoch", 0)), ((rnd + 1) * step_epochs + 1, 0)
    if position > end:
        raise UsageError(
            f"a worker of round {rnd + 1} trained past its round (its checkpoint is at epoch {itr['epoch']}, the round "
            f"ends after epoch {end[0] - 1}): use the --step-epochs the run was started with, or another --save-dir"
        )
    return position == end


def _where(state: dict) -> str:
    itr = state["extra_state"]["train_iterator"]
    updates = state["optimizer_history"][-1]["num_updates"]
    return f"epoch {itr['epoch']}, {itr.get('iterations_in_epoch', 0)} updates into it ({updates} updates in all)"


def workers_to_train(save_dir: str, rnd: int, kappa: int, step_epochs: int) -> List[int]:
    """The workers of round ``rnd`` that have not trained all of it (each one said in a line). A worker whose
    checkpoint cannot be read is retrained: the file is moved aside (``.unreadable``)."""
    todo = []
    for worker in range(kappa):
        path = os.path.join(worker_dir(save_dir, rnd, worker), "checkpoint_last.pt")
        if not os.path.isfile(path):
            todo.append(worker)
            continue
        try:
            state = checkpoints.load_lazily(path)
        except UnreadableCheckpoint as error:
            os.replace(path, path + ".unreadable")
            print(f"P-GaP round {rnd + 1}: worker {worker}: {error}; retraining it (the file is now "
                  f"{path}.unreadable)", flush=True)
            todo.append(worker)
            continue
        if not worker_done(state, rnd, step_epochs):
            # round 0 resumes from the worker's own checkpoint; a later round starts from the combined one
            how = "resuming it" if rnd == 0 else f"retraining it from {combined_path(save_dir, rnd - 1)}"
            print(f"P-GaP round {rnd + 1}: worker {worker} stopped at {_where(state)}: {how}", flush=True)
            todo.append(worker)
    return todo


def check_round_trained(save_dir: str, rnd: int, kappa: int, step_epochs: int):
    """Every worker of the round trained all of it, before its partition is combined."""
    for worker in range(kappa):
        path = os.path.join(worker_dir(save_dir, rnd, worker), "checkpoint_last.pt")
        state = checkpoints.load_lazily(path)
        if not worker_done(state, rnd, step_epochs):
            raise UsageError(
                f"worker {worker} of round {rnd + 1} did not train all of its round ({step_epochs} epochs): {path} "
                f"stops at {_where(state)}; it saves at every epoch's end unless the fairseq-train arguments "
                "say otherwise (--max-update, --save-interval)"
            )


def run_workers(commands: List[List[str]], logs: List[str], parallel: int, cpu: bool):
    """Run the worker commands, ``parallel`` at a time; fail with the tail of a failed worker's log."""
    gpus = 0 if cpu else torch.cuda.device_count()
    threads = max(1, (os.cpu_count() or 1) // max(1, parallel))
    pending = list(range(len(commands)))
    while pending:
        batch, pending = pending[:parallel], pending[parallel:]
        procs = []
        for slot, i in enumerate(batch):
            env = dict(os.environ)
            cmd = list(commands[i])
            if cmd[0] == "fairseq-train":  # the fairseq of this interpreter, PATH or not
                cmd = [sys.executable, "-m", "fairseq_cli.train", *cmd[1:]]
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
            else:
                env["OMP_NUM_THREADS"] = str(threads)
                if "--cpu" not in cmd:
                    cmd.append("--cpu")
            os.makedirs(os.path.dirname(logs[i]), exist_ok=True)
            log = open(logs[i], "w")
            procs.append((i, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
        for i, proc, log in procs:
            rc = proc.wait()
            log.close()
            if rc != 0:
                tail = open(logs[i]).read()[-2000:]
                raise RuntimeError(f"worker {i} failed (exit {rc}), log {logs[i]}:\n{tail}")


def main(args, train_args):
    flags, spec = _train_flags(train_args)
    kappa = flags.gap_partitions
    if args.rounds < 1 or args.step_epochs < 1:
        raise UsageError("--rounds and --step-epochs must be >= 1")
    if args.combine_round is not None:
        check_round_trained(args.save_dir, args.combine_round, kappa, args.step_epochs)
        print(combine_round(args.save_dir, args.combine_round, flags, spec))
        return
    me = ["fairseq-partitioned-pgap", "--save-dir", args.save_dir, "--rounds", str(args.rounds),
          "--step-epochs", str(args.step_epochs)]
    for rnd in range(args.rounds):
        commands = [worker_command(train_args, args.save_dir, rnd, w, args.step_epochs) for w in range(kappa)]
        if args.print_commands:
            print(f"# round {rnd}: {kappa} workers, in parallel")
            for cmd in commands:
                print(shlex.join(cmd))
            print(shlex.join(me + ["--combine-round", str(rnd), "--", *train_args]))
            continue
        todo = workers_to_train(args.save_dir, rnd, kappa, args.step_epochs)
        logs = [os.path.join(worker_dir(args.save_dir, rnd, w), "train.log") for w in todo]
        print(f"P-GaP round {rnd + 1}/{args.rounds}: {len(todo)} workers", flush=True)
        run_workers([commands[w] for w in todo], logs, args.parallel or kappa, flags.cpu)
        check_round_trained(args.save_dir, rnd, kappa, args.step_epochs)
        path = combine_round(args.save_dir, rnd, flags, spec)
        print(f"P-GaP round {rnd + 1}/{args.rounds}: combined and pruned to {spec.sparsity}: {path}", flush=True)
    if args.finetune_epochs > 0:
        cmd = finetune_command(train_args, args.save_dir, args.rounds, args.step_epochs, args.finetune_epochs)
        if args.print_commands:
            print("# fine-tune with fixed masks")
            print(shlex.join(cmd))
            return
        log = os.path.join(args.save_dir, "finetune", "train.log")
        print(f"P-GaP fine-tune: {args.finetune_epochs} epochs, log {log}", flush=True)
        run_workers([cmd], [log], 1, flags.cpu)


def cli_main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        sys.exit("fairseq-partitioned-pgap: error: give the fairseq-train arguments after --")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="fairseq-partitioned-pgap", description=__doc__.split("\n")[0])
    parser.add_argument("--save-dir", required=True, help="rounds, workers and the fine-tune go below this")
    parser.add_argument("--rounds", type=int, required=True, help="K: P-GaP rounds (one step each)")
    parser.add_argument("--step-epochs", type=int, required=True, help="T: epochs each worker trains per round")
    parser.add_argument("--finetune-epochs", type=int, default=0, help="T': fine-tune epochs with fixed masks")
    parser.add_argument("--parallel", type=int, default=0, help="workers at a time (default: all kappa)")
    parser.add_argument("--print-commands", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--combine-round", type=int, default=None, help="only combine this round's workers")
    args = parser.parse_args(argv[:split])
    try:
        main(args, argv[split + 1:])
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        sys.exit(f"fairseq-partitioned-pgap: error: {e}")


if __name__ == "__main__":
    cli_main()
