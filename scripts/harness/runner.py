"""Running the scripts' commands: one into its log (``run_logged``), or jobs side by side, resumably (``run_jobs``).

reproduce.py runs its steps one at a time with ``run_logged``; the study, the GaP ladder and the quickstart
run ``Job`` lists with ``run_jobs``; either way a job is done when its marker exists (``runs.marker``), and a
``python -m MODULE`` command starts warm (``warm``: forked from a process that has imported MODULE). A
job's command line may name a checkpoint that exists only once the jobs before it have run
(``checkpoint_at``, ``continue_from``): ``resolve`` finds it when the job starts. Not a command itself.
"""
import glob
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from harness import console, fairseq_log, runs, warm


@dataclass
class Job:
    """One command: trains, prunes or translates; done when its marker file exists."""
    name: str  # ROW/seedN/what (reproduce.py: train, prune, generate-full, ...)
    argv: List[str]  # a python -m ... command line without the interpreter (reproduce.py: a console script's)
    log: str
    needs: List[str] = field(default_factory=list)  # names of the jobs it starts after
    updates: Optional[int] = None  # a training: its length, for the progress lines

    @property
    def done(self) -> bool:
        """Whether the job succeeded before (a training trained further runs again)."""
        return runs.done(self.log, self.updates)

    def mark_done(self):
        runs.mark_done(self.log, self.updates)


CHECKPOINT_AT = "@checkpoint-at-update:"  # a checkpoint whose file name holds its epoch: found when the job starts


def checkpoint_at(ckpt_dir: str, updates: int) -> str:
    return f"{CHECKPOINT_AT}{ckpt_dir}:{updates}"


CONTINUE_FROM = "@continue-from:"  # a training that goes on from another's checkpoint: resolved when it starts


def continue_from(checkpoint: str, save_dir: str) -> str:
    """Continue another training's run from its ``checkpoint`` with a fresh optimizer, learning rate and
    meters, but its data order where it stopped (``--restore-file`` and fairseq's resets, unlike
    ``recipe.start_from``, which starts the data over); relaunched after its own first checkpoint, the
    training resumes from that instead."""
    return f"{CONTINUE_FROM}{save_dir}:{checkpoint}"


def resolve(argv: List[str]) -> List[str]:
    """The command line with every ``checkpoint_at`` replaced by the checkpoint fairseq wrote at that
    update: ``checkpoint_EPOCH_UPDATES.pt`` (where --save-interval-updates divides it), or
    ``checkpointEPOCH.pt`` when the update ended an epoch (fairseq then writes that one instead), or
    ``checkpoint_last.pt`` when it is the training's last update and neither (a fine-tune of 375 updates
    saved every 250: fairseq writes only checkpoint_last.pt at its end); and
    every ``continue_from`` by its flags."""
    out = []
    for a in argv:
        if a.startswith(CONTINUE_FROM):
            save_dir, checkpoint = a[len(CONTINUE_FROM):].split(":", 1)
            if not os.path.isfile(os.path.join(save_dir, "checkpoint_last.pt")):
                out += ["--restore-file", checkpoint, "--reset-optimizer", "--reset-lr-scheduler", "--reset-meters"]
            continue
        if a.startswith(CHECKPOINT_AT):
            ckpt_dir, updates = a[len(CHECKPOINT_AT):].rsplit(":", 1)
            found = sorted(glob.glob(os.path.join(ckpt_dir, f"checkpoint_*_{updates}.pt")))
            found = found or [p for p in glob.glob(os.path.join(ckpt_dir, "checkpoint[0-9]*.pt"))
                              if _updates_of(p) == int(updates)]
            last = os.path.join(ckpt_dir, "checkpoint_last.pt")  # a training that stopped between intervals
            if not found and os.path.isfile(last) and _updates_of(last) == int(updates):
                found = [last]
            if not found:
                raise FileNotFoundError(f"no checkpoint at update {updates} in {ckpt_dir}")
            a = found[-1]
        out.append(a)
    return out


def _updates_of(path: str) -> int:
    from fairseq_partitioned import checkpoints  # torch: only for an epoch's checkpoint

    return checkpoints.load_lazily(path)["optimizer_history"][-1]["num_updates"]


def run_logged(prog: str, what: str, argv: Sequence[str], log: str, env: Optional[dict] = None,
               append: bool = False, stderr_to_console: bool = False):
    """Run ``argv`` with its output into the file ``log``, after ``PROG: what`` on the console.

    The log starts with the command (``append``: a resumed run adds to its log, each attempt marked by
    its command line). If the command fails, the log's last lines go to stderr and the script exits
    with one line that names the step and the log. ``stderr_to_console``: the command's stderr stays on
    the console (fairseq's progress bar), only its stdout goes into the log.
    """
    print(f"{prog}: {what}", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
    with open(log, "a" if append else "w") as f:
        f.write(f"# {prog}: {shlex.join(argv)}\n")
        f.flush()
        rc = warm.start(list(argv), f.fileno(), None if stderr_to_console else f.fileno(), env).wait()
    if rc != 0:
        print(console.log_tail(log), end="", file=sys.stderr)
        console.fail(prog, f"{what} failed (exit {rc}), log: {log}")


def run_jobs(jobs: List[Job], parallel: int, threads: int, prog: str, on_progress: Callable[[], None] = lambda: None):
    """Run the jobs, ``parallel`` at a time, each after the jobs it needs; skip the done ones.
    ``on_progress`` is called after every job that finishes and with every progress line (5 minutes)."""
    done = {j.name for j in jobs if j.done}
    todo = [j for j in jobs if j.name not in done]
    total = len(todo)
    print(f"{prog}: {len(done)} of {len(jobs)} commands already done, {total} to run, {parallel} at a time", flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning,ignore::FutureWarning,ignore::UserWarning"
    running: Dict[str, tuple] = {}
    start, last_status, finished = time.time(), time.time(), 0
    while todo or running:
        for name, (job, proc, log, t0) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            if proc.returncode != 0:
                for _, other, _, _ in running.values():
                    other.terminate()
                print(console.log_tail(job.log), end="", file=sys.stderr)
                console.fail(prog, f"{name} failed (exit {proc.returncode}), log: {job.log}")
            job.mark_done()
            done.add(name)
            finished += 1
            print(f"{prog}: [{finished}/{total}] {name} done in {minutes(time.time() - t0)} "
                  f"(study {minutes(time.time() - start)})", flush=True)
            on_progress()
        ready = [j for j in todo if all(n in done for n in j.needs)]
        while ready and len(running) < parallel:
            job = ready.pop(0)
            todo.remove(job)
            os.makedirs(os.path.dirname(job.log), exist_ok=True)
            log = open(job.log, "a")
            try:
                argv = [sys.executable, *resolve(job.argv)]
            except FileNotFoundError as e:
                console.fail(prog, f"{job.name}: {e}")
            log.write(f"# {prog}: {' '.join(argv)}\n")
            log.flush()
            running[job.name] = (job, warm.start(argv, log.fileno(), log.fileno(), env), log, time.time())
            print(f"{prog}: started {job.name}", flush=True)
        if todo and not running:
            console.fail(prog, f"{todo[0].name} waits for a job that is not in this study")
        if time.time() - last_status > 300 and running:
            last_status = time.time()
            states = [f"{n} {fairseq_log.updates_done(j.log)}/{j.updates} updates" if j.updates else n
                      for n, (j, _, _, _) in running.items()]
            print(f"{prog}: running: {'; '.join(states)}", flush=True)
            on_progress()
        time.sleep(0.05)


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def print_dry_run(jobs: List[Job]):
    """``--dry-run``: every job's command as it would run, after the names of the jobs it waits for."""
    for job in jobs:
        print(f"# {job.name}" + (f" (after {', '.join(job.needs)})" if job.needs else ""))
        print("python " + " ".join(job.argv) + f" > {job.log}")


def run_recorded(jobs: List[Job], parallel: int, threads: int, prog: str, command: str,
                 record: Callable[[dict], None]):
    """``run_jobs``, with the invocation (``command``, when it started, its seconds so far, whether it finished)
    handed to ``record`` when it starts, after every job, with every progress line and when all are done."""
    start = time.time()
    invocation = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": 0, "finished": False, "command": command}

    def progress(finished: bool = False):
        record(dict(invocation, seconds=round(time.time() - start), finished=finished))

    progress()
    run_jobs(jobs, parallel, threads, prog=prog, on_progress=progress)
    print(f"{prog}: all commands done in {minutes(time.time() - start)}", flush=True)
    progress(finished=True)
