"""Warm starts (scripts/harness/warm.py): a ``python -m`` command forked from a server that has imported its
module computes what a fresh process computes, fails as one fails, and stops when terminated."""
import os
import re
import sys
import time

import pytest
import torch

import fairseq_helpers as h
from harness import runner, warm

# a line of logging, its level and logger in the format it was written in (fairseq's or logging's default), no time
LOGGED = re.compile(r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d )?((?:\| )?(?:DEBUG|INFO|WARNING|ERROR)(?: \| |:)[\w.]+)")


def _run(argv, log, cold: bool):
    env = dict(os.environ, **{warm.COLD: "1"}) if cold else None  # warm: the servers runner's commands use too
    with open(log, "w") as f:
        return warm.start([sys.executable, *argv], f.fileno(), f.fileno(), env).wait()


def test_a_warm_training_and_translation_are_a_fresh_process_s_bit_for_bit(data_dir, tmp_path):
    out = {}
    for start in ("cold", "warm"):
        save = str(tmp_path / start)
        train = ["-m", "fairseq_cli.train", *h.train_args(data_dir, ["--alternate"], save_dir=save)]
        assert _run(train, os.path.join(save + ".train.log"), cold=start == "cold") == 0
        generate = ["-m", "fairseq_cli.generate", data_dir, "--user-dir", h.PLUGIN_DIR, "--task",
                    "translation_with_partitioned_model", "--path", os.path.join(save, "checkpoint_last.pt"),
                    "--beam", "2", "--gen-subset", "valid", "--max-level", "1", "--cpu", "--num-workers", "0"]
        assert _run(generate, save + ".generate.log", cold=start == "cold") == 0
        log, train_log = open(save + ".generate.log").read(), open(save + ".train.log").read()
        out[start] = (torch.load(os.path.join(save, "checkpoint_last.pt"), weights_only=False),
                      [line for line in log.splitlines() if line[:2] in ("S-", "H-", "P-")],
                      [m.group(1) for text in (train_log, log) for m in map(LOGGED.match, text.splitlines()) if m])
        assert "BLEU4" in log and "| INFO | fairseq_cli.train | done training" in train_log
    (cold_state, cold_lines, cold_logged), (warm_state, warm_lines, warm_logged) = out["cold"], out["warm"]
    h.assert_same_training_state(cold_state, warm_state)
    assert len(cold_lines) >= 3 * 40 and warm_lines == cold_lines  # sources, hypotheses, scores
    # the training and the translation log what a fresh process logs, in its format (fairseq's import sets logging
    # up, in an order that differs between the two modules), but for the notice fairseq logs while it imports
    # (tensorboardX), which a warm command does not repeat
    cold_logged = [line for line in cold_logged if not line.endswith("fairseq.tasks.text_to_speech")]
    assert len(cold_logged) >= 3 and warm_logged == cold_logged, (cold_logged, warm_logged)


def test_a_failing_command_fails_warm_as_it_does_cold(data_dir, tmp_path, capsys):
    bad = ["-m", "fairseq_cli.train", str(tmp_path / "no-data"), "--arch", "transformer", "--cpu", "--max-tokens", "9"]
    for cold in (True, False):
        log = str(tmp_path / f"{cold}.log")
        assert _run(bad, log, cold) == 1
        assert "FileNotFoundError" in open(log).read()
    # the plugin's one-line error names the command as it does in a fresh process (from sys.argv)
    usage = ["-m", "fairseq_cli.train", *h.train_args(data_dir, ["--gap-sparsity", "0.5", "--small-ratio", "0.5"],
                                                     save_dir=str(tmp_path / "usage"))]
    last = []
    for cold in (True, False):
        log = str(tmp_path / f"usage-{cold}.log")
        assert _run(usage, log, cold) == 1
        last.append(open(log).read().strip().splitlines()[-1])
    assert last[0] == last[1] and last[0].startswith("fairseq-train: error: --small-ratio 0.5 is for"), last
    # runner.run_logged names the step and the log, its tail on the console, warm as before
    with pytest.raises(SystemExit) as exit_info:
        runner.run_logged("x", "step", [sys.executable, *bad], str(tmp_path / "x.log"))
    assert str(exit_info.value) == f"x: error: step failed (exit 1), log: {tmp_path / 'x.log'}"
    assert "FileNotFoundError" in capsys.readouterr().err


def test_a_warm_command_stops_when_terminated_and_other_commands_run_cold(data_dir, tmp_path):
    log = str(tmp_path / "log")
    endless = ["-m", "fairseq_cli.train", *h.train_args(data_dir, ["--max-epoch", "10000"], save_dir=str(tmp_path))]
    with open(log, "w") as f:
        proc = warm.start([sys.executable, *endless], f.fileno(), f.fileno())
    assert isinstance(proc, warm.Started)
    while "| INFO | train_inner |" not in open(log).read():  # it trains
        assert proc.poll() is None
        time.sleep(0.1)
    proc.terminate()
    assert proc.wait() == -15 and proc.poll() == -15
    for argv in (["-c", "print(1)"], ["-m", "json.tool", "--help"]):  # a script, or a module that is no console script
        with open(log, "w") as f:
            assert not isinstance(warm.start([sys.executable, *argv], f.fileno(), f.fileno()), warm.Started)
