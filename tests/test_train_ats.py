"""End to end: fairseq-train with ATS on tiny data, resume mid-alternation, generate, export."""
import logging
import os
import shutil

import pytest
import torch

import fairseq_helpers as h
from fairseq_partitioned import checkpoints
from fairseq_partitioned.cli.export import export

EXTENSION = {"PartitionedRankLinear": (".W",), "PartitionedLinear": (".weight_blocks.1", ".bias_blocks.1")}
CORE = {"PartitionedRankLinear": (".U.0",), "PartitionedLinear": (".weight_blocks.0",)}
KINDS = list(EXTENSION)


def _keys(state, suffixes):
    return [k for k in state["model"] if k.endswith(suffixes)]


def _train(data_dir, save_dir, kind, max_update, extra=()):
    h.train_translation_model(
        data_dir,
        ["--alternate", "--partitioned-linear-module-name", kind, "--small-ratio", "0.5",
         "--max-update", str(max_update), "--max-epoch", "100", "--update-freq", "2", *extra],
        save_dir=save_dir,
    )
    return h.load_checkpoint(os.path.join(save_dir, "checkpoint_last.pt"))


@pytest.mark.parametrize(
    "kind,extra",
    [("PartitionedRankLinear", ()), ("PartitionedLinear", ()),
     ("PartitionedRankLinear", ("--fp16", "--fp16-no-flatten-grads", "--fp16-init-scale", "8"))],
    ids=["rank", "width", "rank-fp16"],
)
def test_core_update_leaves_extension_and_its_adam_state_untouched(data_dir, tmp_path, kind, extra):
    """Update 0 trains the full network, update 1 the core (Algorithm 1), each of 2 micro-batches;
    every run stops and the next resumes from checkpoint_last.pt, mid-alternation."""
    save = str(tmp_path)
    after_full = _train(data_dir, save, kind, 1, extra)
    after_core = _train(data_dir, save, kind, 2, extra)
    after_full_again = _train(data_dir, save, kind, 3, extra)
    assert after_core["optimizer_history"][-1]["num_updates"] == 2

    ext = _keys(after_core, EXTENSION[kind])
    core = _keys(after_core, CORE[kind])
    assert ext and core
    for k in ext:
        assert torch.equal(after_full["model"][k], after_core["model"][k]), k
    assert any(not torch.equal(after_full["model"][k], after_core["model"][k]) for k in core)
    assert any(not torch.equal(after_core["model"][k], after_full_again["model"][k]) for k in ext)

    # Adam state: exactly the extension tensors skipped the core update, bit for bit.
    before = after_full["last_optimizer_state"]["state"]
    now = after_core["last_optimizer_state"]["state"]
    skipped = [i for i in now if now[i]["step"] == 1]
    assert len(skipped) == len(ext)
    for i in skipped:
        assert torch.equal(now[i]["exp_avg"], before[i]["exp_avg"])
        assert torch.equal(now[i]["exp_avg_sq"], before[i]["exp_avg_sq"])
    assert all(now[i]["step"] == 2 for i in now if i not in skipped)


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """One ATS model of each kind, trained for 2 epochs with validation."""
    out = {}
    for kind in KINDS:
        save = str(tmp_path_factory.mktemp(kind))
        h.train_translation_model(
            data_dir,
            ["--alternate", "--partitioned-linear-module-name", kind, "--max-epoch", "2",
             "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"],
            save_dir=save,
        )
        out[kind] = save
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_generate_core_and_full_and_exports(data_dir, trained, tmp_path, kind):
    ckpt = os.path.join(trained[kind], "checkpoint_last.pt")
    full = h.hypotheses(h.generate_main(data_dir, [], path=ckpt))
    core = h.hypotheses(h.generate_main(data_dir, ["--max-level", "1"], path=ckpt))
    assert len(full) == len(core) > 40
    assert full != core  # two different networks

    full_pt, core_pt = str(tmp_path / "full.pt"), str(tmp_path / "core.pt")
    export(ckpt, "full", full_pt)
    report = export(ckpt, "core", core_pt)
    assert report["output_bytes"] < os.path.getsize(full_pt) or kind == "PartitionedLinear"

    # plain fairseq, no --user-dir: a standard Transformer, same translations as the plugin's full level
    plain = h.load_checkpoint(full_pt)
    assert plain["cfg"]["task"]["_name"] == "translation"
    assert not any(k.endswith((".W", ".U.0", ".weight_blocks.0")) for k in plain["model"])
    assert h.hypotheses(h.generate_main(data_dir, ["--task", "translation"], path=full_pt, user_dir=False)) == full
    # compact core, same translations as the core level: loadable by the plugin (no --max-level needed);
    # the small-width kind's is a narrow standard Transformer, for plain fairseq (tests/test_deploy.py)
    if kind == "PartitionedLinear":
        assert h.hypotheses(h.generate_main(data_dir, ["--task", "translation"], path=core_pt, user_dir=False)) == core
    else:
        assert h.hypotheses(h.generate_main(data_dir, [], path=core_pt)) == core
    assert not _keys(h.load_checkpoint(core_pt), EXTENSION[kind])
    # the counts the checkpoint stores are those of the networks it exports to (the narrow core's
    # q/k heads padded with zeros)
    counts = checkpoints.parameter_counts(h.load_checkpoint(ckpt))
    assert counts["full"] == checkpoints.count_tensors(plain["model"])
    core_tensors = checkpoints.count_tensors(h.load_checkpoint(core_pt)["model"])
    assert counts["core"] == core_tensors - report.get("zeros", 0) < counts["full"]
    if kind == "PartitionedRankLinear":
        assert checkpoints.parameter_counts(h.load_checkpoint(core_pt)) == {"core": counts["core"]}


def test_validation_reports_core_and_full_loss(data_dir, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        h.train_translation_model(data_dir, ["--alternate"], save_dir=str(tmp_path))
    valid = [r.getMessage() for r in caplog.records if r.name == "valid"]
    assert valid and "core_loss" in valid[-1] and " loss " in valid[-1]
    counts = [r.getMessage() for r in caplog.records if "partitioned model" in r.getMessage()]
    assert counts and "core" in counts[0] and "standard Transformer" in counts[0]


def test_max_level_1_trains_a_compact_core(data_dir, tmp_path):
    h.train_translation_model(data_dir, ["--max-level", "1"], save_dir=str(tmp_path))
    state = h.load_checkpoint(str(tmp_path / "checkpoint_last.pt"))
    assert not _keys(state, (".W",)) and _keys(state, (".U.0",))
    out = h.hypotheses(h.generate_main(data_dir, [], path=str(tmp_path / "checkpoint_last.pt")))
    assert len(out) > 40
    with pytest.raises(ValueError, match="holds only levels 1..1"):
        h.generate_main(data_dir, ["--max-level", "2"], path=str(tmp_path / "checkpoint_last.pt"))


@pytest.mark.parametrize("arch", ["transformer_iwslt_de_en", "transformer_wmt_en_de", "transformer_vaswani_wmt_en_de_big"])
def test_standard_architectures_build(data_dir, arch):
    from fairseq_partitioned.tasks.translation_with_partitioned_model import TranslationWithPartitionedModelTask
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser, ["--user-dir", h.PLUGIN_DIR, "--task", "translation_with_partitioned_model", data_dir,
                 "--arch", arch, "--optimizer", "adam_for_partitioned_model", "--small-ratio", "0.03125", "--cpu"]
    )
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    assert isinstance(task, TranslationWithPartitionedModelTask)
    model = task.build_model(cfg.model)
    layers = cfg.model.encoder_layers * 4 + cfg.model.decoder_layers * 6
    from fairseq_partitioned.modules import partitioned_modules
    assert len(list(partitioned_modules(model))) == layers


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--small-ratio", "1.5"], r"--small-ratio must be in \(0, 1\]"),
        (["--small-ratio", "0"], r"--small-ratio must be in \(0, 1\]"),
        (["--small-ratio", "0.001"], r"--small-ratio 0.001 gives size"),
        (["--alternate", "--max-level", "1"], "--alternate needs a network above the core"),
        (["--max-level", "3"], "--max-level must be in 1..2"),
        (["--alternate-lr-coef", "0"], "--alternate-lr-coef must be > 0"),
    ],
)
def test_bad_input_fails_before_training(data_dir, tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        h.train_translation_model(data_dir, flags, save_dir=str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoint_last.pt")


def test_unknown_module_name_is_rejected(data_dir, tmp_path):
    with pytest.raises(SystemExit):  # argparse: invalid choice
        h.train_translation_model(data_dir, ["--partitioned-linear-module-name", "Foo"], save_dir=str(tmp_path))


def test_optimizer_without_task_is_rejected(data_dir, tmp_path):
    with pytest.raises(ValueError, match="needs --task translation_with_partitioned_model"):
        h.train_translation_model(data_dir, ["--optimizer", "adam_for_partitioned_model"], task="translation",
                                  save_dir=str(tmp_path))


def test_alternate_with_another_optimizer_is_rejected(data_dir, tmp_path):
    with pytest.raises(ValueError, match="--alternate needs --optimizer adam_for_partitioned_model"):
        h.train_translation_model(data_dir, ["--alternate", "--optimizer", "adam"], save_dir=str(tmp_path))


def test_resuming_with_another_partitioning_is_rejected(data_dir, trained, tmp_path):
    shutil.copy(os.path.join(trained["PartitionedRankLinear"], "checkpoint_last.pt"), tmp_path)
    with pytest.raises(ValueError, match="was trained with --partitioned-linear-module-name PartitionedRankLinear"):
        h.train_translation_model(data_dir, ["--alternate", "--small-ratio", "0.5"], save_dir=str(tmp_path))


def test_nested_cores_alternate_through_three_levels(data_dir, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        h.train_translation_model(
            data_dir, ["--alternate", "--small-ratio", "0.25,0.5", "--max-update", "3", "--max-epoch", "5"],
            save_dir=str(tmp_path))
    valid = [r.getMessage() for r in caplog.records if r.name == "valid"]
    assert "core_loss" in valid[-1] and "level2_loss" in valid[-1]
    state = h.load_checkpoint(str(tmp_path / "checkpoint_last.pt"))
    steps = sorted({s["step"] for s in state["last_optimizer_state"]["state"].values()})
    assert steps == [1, 2, 3]  # updates 0, 1, 2 trained levels 3, 2, 1: W once, U.1/V.1 twice, core thrice
    ckpt = str(tmp_path / "checkpoint_last.pt")
    outs = [h.hypotheses(h.generate_main(data_dir, ["--max-level", str(level)], path=ckpt)) for level in (1, 2, 3)]
    assert all(len(o) > 40 for o in outs)


def test_the_core_s_init_and_attention_scale_are_part_of_the_partitioning(data_dir, tmp_path):
    flags = ["--alternate", "--partitioned-linear-module-name", "PartitionedLinear", "--small-ratio", "0.5",
             "--core-attention-scale", "core", "--max-update", "2"]
    h.train_translation_model(data_dir, flags, save_dir=str(tmp_path))
    ckpt = str(tmp_path / "checkpoint_last.pt")
    assert h.load_checkpoint(ckpt)["task_state"]["partition"]["core_attention_scale"] == "core"
    # evaluation reads the choice from the checkpoint: the core translates with its own scale
    assert len(h.hypotheses(h.generate_main(data_dir, ["--max-level", "1"], path=ckpt))) > 40
    with pytest.raises(ValueError, match="was trained with .* --core-attention-scale core"):
        h.train_translation_model(data_dir, flags[:-4] + ["--max-update", "3"], save_dir=str(tmp_path))
    rank = str(tmp_path / "rank")
    h.train_translation_model(data_dir, ["--alternate", "--low-rank-init", "dense", "--max-update", "2"], save_dir=rank)
    assert h.load_checkpoint(os.path.join(rank, "checkpoint_last.pt"))["task_state"]["partition"]["low_rank_init"] == "dense"
