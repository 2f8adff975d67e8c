"""scripts/benchmark.py end to end on a tiny Transformer: it runs, and its JSON holds every number.

No timing assertions: the numbers depend on the machine. The benchmark runs as `make bench` does, in a
subprocess (its memory probes are subprocesses of their own).
"""
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "benchmark.py")
TINY = ("--encoder-layers 2 --decoder-layers 2 --encoder-embed-dim 32 --decoder-embed-dim 32 "
        "--encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 "
        "--encoder-attention-heads 2 --decoder-attention-heads 2")
CONFIGS = "vanilla,ats-rank-0.25,core-rank-0.25,gen-vanilla,gen-ats-rank-0.25,gen-core-rank-0.25"


def _positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_benchmark_writes_complete_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--cpu", "--threads", "1", "--arch", "transformer", "--arch-args", TINY,
         "--max-tokens", "500", "--warmup", "1", "--repeats", "2", "--gen-batch-size", "8",
         "--configs", CONFIGS, "--json", str(out)],
        cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "training update" in proc.stdout and "targets:" in proc.stdout
    # What the user sees is the benchmark's progress and table: no third-party warning or notice.
    foreign = [line for line in proc.stderr.splitlines() if "| INFO | benchmark |" not in line]
    assert not foreign, foreign[:5]
    result = json.loads(out.read_text())

    for key in ("date", "cpu", "cpu_cores", "torch", "fairseq", "device"):
        assert result["machine"][key], key
    assert result["settings"]["repeats"] == 2

    train = result["train"]
    rows = ["vanilla", "ats-rank-0.25/full", "ats-rank-0.25/core", "ats-rank-0.25/avg", "core-rank-0.25"]
    assert sorted(train) == sorted(rows)
    for name in rows:
        row = train[name]
        assert len(row["seconds"]) == 2, name
        for key in ("median_s", "median_cpu_s", "tokens_per_s", "ratio_to_vanilla", "params"):
            assert _positive(row[key]), (name, key)
    assert train["vanilla"]["ratio_to_vanilla"] == 1.0
    assert _positive(train["ats-rank-0.25/core"]["ratio_to_core_standalone"])
    # The core is smaller than the full network.
    assert train["ats-rank-0.25/core"]["params"] < train["ats-rank-0.25/full"]["params"]
    assert train["ats-rank-0.25/core"]["params"] == train["core-rank-0.25"]["params"]

    memory = result["memory"]
    for name in ("vanilla", "ats-rank-0.25/full", "ats-rank-0.25/core", "core-rank-0.25"):
        assert _positive(memory[name]["peak_mb"]), name
        assert memory[name]["peak_mb"] >= memory[name]["before_update_mb"], name

    opt = result["optimizer"]["ats-rank-0.25"]
    for key in ("median_s_full", "median_s_fairseq_adam_full", "ratio_full",
                "median_s_core", "median_s_fairseq_adam_core", "ratio_core"):
        assert _positive(opt[key]), key
    assert opt["params_core"] < opt["params_full"]
    # The partitioned optimizer's core step changed the core's tensors only, as fairseq's Adam on the
    # core's parameters (its reference) does: like is timed with like.
    assert opt["tensors_changed_full"] == opt["tensors_full"]
    assert opt["tensors_changed_core"] == opt["tensors_core"] < opt["tensors_full"]

    gen = result["generate"]
    assert sorted(gen) == ["gen-ats-rank-0.25", "gen-core-rank-0.25", "gen-vanilla"]
    for name, row in gen.items():
        for key in ("median_s", "tokens_per_s", "ratio_to_vanilla"):
            assert _positive(row[key]), (name, key)
    # Output length is forced: every configuration generated the same number of tokens.
    assert len({tuple(row["tokens"]) for row in gen.values()}) == 1

    targets = {t["target"] for t in result["targets"]}
    assert targets == {"ats_full_vs_vanilla", "ats_core_vs_core_standalone", "adam_step_vs_fairseq_adam"}
    assert all(isinstance(t["met"], bool) for t in result["targets"])
