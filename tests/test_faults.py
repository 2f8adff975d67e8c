"""Faults and wrong inputs: a cut-short checkpoint, a killed P-GaP worker, mistakes that each get their
own one-line error, and flags a run would ignore."""
import logging
import os
import shutil
import subprocess
import sys

import pytest
import torch

import fairseq_helpers as h
from fairseq_partitioned.cli.export import cli_main as export_main
from fairseq_partitioned.cli.pgap import cli_main as pgap_main
from fairseq_partitioned.cli.prune import cli_main as prune_main, prune_checkpoint
from fairseq_partitioned.cli.report import cli_main as report_main
from fairseq_partitioned.modules import PartitionedRankLinear

# 25 updates an epoch: every resume below is in the middle of epoch 1, where a fairseq fp32 resume is
# bit-exact on one CPU process.
LONG_EPOCHS = ["--batch-size", "8"]


def _cut_short(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _last(save_dir):
    return h.load_checkpoint(os.path.join(save_dir, "checkpoint_last.pt"))


def _fairseq(module, argv, env=None):
    """A fairseq console script (``fairseq_cli.MODULE``) as a user runs it: its own process."""
    return h.run_command([sys.executable, "-m", f"fairseq_cli.{module}", *argv],
                         env=dict(h.without_plugin_environment(), OMP_NUM_THREADS="1", **(env or {})))


def _assert_one_line(result, prog, *fragments):
    """Exit status 1, the message alone as stderr's last line, no traceback."""
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{prog}: error: "), last
    for fragment in fragments:
        assert fragment in last, last


def _exit_message(main, argv) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    return str(e.value.code)


# ------------------------------------------------------------------ a cut-short checkpoint_last.pt


ATS = ["--alternate", "--save-interval-updates", "5", "--validate-interval-updates", "5", *LONG_EPOCHS]


def test_a_cut_short_checkpoint_last_resumes_bit_exact_from_the_newest_intact_one(data_dir, tmp_path, caplog):
    """fairseq copies checkpoint_1_10.pt to checkpoint_best.pt and checkpoint_last.pt; a kill during the
    last copy cuts it short. The relaunch resumes from checkpoint_1_10.pt, says so in one line, and ends
    where a run never interrupted ends, bit for bit."""
    straight, cut = str(tmp_path / "straight"), str(tmp_path / "cut")
    h.train_translation_model(data_dir, ATS + ["--max-update", "15"], save_dir=straight)
    h.train_translation_model(data_dir, ATS + ["--max-update", "10"], save_dir=cut)
    last = os.path.join(cut, "checkpoint_last.pt")
    _cut_short(last)
    with caplog.at_level(logging.WARNING):
        h.train_translation_model(data_dir, ATS + ["--max-update", "15"], save_dir=cut)
    warnings = [r.getMessage() for r in caplog.records if "cannot read checkpoint" in r.getMessage()]
    assert len(warnings) == 1 and last in warnings[0] and os.path.join(cut, "checkpoint_1_10.pt") in warnings[0]
    a, b = _last(straight), _last(cut)
    assert a["optimizer_history"][-1]["num_updates"] == b["optimizer_history"][-1]["num_updates"] == 15
    h.assert_same_training_state(a, b)


def test_a_cut_short_checkpoint_last_with_nothing_intact_is_one_line_naming_it(data_dir, tmp_path):
    save = str(tmp_path)
    h.train_translation_model(data_dir, ["--alternate", "--max-update", "2"], save_dir=save)
    for name in os.listdir(save):
        if name != "checkpoint_last.pt":
            os.remove(os.path.join(save, name))
    last = os.path.join(save, "checkpoint_last.pt")
    _cut_short(last)
    with pytest.raises(ValueError, match=f"cannot read checkpoint {last} .*no other checkpoint of {save} can be "
                                         "read either: delete it to train from the start, or pass --restore-file"):
        h.train_translation_model(data_dir, ["--alternate", "--max-update", "4"], save_dir=save)


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """Tiny checkpoints of each kind: ATS, GaP, plain fairseq, and the plain one pruned."""
    out = {}
    for kind, flags, task in (("ats", ["--alternate"], "translation_with_partitioned_model"),
                              ("gap", ["--gap-sparsity", "0.5"], "translation_with_partitioned_model"),
                              ("plain", [], "translation")):
        save = str(tmp_path_factory.mktemp(kind))
        h.train_translation_model(data_dir, flags + ["--max-update", "3"], task=task, save_dir=save)
        out[kind] = os.path.join(save, "checkpoint_last.pt")
    out["pruned"] = str(tmp_path_factory.mktemp("pruned") / "pruned.pt")
    prune_checkpoint(out["plain"], 0.5, out["pruned"])
    out["cut"] = str(tmp_path_factory.mktemp("cut") / "cut.pt")
    shutil.copy(out["ats"], out["cut"])
    _cut_short(out["cut"])
    return out


def test_every_console_script_names_an_unreadable_checkpoint_in_one_line(data_dir, trained, tmp_path):
    cut, out = trained["cut"], str(tmp_path / "out.pt")
    expected = f"cannot read checkpoint {cut} (RuntimeError: PytorchStreamReader failed reading zip archive"
    for prog, main, argv in (("export", export_main, [cut, "--level", "full", "--output", out]),
                             ("prune", prune_main, [cut, "--sparsity", "0.5", "--output", out]),
                             ("report", report_main, [cut])):
        message = _exit_message(main, argv)
        assert message.startswith(f"fairseq-partitioned-{prog}: error: {expected}") and "\n" not in message, message
    generate = _fairseq("generate", [data_dir, "--user-dir", h.PLUGIN_DIR, "--task", "translation_with_partitioned_model",
                                     "--path", cut, "--cpu", "--num-workers", "0"])
    _assert_one_line(generate, "fairseq-generate", expected)


def test_a_missing_restore_file_is_an_error_not_a_run_from_scratch(data_dir, tmp_path):
    missing = str(tmp_path / "nowhere.pt")
    with pytest.raises(FileNotFoundError, match=f"--restore-file {missing}: no such checkpoint"):
        h.train_translation_model(data_dir, ["--restore-file", missing], save_dir=str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoint_last.pt")


# ------------------------------------------------------------ checkpoints are data, not code


class _Payload:
    """What a crafted checkpoint holds: unpickled, it creates the file ``marker`` (``open(marker, "w")``)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture()
def crafted(trained, tmp_path):
    """A real ATS checkpoint with the payload in its extra state, and the marker it would create."""
    state = h.load_checkpoint(trained["ats"])
    marker = str(tmp_path / "the-payload-ran")
    state["extra_state"]["payload"] = _Payload(marker)
    path = str(tmp_path / "crafted.pt")
    torch.save(state, path)
    return path, marker


REFUSED = "refused to load checkpoint {}: it asks for io.open, beyond the tensors and plain values"


def test_a_crafted_checkpoint_runs_its_code_only_with_torch_s_own_opt_out(data_dir, crafted):
    """The payload is live (the guard is what stops it): fairseq-generate with the plugin and the documented
    opt-out, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, runs it."""
    path, marker = crafted
    _fairseq("generate", [data_dir, "--user-dir", h.PLUGIN_DIR, "--task", "translation_with_partitioned_model",
                          "--path", path, "--cpu", "--num-workers", "0", "--max-len-b", "5"],
             env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    assert os.path.exists(marker)


def test_fairseq_generate_and_train_with_the_plugin_refuse_a_crafted_checkpoint(data_dir, crafted, tmp_path):
    path, marker = crafted
    generate = _fairseq("generate", [data_dir, "--user-dir", h.PLUGIN_DIR, "--task", "translation_with_partitioned_model",
                                     "--path", path, "--cpu", "--num-workers", "0"])
    _assert_one_line(generate, "fairseq-generate", REFUSED.format(path), "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1")
    train = _fairseq("train", h.train_args(data_dir, ["--alternate", "--restore-file", path], save_dir=str(tmp_path / "t")))
    _assert_one_line(train, "fairseq-train", REFUSED.format(path))
    resume = str(tmp_path / "resume")
    os.makedirs(resume)
    shutil.copy(path, os.path.join(resume, "checkpoint_last.pt"))
    train = _fairseq("train", h.train_args(data_dir, ["--alternate"], save_dir=resume))
    _assert_one_line(train, "fairseq-train", REFUSED.format(os.path.join(resume, "checkpoint_last.pt")))
    assert not os.path.exists(marker)


def test_every_console_script_refuses_a_crafted_checkpoint(data_dir, crafted, tmp_path):
    path, marker = crafted
    out = str(tmp_path / "out.pt")
    for prog, main, argv in (("export", export_main, [path, "--level", "full", "--output", out]),
                             ("export", export_main, [path, "--level", "full", "--ctranslate2", str(tmp_path / "ct2")]),
                             ("prune", prune_main, [path, "--sparsity", "0.5", "--output", out]),
                             ("report", report_main, [path])):
        message = _exit_message(main, argv)
        assert message.startswith(f"fairseq-partitioned-{prog}: error: {REFUSED.format(path)}") and "\n" not in message
    save = str(tmp_path / "pgap")
    worker = _worker_last(save, 0)
    os.makedirs(os.path.dirname(worker))
    shutil.copy(path, worker)
    message = _exit_message(pgap_main, ["--save-dir", save, "--rounds", "1", "--step-epochs", "1", "--combine-round",
                                        "0", "--", "--user-dir", h.PLUGIN_DIR, data_dir, *PGAP])
    assert message.startswith(f"fairseq-partitioned-pgap: error: {REFUSED.format(worker)}"), message
    assert not os.path.exists(marker) and not os.path.exists(out)


def test_the_plugin_allows_the_checkpoints_types_by_name_and_sets_nothing_for_the_process():
    """Imported in a process of its own: torch's weights-only guard stays on, the types allowed are the
    training command's namespace and numpy's arrays (fairseq's meters; numpy < 2's names too), and the
    plugin sets no environment variable."""
    code = ("import os, torch, fairseq; env, allowed = dict(os.environ), torch.serialization.get_safe_globals(); "
            "import fairseq_partitioned; "
            "name = lambda t: t[1] if isinstance(t, tuple) else f'{t.__module__}.{t.__qualname__}'; "
            "print(sorted(name(t) for t in torch.serialization.get_safe_globals() if t not in allowed)); "
            "print(sorted(set(os.environ.items()) ^ set(env.items())))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=os.path.dirname(h.PLUGIN_DIR), env=h.without_plugin_environment())
    allowed, environment = result.stdout.split("\n")[:2]
    numpy = ["numpy._core.multiarray._reconstruct", "numpy._core.multiarray.scalar", "numpy.dtype", "numpy.ndarray",
             "numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar"]
    dtypes = [f"numpy.dtypes.{n}DType" for n in ("Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32",
                                                 "UInt64", "Float16", "Float32", "Float64", "LongDouble", "Complex64",
                                                 "Complex128", "CLongDouble", "Long", "ULong", "LongLong", "ULongLong")]
    names = eval(allowed)  # noqa: S307  (our own print of a list of strings)
    assert set(names) <= {"argparse.Namespace", *numpy, *dtypes} and {"argparse.Namespace", *numpy} <= set(names), names
    assert "numpy.dtypes.ObjectDType" not in names and environment == "[]", result.stderr[-2000:]


# --------------------------------------------------------------------- P-GaP: a killed worker

PGAP = ["--gap-sparsity", "0.5", "--gap-partitions", "2", "--save-interval-updates", "10", *LONG_EPOCHS]


def _pgap(data_dir, save, capsys=None):
    args = h.train_args(data_dir, PGAP)
    for flag in ("--save-dir", "--max-epoch"):
        i = args.index(flag)
        del args[i:i + 2]
    pgap_main(["--save-dir", save, "--rounds", "1", "--step-epochs", "1", "--", *args])
    return capsys.readouterr().out if capsys else ""


def _worker_last(save, worker):
    return os.path.join(save, "round0", f"worker{worker}", "checkpoint_last.pt")


@pytest.fixture(scope="module")
def pgap_straight(data_dir, tmp_path_factory):
    """One P-GaP round (2 workers, one epoch of 25 updates each, a checkpoint every 10), never interrupted."""
    save = str(tmp_path_factory.mktemp("pgap") / "straight")
    _pgap(data_dir, save)
    return save


def test_a_restarted_pgap_run_resumes_a_killed_worker_and_retrains_an_unreadable_one(
        data_dir, pgap_straight, tmp_path, capsys):
    """Worker 0 was killed after its save at update 10 of 25, worker 1's checkpoint was cut short: the
    restart trains both to the end of the round, and the round combines to what it combined uninterrupted."""
    save = str(tmp_path / "restarted")
    shutil.copytree(pgap_straight, save)
    shutil.copy(os.path.join(save, "round0", "worker0", "checkpoint_1_10.pt"), _worker_last(save, 0))
    _cut_short(_worker_last(save, 1))
    out = _pgap(data_dir, save, capsys=capsys)
    assert "worker 0 stopped at epoch 1, 10 updates into it (10 updates in all): resuming it" in out
    assert f"worker 1: cannot read checkpoint {_worker_last(save, 1)}" in out and "retraining it" in out
    assert "P-GaP round 1/1: 2 workers" in out
    for worker in range(2):
        assert h.load_checkpoint(_worker_last(save, worker))["optimizer_history"][-1]["num_updates"] == 25
    straight = h.load_checkpoint(os.path.join(pgap_straight, "round0", "combined.pt"))["model"]
    restarted = h.load_checkpoint(os.path.join(save, "round0", "combined.pt"))["model"]
    assert straight.keys() == restarted.keys()
    for name in straight:
        assert torch.equal(straight[name], restarted[name]), name


def test_a_worker_one_epoch_short_of_its_round_is_not_done(pgap_straight, capsys):
    """Read as a round of 2 epochs, the workers' checkpoints (at the start of epoch 2: killed in their
    last epoch, right after its first save) are not done: fairseq's epoch counter is one ahead of the
    epochs trained."""
    from fairseq_partitioned.cli.pgap import worker_done, workers_to_train

    assert workers_to_train(pgap_straight, 0, kappa=2, step_epochs=2) == [0, 1]
    assert capsys.readouterr().out.count("stopped at epoch 2, 0 updates into it (25 updates in all): resuming it") == 2
    assert workers_to_train(pgap_straight, 0, kappa=2, step_epochs=1) == []
    state = h.load_checkpoint(_worker_last(pgap_straight, 0))
    state["extra_state"]["train_iterator"]["epoch"] = 3  # trained 2 epochs: past a round of 1 (another --step-epochs)
    with pytest.raises(ValueError, match="trained past its round .* use the --step-epochs the run was started with"):
        worker_done(state, 0, step_epochs=1)


def test_combining_a_round_whose_worker_did_not_finish_is_refused(data_dir, pgap_straight, tmp_path):
    save = str(tmp_path / "unfinished")
    shutil.copytree(pgap_straight, save)
    shutil.copy(os.path.join(save, "round0", "worker1", "checkpoint_1_20.pt"), _worker_last(save, 1))
    args = ["--user-dir", h.PLUGIN_DIR, data_dir, *PGAP]
    message = _exit_message(pgap_main, ["--save-dir", save, "--rounds", "1", "--step-epochs", "1",
                                        "--combine-round", "0", "--", *args])
    assert message.startswith("fairseq-partitioned-pgap: error: worker 1 of round 1 did not train all of its round "
                              f"(1 epochs): {_worker_last(save, 1)} stops at epoch 1, 20 updates into it"), message


# ---------------------------------------------------- mistakes that each get their own message


def _resume(data_dir, tmp_path, checkpoint, flags):
    """Train in a save dir whose checkpoint_last.pt is ``checkpoint``."""
    save = str(tmp_path / "resumed")
    os.makedirs(save, exist_ok=True)
    shutil.copy(checkpoint, os.path.join(save, "checkpoint_last.pt"))
    h.train_translation_model(data_dir, flags + ["--max-update", "5"], save_dir=save)


@pytest.mark.parametrize("flags", [["--alternate"], ["--max-level", "1"]], ids=["ats", "core"])
def test_a_gap_checkpoint_resumed_without_gap_sparsity_says_to_pass_it(data_dir, trained, tmp_path, flags):
    with pytest.raises(ValueError, match=r"is a GaP \(sparse\) checkpoint, trained with --gap-sparsity 0.5: resume "
                                         "it with --gap-sparsity 0.5"):
        _resume(data_dir, tmp_path, trained["gap"], flags)


def test_a_pruned_checkpoint_fine_tuned_without_gap_sparsity_says_to_pass_it(data_dir, trained, tmp_path):
    with pytest.raises(ValueError, match=r"holds a pruned model \(GaP masks at sparsity 0.5\): fine-tune it with "
                                         "--gap-sparsity 0.5"):
        h.train_translation_model(data_dir, ["--finetune-from-model", trained["pruned"]], save_dir=str(tmp_path))


def test_an_ats_checkpoint_resumed_with_gap_sparsity_says_to_drop_it(data_dir, trained, tmp_path):
    with pytest.raises(ValueError, match=r"holds a partitioned model \(ATS\), not a sparse one: resume it without "
                                         "--gap-sparsity"):
        _resume(data_dir, tmp_path, trained["ats"], ["--gap-sparsity", "0.5"])


def test_a_changed_model_size_is_named_as_such(data_dir, trained, tmp_path):
    with pytest.raises(ValueError, match=r"has encoder.layers.0.fc1.W of shape \(32, 16\), this model \(64, 16\): it "
                                         "was trained with --encoder-ffn-embed-dim 32, this run uses "
                                         "--encoder-ffn-embed-dim 64"):
        _resume(data_dir, tmp_path, trained["ats"], ["--alternate", "--encoder-ffn-embed-dim", "64"])


def test_the_task_evaluates_a_plain_fairseq_checkpoint_as_a_plain_transformer(data_dir, trained):
    plain = h.hypotheses(h.generate_main(data_dir, ["--task", "translation"], path=trained["plain"], user_dir=False))
    assert len(plain) > 40
    assert h.hypotheses(h.generate_main(data_dir, [], path=trained["plain"])) == plain
    with pytest.raises(ValueError, match=r"--max-level 1: the checkpoint holds a plain Transformer, which has no "
                                         "core; drop --max-level"):
        h.generate_main(data_dir, ["--max-level", "1"], path=trained["plain"])


def test_a_max_level_above_the_full_network_names_the_levels_there_are(data_dir, trained):
    with pytest.raises(ValueError, match=r"--max-level 3: the checkpoint has levels 1..2 \(1 = the core, 2 = the "
                                         r"full network\); use --max-level 1..2"):
        h.generate_main(data_dir, ["--max-level", "3"], path=trained["ats"])


def test_a_missing_tensor_of_a_partitioned_layer_gets_the_advice_that_fits():
    full = {f"fc.{k}": v for k, v in PartitionedRankLinear(12, 20).state_dict().items()}
    core = {k: v for k, v in full.items() if not k.endswith(".W")}  # a compact core checkpoint
    plain = {"fc.weight": torch.zeros(20, 12), "fc.bias": torch.zeros(20)}
    with pytest.raises(ValueError, match=r"checkpoint has no 'fc.W': the checkpoint holds only levels 1..1: pass "
                                         "--max-level 1"):
        PartitionedRankLinear(12, 20).upgrade_state_dict_named(dict(core), "fc")
    for model in (PartitionedRankLinear(12, 20), PartitionedRankLinear(12, 20, built_levels=1)):  # --max-level 1
        with pytest.raises(ValueError, match="no partitioned layer there: it is a plain") as e:
            model.upgrade_state_dict_named(dict(plain), "fc")
        assert "--max-level" not in str(e.value)


# ------------------------------------------------------------------------- flags a run would ignore


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--alternate", "--gap-steps", "2", "--gap-step-updates", "2"], "--gap-step-updates 2 is GaP's: it needs "
                                                                         r"--gap-sparsity S > 0 \(without it this "
                                                                         "run trains a partitioned model, ATS"),
        (["--gap-sparsity", "0", "--gap-partitions", "2"], "--gap-partitions 2 is GaP's"),
        (["--gap-sparsity", "0.5", "--small-ratio", "0.5"], r"--small-ratio 0.5 is for a partitioned model \(ATS\): "
                                                            "--gap-sparsity trains a sparse Transformer"),
        (["--gap-sparsity", "0.5", "--partitioned-linear-module-name", "PartitionedLinear"],
         "--partitioned-linear-module-name PartitionedLinear is for a partitioned model"),
        (["--gap-sparsity", "0.5", "--alternate-lr-coef", "0.5"], "--alternate-lr-coef 0.5 is for a partitioned model"),
    ],
)
def test_a_flag_the_run_would_ignore_is_an_error(data_dir, tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        h.train_translation_model(data_dir, flags, save_dir=str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoint_last.pt")


def test_generate_max_level_on_a_gap_checkpoint_is_an_error(data_dir, trained):
    with pytest.raises(ValueError, match=r"--max-level 1: the checkpoint holds a GaP \(sparse\) model, which has no "
                                         "core; drop --max-level"):
        h.generate_main(data_dir, ["--max-level", "1"], path=trained["gap"])


def test_generate_gap_sparsity_on_a_checkpoint_without_masks_is_an_error(data_dir, trained):
    with pytest.raises(ValueError, match="--gap-sparsity 0.5: the checkpoint has no GaP masks"):
        h.generate_main(data_dir, ["--gap-sparsity", "0.5"], path=trained["ats"])


def test_resuming_without_the_alternate_it_was_trained_with_says_so(data_dir, trained, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        _resume(data_dir, tmp_path, trained["ats"], [])
    said = [r.getMessage() for r in caplog.records if "--alternate" in r.getMessage()]
    assert said == [f"checkpoint {tmp_path / 'resumed' / 'checkpoint_last.pt'} was trained with --alternate: this "
                    "run, without it, trains the full network alone from here"]


# ---------------------------------------------------------------------------- one-line errors


def test_fairseq_train_shows_the_plugin_s_error_alone(data_dir, tmp_path):
    result = _fairseq("train", h.train_args(data_dir, ["--gap-sparsity", "0.5", "--small-ratio", "0.5"],
                                            save_dir=str(tmp_path)))
    _assert_one_line(result, "fairseq-train", "--small-ratio 0.5 is for a partitioned model (ATS)")


def test_an_unexpected_exception_keeps_its_traceback():
    from fairseq_partitioned import errors

    seen = []
    hook = errors._one_line_hook(lambda *exc: seen.append(exc))
    error = RuntimeError("a bug")
    hook(RuntimeError, error, None)
    assert seen == [(RuntimeError, error, None)]
    # installed by the import, in a process of its own (a test run's other modules may set their own hook)
    installed = subprocess.run([sys.executable, "-c", "import sys, fairseq_partitioned; "
                                "print(getattr(sys.excepthook, 'one_line_usage_errors', False))"],
                               stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(h.PLUGIN_DIR))
    assert installed.stdout.split() == ["True"]


def test_prune_names_its_own_flags(trained, tmp_path):
    out = str(tmp_path / "out.pt")
    message = _exit_message(prune_main, [trained["plain"], "--sparsity", "1.0", "--output", out])
    assert message == "fairseq-partitioned-prune: error: --sparsity must be in [0, 1), got 1.0"
    message = _exit_message(prune_main, [trained["plain"], "--sparsity", "0.5", "--prunable", "fc(", "--output", out])
    assert message.startswith("fairseq-partitioned-prune: error: --prunable 'fc(' is not a regular expression"), message
    message = _exit_message(report_main, [trained["plain"], "--prunable", "fc("])
    assert message.startswith("fairseq-partitioned-report: error: --prunable 'fc(' is not a regular expression"), message
    assert not os.path.exists(out)
