"""GaP end to end: C-GaP with a resume mid-step, exact sparsity, fixed masks, prune-from-dense, P-GaP."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import fairseq_helpers as h
from fairseq_partitioned import checkpoints
from fairseq_partitioned.cli.export import export
from fairseq_partitioned.cli.pgap import cli_main as pgap_main
from fairseq_partitioned.cli.prune import prune_checkpoint
from fairseq_partitioned.cli.report import sparsity_rows
from fairseq_partitioned.pruning import owners

# Steps of 3 updates, 4 steps, a 2-update fine-tune: the run ends by itself after 14 updates. The
# helpers' --max-epoch 1 is unset (C-GaP in updates ends by --max-update, derived from the schedule).
CGAP = ["--alternate", "--gap-sparsity", "0.75", "--gap-steps", "4", "--gap-step-updates", "3",
        "--gap-finetune-updates", "2", "--lr-scheduler", "gap_inverse_sqrt", "--max-epoch", "0"]
# 25 updates per epoch: the whole C-GaP run above is in the middle of epoch 1, where a fairseq fp32
# resume is bit-exact on one CPU process (across an epoch boundary fairseq itself drifts slightly).
LONG_EPOCHS = ["--batch-size", "8"]


def _masks(state):
    return checkpoints.masks(state["model"])


def _assert_masked_weights_are_zero(state):
    masks = _masks(state)
    assert masks
    for name, mask in masks.items():
        assert torch.all(state["model"][name][~mask] == 0), name


def _assert_at_sparsity(state, sparsity):
    """Every prunable matrix at exactly S (uniform), masked weights exactly zero."""
    for name, mask in _masks(state).items():
        assert int((~mask).sum()) == round(sparsity * mask.numel()), name
    _assert_masked_weights_are_zero(state)


def _partition_state(path):
    """The checkpoint, and per prunable weight: (the step that grew it, or None; whether it is set aside)."""
    state = h.load_checkpoint(path)
    gap = checkpoints.gap_state(state)
    return state, {k: (gap["grown"].get(k), k in gap["set_aside"]) for k in gap["prunable"]}


def _updates(state):
    return state["optimizer_history"][-1]["num_updates"]


def _resumed_from(data_dir, save_dir, flags, checkpoint, edit=None):
    """A run interrupted where ``checkpoint`` was written, resumed to its end."""
    os.makedirs(save_dir)
    path = os.path.join(save_dir, "checkpoint_last.pt")
    shutil.copy(checkpoint, path)
    mid = _partition_state(path)[1]
    if edit is not None:
        edit(path)
    h.train_translation_model(data_dir, flags, save_dir=save_dir)
    return mid, h.load_checkpoint(path)


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
    """A C-GaP run to its end (14 updates), a checkpoint every 5 updates (each after a validation)."""
    save = str(tmp_path_factory.mktemp("straight"))
    h.train_translation_model(data_dir, CGAP + LONG_EPOCHS + ["--save-interval-updates", "5"], save_dir=save)
    return save


def test_cgap_resumes_mid_step_exactly(data_dir, straight, tmp_path):
    """The run is interrupted where it wrote its checkpoint at update 5, in the middle of step 1
    (updates 3-5), its dense partition set aside, and resumed to its end: the same weights, masks,
    optimizer state and schedule position as the straight run, bit for bit."""
    mid, b = _resumed_from(data_dir, str(tmp_path / "b"), CGAP + LONG_EPOCHS,
                           os.path.join(straight, "checkpoint_1_5.pt"))
    assert {v for v in mid.values() if v[0] is not None} == {(1, True)}  # step 1's partition, set aside
    a = h.load_checkpoint(os.path.join(straight, "checkpoint_last.pt"))
    assert _updates(a) == _updates(b) == 14
    h.assert_same_training_state(a, b)
    assert checkpoints.gap_state(a)["grown"] == checkpoints.gap_state(b)["grown"] == {}


def _as_version_0_1(path):
    """Rewrite a checkpoint in version 0.1's layout: GaP's schedule position on each masked layer."""
    state = h.load_checkpoint(path)
    gap = state["task_state"].pop("gap")
    for name in gap["prunable"]:
        state["model"][name[: -len("weight")] + "_extra_state"] = {
            "grown_at": gap["grown"].get(name), "stash": gap["set_aside"].get(name)}
    state["task_state"] = {"gap": {"sparsity": gap["sparsity"], "prunable": gap["prunable"]}}
    torch.save(state, path)


def test_a_version_0_1_checkpoint_resumes_exactly(data_dir, straight, tmp_path):
    mid, old = _resumed_from(data_dir, str(tmp_path / "old"), CGAP + LONG_EPOCHS,
                             os.path.join(straight, "checkpoint_1_5.pt"), edit=_as_version_0_1)
    assert {v for v in mid.values() if v[0] is not None} == {(1, True)}
    h.assert_same_training_state(h.load_checkpoint(os.path.join(straight, "checkpoint_last.pt")), old)
    assert not any(k.endswith("_extra_state") for k in old["model"])  # written in the new layout


def test_cgap_in_updates_ends_by_itself_after_its_fine_tune_at_exact_sparsity(data_dir, straight):
    state, position = _partition_state(os.path.join(straight, "checkpoint_last.pt"))
    assert _updates(state) == 14  # 4 steps x 3 updates + 2, no --max-update given
    assert all(grown is None and not kept for grown, kept in position.values())
    _assert_at_sparsity(state, 0.75)
    assert checkpoints.parameter_counts(state)["sparse"] == checkpoints.count_tensors(state["model"]) - sum(
        int((~m).sum()) for m in _masks(state).values())


@pytest.mark.parametrize("intervals", [["--validate-interval", "100"], ["--disable-validation"]],
                         ids=["no-validation-before-the-last-save", "validation-disabled"])
def test_cgap_in_epochs_without_fine_tune_ends_by_itself_at_exact_sparsity(data_dir, tmp_path, intervals):
    """T' = 0: the run ends right after its last step, and the checkpoint fairseq writes then holds the
    model at S (the last partition pruned, its dense values set aside), though no validation ran."""
    flags = ["--alternate", "--gap-sparsity", "0.75", "--gap-steps", "2", "--gap-step-epochs", "1",
             "--lr-scheduler", "gap_inverse_sqrt", "--max-epoch", "0", *intervals]
    h.train_translation_model(data_dir, flags, save_dir=str(tmp_path))
    state, position = _partition_state(str(tmp_path / "checkpoint_last.pt"))
    # K T + T' = 2 epochs and no more, no --max-epoch given: the iterator stands at the start of epoch 3
    assert state["extra_state"]["train_iterator"]["epoch"] == 3
    assert state["extra_state"]["train_iterator"]["iterations_in_epoch"] == 0
    _assert_at_sparsity(state, 0.75)
    assert {v for v in position.values() if v[0] is not None} == {(1, True)}  # set aside, not in the model
    report = export(str(tmp_path / "checkpoint_last.pt"), "full", str(tmp_path / "plain.pt"))
    assert report["parameters"] > 0


def test_fp16_resume_mid_step_gives_the_set_aside_values_to_the_model_and_the_fp32_copies(data_dir, tmp_path):
    """Plain fairseq's fp16 resume rebuilds the fp32 copies from the fp16 model, which was saved at S:
    right after the resume, the grown partition's values must be the set-aside ones in both."""
    from fairseq import checkpoint_utils, options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.trainer import Trainer

    fp16 = ["--fp16", "--fp16-no-flatten-grads", "--fp16-init-scale", "8"]
    first = str(tmp_path / "first")
    h.train_translation_model(data_dir, CGAP + LONG_EPOCHS + fp16 + ["--save-interval-updates", "5"], save_dir=first)
    saved = checkpoints.gap_state(h.load_checkpoint(os.path.join(first, "checkpoint_1_5.pt")))
    assert saved["set_aside"]
    resumed = str(tmp_path / "resumed")
    os.makedirs(resumed)
    shutil.copy(os.path.join(first, "checkpoint_1_5.pt"), os.path.join(resumed, "checkpoint_last.pt"))
    args = options.parse_args_and_arch(options.get_training_parser(),
                                       h.train_args(data_dir, CGAP + LONG_EPOCHS + fp16, save_dir=resumed))
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    trainer = Trainer(cfg, task, model, task.build_criterion(cfg.criterion))
    checkpoint_utils.load_checkpoint(cfg.checkpoint, trainer)
    task.method.begin_update(trainer.model, trainer.optimizer, trainer.get_num_updates())  # the first update's
    index = {id(p): i for i, p in enumerate(p for p in trainer.model.parameters() if p.requires_grad)}
    fp32 = trainer.optimizer.fp32_optimizer.param_groups[0]["params"]
    for name, kept in saved["set_aside"].items():
        weight = trainer.model.get_parameter(name)
        assert torch.equal(weight, kept["weight"]), name
        assert torch.equal(fp32[index[id(weight)]], kept["weight"].float()), name
        assert torch.equal(trainer.model.get_buffer(name[: -len("weight")] + "mask"), kept["mask"])


def test_masks_are_enforced_through_update_freq_and_fixed_without_alternate(data_dir, tmp_path):
    save = str(tmp_path)
    flags = ["--gap-sparsity", "0.5", "--update-freq", "2", "--weight-decay", "0.1"]
    h.train_translation_model(data_dir, flags, save_dir=save)
    first = h.load_checkpoint(os.path.join(save, "checkpoint_last.pt"))
    h.train_translation_model(data_dir, flags + ["--max-epoch", "2"], save_dir=save)
    second = h.load_checkpoint(os.path.join(save, "checkpoint_last.pt"))
    _assert_masked_weights_are_zero(second)
    for name, mask in _masks(first).items():
        assert torch.equal(mask, _masks(second)[name])  # fixed masks
        assert int((~mask).sum()) == round(0.5 * mask.numel())
    # the moments of masked weights are exactly zero
    names = [n for n, p in _named_trainable(second)]
    for i, st in second["last_optimizer_state"]["state"].items():
        mask = _masks(second).get(names[i])
        if mask is not None:
            assert torch.all(st["exp_avg"][~mask] == 0) and torch.all(st["exp_avg_sq"][~mask] == 0)


def _named_trainable(state):
    """(name, tensor) of the trainable parameters in the optimizer's order (model order, no buffers)."""
    skip = (".mask", ".version", "._extra_state", "_float_tensor")
    return [(k, v) for k, v in state["model"].items() if torch.is_tensor(v) and not k.endswith(skip)]


def test_non_uniform_and_block_granularity_are_exact(data_dir, tmp_path):
    flags = CGAP + ["--gap-distribution", "non-uniform"]
    h.train_translation_model(data_dir, flags, save_dir=str(tmp_path / "nu"))
    masks = _masks(h.load_checkpoint(str(tmp_path / "nu" / "checkpoint_last.pt")))
    total = sum(m.numel() for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.75 * total)
    assert len({int((~m).sum()) / m.numel() for m in masks.values()}) > 1  # really non-uniform

    flags = CGAP + ["--gap-granularity", "block-1x8"]
    h.train_translation_model(data_dir, flags, save_dir=str(tmp_path / "blk"))
    state = h.load_checkpoint(str(tmp_path / "blk" / "checkpoint_last.pt"))
    for name, mask in _masks(state).items():
        blocks = mask.view(mask.shape[0], -1, 8)
        assert torch.all(blocks.all(-1) | ~blocks.any(-1))  # every 1x8 block all kept or all zero
        assert int((~blocks.any(-1)).sum()) == round(0.75 * blocks.shape[0] * blocks.shape[1])
    _assert_masked_weights_are_zero(state)


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--gap-sparsity", "1.0"], r"--gap-sparsity must be in \[0, 1\)"),
        (["--gap-sparsity", "-0.1"], r"--gap-sparsity must be in \[0, 1\)"),
        (["--gap-sparsity", "0.5", "--gap-partitions", "6"], "more partitions than layers"),
        (["--gap-sparsity", "0.5", "--gap-granularity", "block-1x7"], "--gap-granularity"),
        (["--gap-sparsity", "0.5", "--alternate"], "--gap-steps"),
        (["--gap-sparsity", "0.5", "--alternate", "--gap-steps", "2"], "exactly one of --gap-step-epochs"),
        (["--gap-sparsity", "0.5", "--max-level", "1"], "cannot be combined with --max-level"),
        (["--gap-sparsity", "0.5", "--alternate", "--gap-steps", "2", "--gap-step-epochs", "1",
          "--gap-finetune-epochs", "1", "--max-epoch", "5"], "set --max-epoch 3 "),
        (CGAP + ["--max-update", "10"], r"C-GaP ends after .* = 14 updates: set --max-update 14 \(or drop it\), not 10"),
        (CGAP + ["--max-epoch", "3"], r"= 14 updates: drop --max-epoch 3 \(the run stops by itself"),
        (["--gap-sparsity", "0.5", "--alternate", "--gap-steps", "2", "--gap-step-epochs", "1",
          "--max-update", "100"], r"= 2 epochs: drop --max-update 100"),
        (CGAP + ["--gap-finetune-epochs", "1"], "--gap-step-updates counts in updates: give the fine-tune in "
                                                "--gap-finetune-updates"),
        (["--gap-sparsity", "0.5", "--alternate", "--gap-steps", "2", "--gap-step-epochs", "1",
          "--gap-finetune-updates", "4"], "--gap-step-epochs counts in epochs"),
        (["--gap-sparsity", "0.5", "--gap-steps", "2"], "--gap-steps is C-GaP's: it needs --alternate"),
        (CGAP + ["--gap-grow-step", "1"], "--gap-grow-step .* cannot be combined with --alternate"),
        (["--gap-sparsity", "0.5", "--gap-grow-step", "1", "--gap-grow-partition", "0"], "exclude each other"),
    ],
)
def test_bad_gap_input_fails_before_training(data_dir, tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        h.train_translation_model(data_dir, flags, save_dir=str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoint_last.pt")


def test_resuming_with_another_gap_configuration_is_rejected(data_dir, tmp_path):
    h.train_translation_model(data_dir, ["--gap-sparsity", "0.5"], save_dir=str(tmp_path))
    with pytest.raises(ValueError, match="was trained with --gap-sparsity 0.5, but this run uses --gap-sparsity 0.8"):
        h.train_translation_model(data_dir, ["--gap-sparsity", "0.8", "--max-epoch", "2"], save_dir=str(tmp_path))


def test_prune_from_dense_finetune_export_and_plain_generate(data_dir, tmp_path):
    dense, tuned = str(tmp_path / "dense"), str(tmp_path / "tuned")
    h.train_translation_model(data_dir, [], task="translation", save_dir=dense)
    pruned = str(tmp_path / "pruned.pt")
    prune_checkpoint(os.path.join(dense, "checkpoint_last.pt"), 0.8, pruned)
    rows = sparsity_rows(pruned)
    assert rows[-1].name == "total" and abs(rows[-1].sparsity - 0.8) < 1e-3
    finetune = ["--gap-sparsity", "0.8", "--finetune-from-model", pruned]
    h.train_translation_model(data_dir, finetune, save_dir=tuned)
    ckpt = os.path.join(tuned, "checkpoint_last.pt")
    first_updates = h.load_checkpoint(ckpt)["optimizer_history"][-1]["num_updates"]
    before = _masks(h.load_checkpoint(pruned))
    os.rename(pruned, pruned + ".away")  # a second launch resumes the fine-tune: it needs checkpoint_last.pt only
    h.train_translation_model(data_dir, finetune + ["--max-epoch", "2"], save_dir=tuned)
    os.rename(pruned + ".away", pruned)
    state = h.load_checkpoint(ckpt)
    assert state["optimizer_history"][-1]["num_updates"] == 2 * first_updates
    for name, mask in _masks(state).items():
        assert torch.equal(mask, before[name])  # fine-tuned with the pruned masks, fixed
    _assert_masked_weights_are_zero(state)

    plugin = h.hypotheses(h.generate_main(data_dir, [], path=ckpt))
    plain_pt, sparse_pt = str(tmp_path / "plain.pt"), str(tmp_path / "sparse.pt")
    report = export(ckpt, "full", plain_pt, sparse_output=sparse_pt)
    assert report["sparse_bytes"] < report["output_bytes"]
    plain = h.load_checkpoint(plain_pt)
    # the stored count of the sparse model: its parameters without the masked-out weights
    zeros = sum(int((~m).sum()) for m in _masks(state).values())
    sparse = checkpoints.count_tensors(plain["model"]) - zeros
    assert checkpoints.parameter_counts(state) == checkpoints.parameter_counts(h.load_checkpoint(pruned)) == {
        "sparse": sparse}
    assert not any(k.endswith(".mask") for k in plain["model"])
    assert report["parameters"] == sparse + zeros  # every parameter, zeros in place; not the version buffers
    assert h.hypotheses(h.generate_main(data_dir, ["--task", "translation"], path=plain_pt, user_dir=False)) == plugin


def test_the_sparse_copy_shows_none_of_torch_s_sparse_notices():
    """torch warns, once per process, that its CSR support is in beta: the export's sparse copy shows no such
    line to its user (its own process: an earlier test may have had the one warning)."""
    code = "import torch; from fairseq_partitioned.cli.export import _csr32; _csr32(torch.eye(4))"
    done = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_pgap_round_with_three_concurrent_workers_loses_no_parameter(data_dir, tmp_path):
    args = h.train_args(data_dir, ["--gap-sparsity", "0.5"])
    for flag in ("--save-dir", "--max-epoch"):
        i = args.index(flag)
        del args[i:i + 2]
    save = str(tmp_path / "pgap")
    pgap_main(["--save-dir", save, "--rounds", "1", "--step-epochs", "1", "--finetune-epochs", "1", "--", *args])
    saved = [h.load_checkpoint(os.path.join(save, "round0", f"worker{w}", "checkpoint_last.pt")) for w in range(3)]
    for w, state in enumerate(saved):  # a worker's checkpoint: its model at S, its partition's dense values aside
        _assert_at_sparsity(state, 0.5)
        assert set(checkpoints.gap_state(state)["set_aside"]) == {n for n in owners(state["model"], 3)[w] if n in _masks(state)}
    workers = [{"model": checkpoints.with_set_aside(state)} for state in saved]
    combined = h.load_checkpoint(os.path.join(save, "round0", "combined.pt"))
    owned = owners(workers[0]["model"], 3)
    assert sorted(k for names in owned for k in names) == sorted(workers[0]["model"])  # every key, once
    # each worker grew a different partition: its dense weights are where the combined model's come from
    for w, names in enumerate(owned):
        for k in names:
            mine, got = workers[w]["model"][k], combined["model"][k]
            if k.endswith(".mask"):
                continue
            mask = combined["model"].get(k[: -len("weight")] + "mask") if k.endswith(".weight") else None
            if mask is not None:
                assert torch.equal(got[mask], mine[mask]) and torch.all(got[~mask] == 0), k
            else:
                assert torch.equal(got, mine), k
    # the workers really trained different partitions, and the shared embeddings moved
    assert any(not torch.equal(workers[0]["model"][k], workers[1]["model"][k]) for k in owned[0])
    for name, mask in _masks(combined).items():
        assert int((~mask).sum()) == round(0.5 * mask.numel())
    assert checkpoints.gap_state(combined)["set_aside"] == {}
    ft = os.path.join(save, "finetune", "checkpoint_last.pt")
    _assert_masked_weights_are_zero(h.load_checkpoint(ft))
    assert len(h.hypotheses(h.generate_main(data_dir, [], path=ft))) > 40


def test_pgap_prints_commands_for_a_scheduler(data_dir, tmp_path, capsys):
    args = ["--user-dir", h.PLUGIN_DIR, "--task", "translation_with_partitioned_model", data_dir,
            "--gap-sparsity", "0.9", "--gap-partitions", "3"]
    pgap_main(["--save-dir", str(tmp_path), "--rounds", "2", "--step-epochs", "10", "--finetune-epochs", "40",
               "--print-commands", "--", *args])
    out = capsys.readouterr().out
    assert out.count("--gap-grow-partition") == 6 and out.count("--combine-round") == 2
    assert "--max-epoch 60" in out  # the fine-tune: 2 x 10 + 40
    assert not os.path.exists(tmp_path / "round0")


def test_export_refuses_a_checkpoint_with_a_dense_partition(data_dir, straight, tmp_path):
    """A checkpoint written by version 0.1 in the middle of a step, without a validation, held its
    grown partition dense: the export names the sparsity and refuses, in one line."""
    state = h.load_checkpoint(os.path.join(straight, "checkpoint_1_5.pt"))
    state["model"] = checkpoints.with_set_aside(state)  # the dense partition back in the model
    state["task_state"]["gap"]["set_aside"] = {}
    path = str(tmp_path / "dense_partition.pt")
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"its masks are at sparsity 0\.\d+, below its --gap-sparsity 0\.75 \(\d+ of "
                                         r"32 matrices dense"):
        export(path, "full", str(tmp_path / "out.pt"))


def _built(data_dir, flags):
    """The task and model of a fairseq-train command line, as fairseq builds them (nothing trained)."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    args = options.parse_args_and_arch(options.get_training_parser(), h.train_args(data_dir, flags))
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    return task, task.build_model(cfg.model)


@pytest.mark.parametrize("first_step", ["dense", "masked"])
def test_the_partition_grown_first_starts_at_its_random_initial_values(data_dir, first_step):
    task, model = _built(data_dir, CGAP + ["--gap-first-step", first_step])
    first = set(task.method.schedule.first_grown)
    assert first == set(task.method.schedule.partitions[0])  # cyclic: partition 0
    for name, layer in task.method._layers(model).items():
        if name in first and first_step == "dense":
            assert layer.mask.all() and torch.count_nonzero(layer.weight) == layer.weight.numel(), name
        else:
            assert int((~layer.mask).sum()) == round(0.75 * layer.mask.numel()), name


def test_a_single_step_run_grows_what_that_c_gap_step_grows(data_dir, tmp_path):
    """--gap-grow-step k: one step of a C-GaP run as its own process, as the official code runs it."""
    task, _ = _built(data_dir, CGAP)
    flags = ["--gap-sparsity", "0.75", "--gap-grow-step", "4", "--max-update", "2"]
    h.train_translation_model(data_dir, flags, save_dir=str(tmp_path))
    state, position = _partition_state(str(tmp_path / "checkpoint_last.pt"))
    assert {n for n, (grown, kept) in position.items() if grown is not None and kept} == set(
        task.method.schedule.grown_by(4))
    _assert_at_sparsity(state, 0.75)  # saved at S, the grown step's dense values set aside

