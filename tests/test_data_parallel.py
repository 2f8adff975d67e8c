"""Data parallelism on CPU: two fairseq-train processes over gloo survive ATS core steps, and end without a
worker thread of their process groups left to run into the interpreter's finalization (docs/design.md)."""
import os
import signal
import socket
import subprocess
import sys


import fairseq_helpers as h


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# fairseq-train as `python -m fairseq_cli.train` runs it, with one more exit handler, registered before the
# plugin's and so run after it, the last before finalization: it prints the gloo worker threads still alive
# (torch names them pt_gloo_runloop) and whether a process group is still initialised.
TRAIN_WITH_EXIT_PROBE = """
import atexit, os, sys
def probe():
    import torch.distributed as dist
    names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
    print(f"at exit: {names.count('pt_gloo_runloop')} gloo worker threads; initialized {dist.is_initialized()}")
atexit.register(probe)
sys.argv[0] = "fairseq-train"
from fairseq_cli.train import cli_main
cli_main()
"""


def _exit_status(returncode):
    return f"signal {signal.Signals(-returncode).name}" if returncode < 0 else f"status {returncode}"


def test_two_cpu_workers_train_with_alternate(tmp_path):
    data = str(tmp_path / "data")
    os.makedirs(data)
    h.create_dummy_data(data, num_examples=200)
    h.preprocess_translation_data(data)
    save = str(tmp_path / "ckpt")
    port = _free_port()
    argv = h.train_args(data, ["--alternate", "--max-update", "4", "--max-epoch", "10",
                               "--distributed-world-size", "2", "--distributed-init-method",
                               f"tcp://127.0.0.1:{port}", "--distributed-no-spawn",
                               "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp"], save_dir=save)
    # a worker that dies prints its Python stacks; it runs in tmp_path, where a core file would go
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TRAIN_WITH_EXIT_PROBE, *argv, "--distributed-rank", str(rank)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env,
        )
        for rank in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"rank {rank} exited with {_exit_status(p.returncode)}\n{out[-3000:]}"
        # the groups are destroyed before finalization (process_groups.py): fairseq's global group, which
        # carried every collective, has no worker thread left; the default group's two stay idle (torch
        # keeps a reference the plugin cannot drop; fairseq runs no tensor collective on it)
        assert "at exit: 2 gloo worker threads; initialized False" in out, out[-3000:]
    state = h.load_checkpoint(os.path.join(save, "checkpoint_last.pt"))
    assert state["optimizer_history"][-1]["num_updates"] == 4
    # every W (extension) took part in 2 of the 4 updates only
    steps = sorted({s["step"] for s in state["last_optimizer_state"]["state"].values()})
    assert steps == [2, 4]
    assert len(h.hypotheses(h.generate_main(data, [], path=os.path.join(save, "checkpoint_last.pt")))) > 40
