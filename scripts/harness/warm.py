"""Warm starts: a command ``python -m MODULE ...`` forked from a process that has already imported MODULE.

Importing fairseq takes a fresh process about 5 s of CPU (torch, scipy, scikit-learn, every fairseq task and
model), more than a tiny training or a fairseq-generate of a few hundred sentences does after it. The scripts
run many such commands (the study scores every checkpoint on the valid split), so ``runner`` starts each
``python -m MODULE`` command through a server: a fresh interpreter, started once per module, environment and
working directory, that imports MODULE as a plain module (its top-level code runs, fairseq's logging set-up
included, but not its ``__main__`` block) and then forks one child per command. The child points its
standard output and error at the command's, runs MODULE as ``__main__`` with the command's arguments (as
``python -m`` does), runs the exit handlers and exits with the command's status. What the child computes is
what a fresh process computes (tests/test_warm.py compares checkpoints and translations bit for bit); what it
does not repeat is the import, the lines fairseq logs while importing (a tensorboardX notice), and the
garbage collector's walks over the import's objects (frozen in the server).

Only the console scripts' modules start warm (``MODULES``: importing them only defines their functions); any
other command is a fresh process, as is every command with ``FAIRSEQ_PARTITIONED_COLD_STARTS=1`` in its
environment. Not a command itself.
"""
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

COLD = "FAIRSEQ_PARTITIONED_COLD_STARTS"
# The modules that start warm: the console scripts the scripts run, whose import only defines (their work is
# under ``if __name__ == "__main__"``). Any other module runs cold: its import might already do its work.
MODULES = ("fairseq_cli.train", "fairseq_cli.generate",
           "fairseq_partitioned.cli.prune", "fairseq_partitioned.cli.pgap")
# What a module's run imports late, that the server imports too: torch's optimizers import torch._dynamo when
# the first one is built (measured: 1.4 s of a 16-update training's 5 s after fairseq's import)
LATE_IMPORTS = {"fairseq_cli.train": ("torch._dynamo",)}


class Started:
    """A command forked by a server: ``poll``, ``wait``, ``terminate``, ``returncode``, as ``subprocess.Popen``'s."""

    def __init__(self, server: "_Server", pid: int):
        self.server, self.pid, self.returncode = server, pid, None

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            self.server.collect(block=False)
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            self.server.collect(block=True)
        return self.returncode

    def terminate(self):
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


class _Server:
    def __init__(self, python: str, module: str, env: Optional[dict], cwd: Optional[str]):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with open(os.devnull, "w") as devnull:  # the import's own output (fairseq's notices) goes nowhere
            self.proc = subprocess.Popen([python, os.path.abspath(__file__), module, str(theirs.fileno())], env=env,
                                         cwd=cwd, stdout=devnull, stderr=devnull, pass_fds=[theirs.fileno()])
        theirs.close()
        self.started: Dict[int, Started] = {}  # the running commands, by process id

    def start(self, argv: List[str], stdout: int, stderr: int) -> Started:
        socket.send_fds(self.sock, [json.dumps(argv).encode()], [stdout, stderr])
        while True:
            kind, pid, code = self._receive(block=True)
            if kind == "started":  # the server sends it before it can see that command exit
                self.started[pid] = Started(self, pid)
                return self.started[pid]
            self.started.pop(pid).returncode = code

    def collect(self, block: bool):
        """The exit statuses the server has sent: at least one if ``block``."""
        while True:
            message = self._receive(block=block)
            if message is None:
                return
            _, pid, code = message
            self.started.pop(pid).returncode = code
            block = False

    def _receive(self, block: bool) -> Optional[Tuple[str, int, int]]:
        if not block and not select.select([self.sock], [], [], 0)[0]:
            return None
        data = self.sock.recv(256)
        if not data:
            raise RuntimeError(f"the warm-start server for {self.proc.args[2]} exited ({self.proc.wait()})")
        kind, pid, code = data.decode().split()
        return kind, int(pid), int(code)


_SERVERS: Dict[tuple, _Server] = {}


def start(argv: List[str], stdout: int, stderr: Optional[int] = None, env: Optional[dict] = None,
          cwd: Optional[str] = None):
    """Start ``argv`` (``[python, ...]``) with its standard output on the file descriptor ``stdout`` and its
    error on ``stderr`` (None: this process's own), in the environment ``env`` and the working directory ``cwd``
    (None: this process's), as ``subprocess.Popen`` would; warm when it is ``python -m MODULE`` of ``MODULES``.
    Returns an object with Popen's ``poll``, ``wait``, ``terminate`` and ``returncode``."""
    env_now = dict(os.environ if env is None else env)
    if len(argv) < 3 or argv[1] != "-m" or argv[2] not in MODULES or env_now.get(COLD) == "1":
        return subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=env, cwd=cwd)
    key = (argv[0], argv[2], os.path.abspath(cwd or os.getcwd()), tuple(sorted(env_now.items())))
    server = _SERVERS.get(key)
    if server is None or server.proc.poll() is not None:
        server = _SERVERS[key] = _Server(argv[0], argv[2], env, cwd)
    return server.start(argv[3:], stdout, 2 if stderr is None else stderr)


# ------------------------------------------------------------------------------------------- the server


def _child(module: str, args: List[str], out: int, err: int):
    """In the forked child: the command's output, then MODULE as ``__main__``, then the interpreter's own exit
    (the exit handlers, files flushed as their objects go; an exception's traceback and status 1)."""
    import importlib.util
    import runpy

    os.dup2(out, 1)
    os.dup2(err, 2)
    os.close(out)
    os.close(err)
    # sys.argv as ``python -m`` leaves it, the module's file first (runpy's own setting of it lasts only while the
    # module runs; an exception's hook, the plugin's one-line errors among them, reads it after)
    sys.argv = [importlib.util.find_spec(module).origin, *args]
    sys.modules.pop(module, None)  # run as ``__main__`` only, as ``python -m`` runs it (runpy warns otherwise)
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    sys.exit(0)


def _send(sock: socket.socket, message: str):
    try:
        sock.send(message.encode())
    except OSError:  # the scripts' process has gone: its commands still finish
        pass


def _serve(module: str, fd: int):
    sys.path[0] = os.getcwd()  # as ``python -m`` has it, not this file's folder
    try:
        for name in (module, *LATE_IMPORTS.get(module, ())):
            __import__(name)
    except BaseException:  # the child's own run of the module shows the error in its log
        pass
    # The import's objects (torch's and fairseq's: most of a child's heap) live as long as the process: out of
    # the garbage collector's reach, no child walks them again, in a full collection while it runs nor in the
    # collections of its interpreter's exit (measured: a process that imports fairseq_cli.train and exits takes
    # 4.1 s of CPU, 3.0 s with the import's objects frozen). Their pages stay shared with the server.
    gc.freeze()
    sock = socket.socket(fileno=fd)
    running = set()
    while True:
        readable = select.select([sock], [], [], 0.05 if running else None)[0]
        if readable:
            message, fds, _, _ = socket.recv_fds(sock, 1 << 20, 2)
            if not message:
                break
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                sock.close()
                _child(module, json.loads(message), *fds)
            for f in fds:
                os.close(f)
            running.add(pid)
            _send(sock, f"started {pid} 0")
        while running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            running.discard(pid)
            _send(sock, f"exited {pid} {os.waitstatus_to_exitcode(status)}")
    for pid in running:  # the scripts' process ended: its commands finish as they would have
        os.waitpid(pid, 0)


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
