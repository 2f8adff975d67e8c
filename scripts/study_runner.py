"""Running a study's commands: the data it needs, then its jobs side by side on the cores, resumably.

Used by scripts/study.py and scripts/quickstart.py; not a command itself.
"""
import os
import subprocess
import sys
import time
from typing import Callable, Dict, List

import console
import study_design
from study_design import Job


def prepare_data(output: str, prog: str, limit: int = 0) -> str:
    data = os.path.join(output, "data-bin")
    if not os.path.isfile(os.path.join(data, f"dict.{study_design.TGT}.txt")):
        argv = [sys.executable, os.path.join(study_design.ROOT, "data-prep", "prepare_bible.py"),
                "--output", os.path.join(output, "text"), "--binarize", data]
        console.run_logged(prog, f"preparing the Bible corpus into {data}", argv + (["--limit", str(limit)] if limit else []),
                           os.path.join(output, "prepare.log"))
    return data


def _updates_done(log: str) -> int:
    """The last update count a training log reports (for the progress line)."""
    tail = console.log_tail(log, 200)
    found = [line.rsplit('"num_updates": "', 1)[1].split('"')[0] for line in tail.splitlines()
             if '"num_updates": "' in line]
    return int(found[-1]) if found else 0


def run_jobs(jobs: List[Job], parallel: int, threads: int, prog: str, on_progress: Callable[[], None] = lambda: None):
    """Run the jobs, ``parallel`` at a time, each after the jobs it needs; skip the done ones.
    ``on_progress`` is called after every job that finishes and with every progress line (5 minutes)."""
    done = {j.name for j in jobs if os.path.isfile(j.marker)}
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
            open(job.marker, "w").close()
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
                argv = [sys.executable, *study_design.resolve(job.argv)]
            except FileNotFoundError as e:
                console.fail(prog, f"{job.name}: {e}")
            log.write(f"# {prog}: {' '.join(argv)}\n")
            log.flush()
            running[job.name] = (job, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env), log,
                                 time.time())
            print(f"{prog}: started {job.name}", flush=True)
        if todo and not running:
            console.fail(prog, f"{todo[0].name} waits for a job that is not in this study")
        if time.time() - last_status > 300 and running:
            last_status = time.time()
            states = [f"{n} {_updates_done(j.log)}/{j.updates} updates" if j.updates else n
                      for n, (j, _, _, _) in running.items()]
            print(f"{prog}: running: {'; '.join(states)}", flush=True)
            on_progress()
        time.sleep(1)


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
