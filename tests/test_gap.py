"""GaP end to end: C-GaP with a resume mid-step, exact sparsity, fixed masks, prune-from-dense, P-GaP."""
import os

import pytest
import torch

import fairseq_helpers as h
from fairseq_partitioned import checkpoints
from fairseq_partitioned.cli.export import export
from fairseq_partitioned.cli.pgap import cli_main as pgap_main
from fairseq_partitioned.cli.prune import prune_checkpoint
from fairseq_partitioned.cli.report import sparsity_rows
from fairseq_partitioned.pruning import owners

CGAP = ["--alternate", "--gap-sparsity", "0.75", "--gap-steps", "4", "--gap-step-updates", "3",
        "--lr-scheduler", "gap_inverse_sqrt", "--max-epoch", "100"]


def _masks(state):
    return {k[: -len("mask")] + "weight": v for k, v in state["model"].items() if k.endswith(".mask")}


def _assert_masked_weights_are_zero(state):
    masks = _masks(state)
    assert masks
    for name, mask in masks.items():
        assert torch.all(state["model"][name][~mask] == 0), name


def _partition_state(path):
    """The checkpoint, and per prunable weight: (the step that grew it, or None; whether it is set aside)."""
    state = h.load_checkpoint(path)
    gap = checkpoints.gap_state(state)
    return state, {k: (gap["grown"].get(k), k in gap["set_aside"]) for k in gap["prunable"]}


# 25 updates per epoch: the interruptions below are in the middle of an epoch, where a fairseq fp32
# resume is bit-exact on one CPU process (across an epoch boundary fairseq itself drifts slightly).
LONG_EPOCHS = ["--batch-size", "8"]


def _assert_same_training_state(a, b):
    """Model (weights, masks) and optimizer state, bit for bit."""
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    sa, sb = a["last_optimizer_state"]["state"], b["last_optimizer_state"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for key in sa[i]:
            assert torch.equal(torch.as_tensor(sa[i][key]), torch.as_tensor(sb[i][key])), (i, key)


def _interrupted(data_dir, save_dir, flags, stop, end, edit=None):
    h.train_translation_model(data_dir, flags + ["--max-update", str(stop)], save_dir=save_dir)
    path = os.path.join(save_dir, "checkpoint_last.pt")
    mid = _partition_state(path)[1]
    if edit is not None:
        edit(path)
    h.train_translation_model(data_dir, flags + ["--max-update", str(end)], save_dir=save_dir)
    return mid, h.load_checkpoint(path)


def test_cgap_resumes_mid_step_exactly(data_dir, tmp_path):
    """Steps of 3 updates. The run stops after update 5, in the middle of step 1 (updates 3-5), after
    the validation that sets the dense partition aside, and resumes to update 8 (step 2): the same
    weights, masks, optimizer state and schedule position as a straight run, bit for bit."""
    flags = CGAP + LONG_EPOCHS
    h.train_translation_model(data_dir, flags + ["--max-update", "8"], save_dir=str(tmp_path / "a"))
    mid, b = _interrupted(data_dir, str(tmp_path / "b"), flags, 5, 8)
    assert {v for v in mid.values() if v[0] is not None} == {(1, True)}  # step 1's partition, set aside
    a = h.load_checkpoint(str(tmp_path / "a" / "checkpoint_last.pt"))
    assert a["optimizer_history"][-1]["num_updates"] == b["optimizer_history"][-1]["num_updates"] == 8
    _assert_same_training_state(a, b)
    assert checkpoints.gap_state(a)["grown"] == checkpoints.gap_state(b)["grown"]
    _assert_masked_weights_are_zero(a)


def _as_version_0_1(path):
    """Rewrite a checkpoint in version 0.1's layout: GaP's schedule position on each masked layer."""
    state = h.load_checkpoint(path)
    gap = state["task_state"].pop("gap")
    for name in gap["prunable"]:
        state["model"][name[: -len("weight")] + "_extra_state"] = {
            "grown_at": gap["grown"].get(name), "stash": gap["set_aside"].get(name)}
    state["task_state"] = {"gap": {"sparsity": gap["sparsity"], "prunable": gap["prunable"]}}
    torch.save(state, path)


def test_a_version_0_1_checkpoint_resumes_exactly(data_dir, tmp_path):
    flags = CGAP + LONG_EPOCHS
    _, new = _interrupted(data_dir, str(tmp_path / "new"), flags, 5, 8)
    mid, old = _interrupted(data_dir, str(tmp_path / "old"), flags, 5, 8, edit=_as_version_0_1)
    assert {v for v in mid.values() if v[0] is not None} == {(1, True)}
    _assert_same_training_state(new, old)
    assert not any(k.endswith("_extra_state") for k in old["model"])  # written in the new layout
    assert checkpoints.gap_state(old)["grown"] == checkpoints.gap_state(new)["grown"]


def test_cgap_schedule_ends_in_a_fine_tune_at_exact_sparsity(data_dir, tmp_path):
    h.train_translation_model(data_dir, CGAP + ["--max-update", "14"], save_dir=str(tmp_path))
    state, position = _partition_state(str(tmp_path / "checkpoint_last.pt"))
    assert all(grown_at is None and not stashed for grown_at, stashed in position.values())
    for name, mask in _masks(state).items():
        assert int((~mask).sum()) == round(0.75 * mask.numel()), name
    _assert_masked_weights_are_zero(state)


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
    flags = CGAP + ["--gap-distribution", "non-uniform", "--max-update", "14"]
    h.train_translation_model(data_dir, flags, save_dir=str(tmp_path / "nu"))
    masks = _masks(h.load_checkpoint(str(tmp_path / "nu" / "checkpoint_last.pt")))
    total = sum(m.numel() for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.75 * total)
    assert len({int((~m).sum()) / m.numel() for m in masks.values()}) > 1  # really non-uniform

    flags = CGAP + ["--gap-granularity", "block-1x8", "--max-update", "14"]
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
          "--gap-finetune-epochs", "1", "--max-epoch", "5"], "set --max-epoch 3"),
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
    h.train_translation_model(
        data_dir, ["--gap-sparsity", "0.8", "--restore-file", pruned, "--reset-optimizer",
                   "--reset-lr-scheduler", "--reset-dataloader", "--reset-meters"], save_dir=tuned)
    ckpt = os.path.join(tuned, "checkpoint_last.pt")
    state = h.load_checkpoint(ckpt)
    before = _masks(h.load_checkpoint(pruned))
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
    assert h.hypotheses(h.generate_main(data_dir, ["--task", "translation"], path=plain_pt, user_dir=False)) == plugin


def test_pgap_round_with_three_concurrent_workers_loses_no_parameter(data_dir, tmp_path):
    args = h.train_args(data_dir, ["--gap-sparsity", "0.5"])
    for flag in ("--save-dir", "--max-epoch"):
        i = args.index(flag)
        del args[i:i + 2]
    save = str(tmp_path / "pgap")
    pgap_main(["--save-dir", save, "--rounds", "1", "--step-epochs", "1", "--finetune-epochs", "1", "--", *args])
    workers = [h.load_checkpoint(os.path.join(save, "round0", f"worker{w}", "checkpoint_last.pt")) for w in range(3)]
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
