"""Run one pytest node N times, one run at a time, each with its own --basetemp; count the failures.

usage: python scripts/repeat_test.py N NODE [--keep DIR] [-- PYTEST_ARGS...]
  e.g. .venv/bin/python scripts/repeat_test.py 200 \
           tests/test_data_parallel.py::test_two_cpu_workers_train_with_alternate

A flaky test fails rarely: this is how to show that it no longer does. Each run gets a fresh --basetemp
(concurrent or successive pytest runs sharing the default one delete each other's directories) and no
cache; a passing run's directory is deleted, a failing run's is kept under --keep with its output
(output.txt), so that what the test left there (a worker's core file) can be read afterwards. Every
failure is printed with pytest's exit status and the exit signal of each process the test names (lines
like "rank 1 exited with signal SIGABRT") or, where pytest itself died, its own signal.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

STATUS_LINE = re.compile(r"(rank \d+ exited with [^\n]*|Fatal Python error: [^\n]*|terminate called [^\n]*)")


def exit_status(returncode: int) -> str:
    if returncode < 0:
        return f"signal {signal.Signals(-returncode).name}"
    return f"status {returncode}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=int)
    parser.add_argument("node", help="a pytest node id, e.g. tests/test_x.py::test_y")
    parser.add_argument("--keep", help="where failing runs are kept (default: a new folder in /tmp)")
    parser.add_argument("pytest_args", nargs="*", help="after --: more pytest arguments")
    args = parser.parse_args(argv)
    keep = args.keep or tempfile.mkdtemp(prefix="repeat_test-")
    os.makedirs(keep, exist_ok=True)
    print(f"{args.runs} runs of {args.node}; failing runs kept in {keep}", flush=True)

    failures = []
    for i in range(1, args.runs + 1):
        basetemp = os.path.join(keep, f"run{i}")
        start = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={basetemp}",
             args.node, *args.pytest_args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        seconds = time.time() - start
        if proc.returncode == 0:
            shutil.rmtree(basetemp, ignore_errors=True)
            print(f"run {i}/{args.runs}: passed ({seconds:.0f} s)", flush=True)
            continue
        os.makedirs(basetemp, exist_ok=True)
        with open(os.path.join(basetemp, "output.txt"), "w") as f:
            f.write(proc.stdout)
        statuses = sorted(set(STATUS_LINE.findall(proc.stdout)))
        failures.append((i, proc.returncode, statuses))
        print(f"run {i}/{args.runs}: FAILED, pytest {exit_status(proc.returncode)} ({seconds:.0f} s); "
              + ("; ".join(statuses) or "no process status in the output") + f"; log {basetemp}/output.txt",
              flush=True)

    print(f"{args.runs} runs, {len(failures)} failed")
    for i, returncode, statuses in failures:
        print(f"  run {i}: pytest {exit_status(returncode)}; " + ("; ".join(statuses) or "-"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
