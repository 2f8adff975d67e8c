"""Small helpers in the shape of fairseq's own tests/utils.py (which fairseq does not package).

Dummy parallel data, fairseq-preprocess, fairseq-train and fairseq-generate, run in-process through
fairseq's CLI entry points so a test exercises exactly what a user's command line does.
"""
import contextlib
import importlib.util
import io
import os
import random
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

import torch
from fairseq import distributed_utils, options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN_DIR = os.path.join(ROOT, "fairseq_partitioned")

TINY_ARCH = [
    "--arch", "transformer",
    "--encoder-layers", "2", "--decoder-layers", "2",
    "--encoder-embed-dim", "16", "--decoder-embed-dim", "16",
    "--encoder-ffn-embed-dim", "32", "--decoder-ffn-embed-dim", "32",
    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
]


def command(name: str):
    """The command scripts/NAME.py as a module, loaded from its file (its ``main``, ``parse_args``): a command is a
    file to run, not a module on the path; the harness it imports is (conftest.py)."""
    spec = importlib.util.spec_from_file_location(f"scripts.{name}", os.path.join(ROOT, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import does: its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def create_dummy_data(data_dir: str, num_examples: int = 100, maxlen: int = 12, seed: int = 0):
    """A learnable toy task: the target is the source with each letter shifted by one."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrst"
    for split, n in (("train", num_examples), ("valid", num_examples // 4), ("test", num_examples // 4)):
        with open(os.path.join(data_dir, f"{split}.in"), "w") as src, open(
            os.path.join(data_dir, f"{split}.out"), "w"
        ) as tgt:
            for _ in range(n):
                words = [rng.choice(letters) for _ in range(rng.randint(2, maxlen))]
                src.write(" ".join(words) + "\n")
                tgt.write(" ".join(letters[(letters.index(w) + 1) % len(letters)] for w in words) + "\n")


def preprocess_translation_data(data_dir: str, extra_flags: Optional[List[str]] = None):
    from fairseq_cli import preprocess

    parser = options.get_preprocessing_parser()
    args = parser.parse_args(
        [
            "--source-lang", "in", "--target-lang", "out",
            "--trainpref", os.path.join(data_dir, "train"),
            "--validpref", os.path.join(data_dir, "valid"),
            "--testpref", os.path.join(data_dir, "test"),
            "--thresholdtgt", "0", "--thresholdsrc", "0",
            "--destdir", data_dir,
        ]
        + (extra_flags or [])
    )
    preprocess.main(args)


def train_args(data_dir: str, extra_flags: List[str], task="translation_with_partitioned_model", save_dir=None):
    return [
        "--user-dir", PLUGIN_DIR,
        "--task", task,
        data_dir,
        "--save-dir", save_dir or data_dir,
        "--optimizer", "adam_for_partitioned_model" if task != "translation" else "adam",
        "--lr", "0.005", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "4",
        "--max-tokens", "500", "--max-epoch", "1",
        "--no-progress-bar", "--log-interval", "1", "--log-format", "simple",
        "--num-workers", "0", "--cpu", "--seed", "1",
        "--no-epoch-checkpoints",
    ] + TINY_ARCH + extra_flags


def train_translation_model(
    data_dir: str, extra_flags: List[str], task="translation_with_partitioned_model", save_dir=None
):
    from fairseq_cli import train

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, train_args(data_dir, extra_flags, task, save_dir))
    cfg = convert_namespace_to_omegaconf(args)
    distributed_utils.call_main(cfg, train.main)


def generate_main(data_dir: str, extra_flags: List[str], path: Optional[str] = None, user_dir=True) -> str:
    """Run fairseq-generate; returns what it printed (hypotheses, then the BLEU line)."""
    from fairseq_cli import generate

    parser = options.get_generation_parser()
    argv = [
        data_dir,
        "--path", path or os.path.join(data_dir, "checkpoint_last.pt"),
        "--beam", "2", "--max-len-b", "20", "--batch-size", "8",
        "--num-workers", "0", "--cpu", "--gen-subset", "valid",
    ]
    if user_dir:
        argv = ["--user-dir", PLUGIN_DIR, "--task", "translation_with_partitioned_model"] + argv
    args = options.parse_args_and_arch(parser, argv + extra_flags)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        generate.main(args)
    return out.getvalue()


def hypotheses(generate_output: str) -> List[str]:
    """The H- lines of fairseq-generate's output, ordered by sentence id."""
    rows = [line.split("\t") for line in generate_output.splitlines() if line.startswith("H-")]
    return [r[2] for r in sorted(rows, key=lambda r: int(r[0][2:]))]


def load_checkpoint(path: str) -> dict:
    """A checkpoint, loaded as every load of the plugin's is: torch's weights-only guard on, nothing
    allowed beyond torch's defaults but what the plugin registers (``checkpoints.SAFE_TYPES``)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def without_plugin_environment() -> dict:
    """The environment of a command a user runs without the plugin: nothing the plugin (or a user's
    shell) may have set for torch's loading."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TORCH_FORCE")}


def run_command(argv: List[str], env: dict, cwd: Optional[str] = None, timeout: float = 300):
    """A command in its own process, as ``subprocess.run(argv, capture_output=True, text=True, timeout=...)``
    runs it; a ``python -m`` console script of fairseq's starts warm (scripts/harness/warm.py: forked from a
    process, started in the same environment and directory, that has imported it; what a fresh process prints
    and saves, tests/test_warm.py)."""
    from harness import warm

    # pytest names the running test in the environment (PYTEST_CURRENT_TEST): left out, the commands of every test
    # share the server of their environment and directory, where they would start one for each test
    env = {k: v for k, v in env.items() if k != "PYTEST_CURRENT_TEST"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        command = warm.start(argv, out.fileno(), err.fileno(), env=env, cwd=cwd)
        deadline = time.time() + timeout
        while command.poll() is None:
            if time.time() > deadline:
                command.terminate()
                command.wait()
                raise subprocess.TimeoutExpired(argv, timeout)
            time.sleep(0.02)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(argv, command.returncode, out.read(), err.read())


def plain_fairseq_generate(data_dir: str, path: str, flags: List[str]) -> str:
    """fairseq-generate as a user runs it on an export: its own process, no --user-dir, no plugin
    environment, a working directory without the plugin; returns what it printed (raises, with its output,
    if it fails)."""
    argv = [sys.executable, "-m", "fairseq_cli.generate", data_dir, "--path", path, "--task", "translation",
            "--batch-size", "8", "--num-workers", "0", "--cpu", "--gen-subset", "valid", *flags]
    result = run_command(argv, without_plugin_environment(), cwd=tempfile.gettempdir())
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def assert_same_training_state(a: dict, b: dict):
    """Two checkpoints' model (weights, masks) and optimizer state, bit for bit."""
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    sa, sb = a["last_optimizer_state"]["state"], b["last_optimizer_state"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for key in sa[i]:
            assert torch.equal(torch.as_tensor(sa[i][key]), torch.as_tensor(sb[i][key])), (i, key)


def assert_one_line_error(result, prog: str, *fragments: str):
    """A script's failure (a subprocess result): exit status 1 and one line ``PROG: error: ...`` on stderr
    that holds every fragment."""
    assert result.returncode == 1, result.stderr
    message = result.stderr.strip()
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith(f"{prog}: error: "), message
    for fragment in fragments:
        assert fragment in message, message

