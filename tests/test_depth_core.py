"""The depth core (--core-decoder-layers K): the model whose decoder runs its first K layers, trained
with ATS's alternation or from every update (--core-loss-weight), evaluated, exported and resumed.
TINY_ARCH has 2 decoder layers: K = 1, and the extension is decoder layer 1."""
import logging
import os
import shutil

import pytest
import torch

import fairseq_helpers as h
from fairseq_partitioned import checkpoints
from fairseq_partitioned.cli.export import cli_main as export_main, load_partitioned
from fairseq_partitioned.methods.distillation import CoreDistillation
from fairseq_partitioned.methods.early_exit import EarlyExitCriterion
from fairseq_partitioned.modules import PartitionedDecoderLayers, exit_logits, set_level

DEPTH = ["--core-decoder-layers", "1"]
EVERY = [*DEPTH, "--core-loss-weight", "0.5"]
LABEL_SMOOTHING = ["--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"]
LONG_EPOCHS = ["--batch-size", "8", "--max-epoch", "100"]  # 25 updates an epoch: resumes stay inside epoch 1


def _top(state):
    return [k for k in state["model"] if k.startswith("decoder.layers.1.")]


def _train(data_dir, save, flags, max_update):
    h.train_translation_model(data_dir, [*flags, *LONG_EPOCHS, "--max-update", str(max_update)], save_dir=save)
    return h.load_checkpoint(os.path.join(save, "checkpoint_last.pt"))


def _adam_state(state, names):
    """Adam's state of the named parameters (the optimizer holds them in the model's parameter order)."""
    order = [k for k in state["model"] if not k.endswith((".version", "._float_tensor"))]  # the buffers left out
    return {name: state["last_optimizer_state"]["state"][order.index(name)] for name in names}


# ----------------------------------------------------------------------------------- the module


def test_the_core_iterates_the_first_k_layers_and_keeps_the_list_s_names():
    layers = PartitionedDecoderLayers([torch.nn.Linear(2, 2) for _ in range(3)], core_layers=2)
    assert len(list(layers)) == 3
    layers.set_level(1)
    assert list(layers) == [layers[0], layers[1]] and len(layers) == 3
    assert [n for n, _ in layers.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias"]
    assert layers.param_levels() == {"0.weight": 1, "0.bias": 1, "1.weight": 1, "1.bias": 1, "2.weight": 2, "2.bias": 2}
    core_alone = PartitionedDecoderLayers([torch.nn.Linear(2, 2) for _ in range(3)], core_layers=2, built_levels=1)
    assert len(core_alone) == 2 and list(core_alone) == core_alone.built()


# ------------------------------------------------------------------------------- ATS, alternating


def test_a_core_update_leaves_the_top_layers_and_their_adam_state_untouched(data_dir, tmp_path):
    """Update 0 trains the full network, update 1 the core, update 2 the full network again; each run
    resumes from the one before (inside epoch 1)."""
    save, flags = str(tmp_path), ["--alternate", *DEPTH]
    after_full = _train(data_dir, save, flags, 1)
    after_core = _train(data_dir, save, flags, 2)
    after_full_again = _train(data_dir, save, flags, 3)
    top = _top(after_core)
    core = [k for k in after_core["model"] if k.startswith("decoder.layers.0.") or k.startswith("encoder.layers.")]
    assert top and core
    assert all(torch.equal(after_full["model"][k], after_core["model"][k]) for k in top)
    assert all(not torch.equal(after_full["model"][k], after_core["model"][k]) for k in core if k.endswith("weight"))
    assert all(not torch.equal(after_core["model"][k], after_full_again["model"][k]) for k in top if k.endswith("weight"))
    before, now = _adam_state(after_full, top), _adam_state(after_core, top)
    for name in top:
        assert now[name]["step"] == 1
        assert torch.equal(now[name]["exp_avg"], before[name]["exp_avg"]), name
        assert torch.equal(now[name]["exp_avg_sq"], before[name]["exp_avg_sq"]), name
    assert all(s["step"] == 2 for s in _adam_state(after_core, core).values())


@pytest.mark.parametrize("flags", [["--alternate", *DEPTH, "--core-distill", "0.5"], [*EVERY, "--core-distill", "0.5"]],
                         ids=["alternate-distill", "every-update-distill"])
def test_a_resume_is_bit_exact(data_dir, tmp_path, flags):
    straight = _train(data_dir, str(tmp_path / "straight"), flags, 6)
    _train(data_dir, str(tmp_path / "resumed"), flags, 3)
    resumed = _train(data_dir, str(tmp_path / "resumed"), flags, 6)
    h.assert_same_training_state(straight, resumed)


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """A depth model trained with alternation and one from every update, 2 epochs each with validation."""
    out = {}
    for name, flags in (("alternate", ["--alternate", *DEPTH]), ("every", EVERY)):
        save = str(tmp_path_factory.mktemp(name))
        h.train_translation_model(data_dir, [*flags, "--max-epoch", "2", *LABEL_SMOOTHING], save_dir=save)
        out[name] = os.path.join(save, "checkpoint_last.pt")
    return out


@pytest.mark.parametrize("name", ["alternate", "every"])
def test_generate_translates_with_the_core_and_the_export_is_its_first_layers(data_dir, trained, tmp_path, name):
    full = h.hypotheses(h.generate_main(data_dir, [], path=trained[name]))
    core = h.hypotheses(h.generate_main(data_dir, ["--max-level", "1"], path=trained[name]))
    assert len(full) == len(core) > 40 and full != core
    exported = str(tmp_path / "core.pt")
    export_main([trained[name], "--level", "core", "--output", exported])
    plain = h.load_checkpoint(exported)
    assert plain["cfg"]["model"]["decoder_layers"] == 1 and not _top(plain)
    counts = checkpoints.parameter_counts(h.load_checkpoint(trained[name]))
    assert counts["core"] == checkpoints.count_tensors(plain["model"]) < counts["full"]
    assert counts["full"] == checkpoints.count_tensors(h.load_checkpoint(trained[name])["model"])
    beam = ["--beam", "2", "--max-len-b", "20"]
    assert h.hypotheses(h.plain_fairseq_generate(data_dir, exported, beam)) == core


def test_the_exported_core_computes_the_plugin_s_core(data_dir, trained, tmp_path):
    """Teacher-forced log-probabilities of the valid split: the plain 1-layer Transformer of the export
    and the plugin's depth model at level 1, bit for bit (the same tensors in the same operations)."""
    from fairseq import checkpoint_utils

    exported = str(tmp_path / "core.pt")
    export_main([trained["alternate"], "--level", "core", "--output", exported])
    _, _, model = load_partitioned(trained["alternate"])
    set_level([model.decoder.layers], 1)
    [plain], _, task = checkpoint_utils.load_model_ensemble_and_task([exported], arg_overrides={"data": data_dir})
    plain.eval()
    assert len(plain.decoder.layers) == 1 and type(plain.decoder.layers) is torch.nn.ModuleList
    sample = _valid_batch(task)
    with torch.no_grad():
        ours = model.get_normalized_probs(model(**sample["net_input"]), log_probs=True)
        theirs = plain.get_normalized_probs(plain(**sample["net_input"]), log_probs=True)
    assert torch.equal(ours, theirs)


def _plugin_model(path, data_dir):
    """The plugin's model of a checkpoint (as fairseq-generate loads it, in eval mode) and its task."""
    from fairseq import checkpoint_utils

    [model], _, task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides={"data": data_dir})
    model.eval()
    return model, task


def _valid_batch(task):
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    return dataset.collater([dataset[i] for i in range(len(dataset))])


def test_validation_reports_both_networks(data_dir, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        h.train_translation_model(data_dir, EVERY, save_dir=str(tmp_path))
    valid = [r.getMessage() for r in caplog.records if r.name == "valid"]
    trained = [r.getMessage() for r in caplog.records if r.name == "train"]
    assert valid and "core_loss" in valid[-1] and " loss " in valid[-1]
    assert trained and "core_loss" in trained[-1]


def test_the_core_alone_is_a_shallow_transformer(data_dir, tmp_path):
    h.train_translation_model(data_dir, [*DEPTH, "--max-level", "1"], save_dir=str(tmp_path))
    state = h.load_checkpoint(str(tmp_path / "checkpoint_last.pt"))
    assert not _top(state) and any(k.startswith("decoder.layers.0.") for k in state["model"])
    assert len(h.hypotheses(h.generate_main(data_dir, [], path=str(tmp_path / "checkpoint_last.pt")))) > 40
    with pytest.raises(ValueError, match="holds only levels 1..1"):
        h.generate_main(data_dir, ["--max-level", "2"], path=str(tmp_path / "checkpoint_last.pt"))


# ---------------------------------------------------------------------------------- every update


def test_the_early_exit_is_the_core_s_own_forward(data_dir, trained):
    """In eval mode the core's logits read from the full forward's state after layer K are exactly the
    logits of the forward at level 1."""
    model, task = _plugin_model(trained["every"], data_dir)
    sample = _valid_batch(task)
    with torch.no_grad():
        logits, extra = model(**sample["net_input"])
        early = exit_logits(model.decoder, extra["inner_states"][1])
        set_level([model.decoder.layers], 1)
        core = model(**sample["net_input"])[0]
    assert torch.equal(early, core) and not torch.equal(logits, core)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_every_update_s_loss_is_the_full_loss_plus_w_times_the_core_s(data_dir, trained, alpha):
    """By hand: criterion(full) + w x [(1 - ALPHA) criterion(core) + ALPHA T^2 CE(softmax(z_full / T),
    log_softmax(z_core / T))], the model in eval mode (no dropout), T = 2."""
    import torch.nn.functional as F
    from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion

    model, task = _plugin_model(trained["every"], data_dir)
    sample = _valid_batch(task)
    criterion = LabelSmoothedCrossEntropyCriterion(task, sentence_avg=False, label_smoothing=0.1)
    distill = CoreDistillation(alpha, 2.0)
    loss, sample_size, log = EarlyExitCriterion(criterion, 0.5, 1, distill, alpha > 0)(model, sample)

    with torch.no_grad():
        full_loss, _, _ = criterion(model, sample)
        full_logits = model(**sample["net_input"])[0]
        set_level([model.decoder.layers], 1)
        core_loss, _, core_log = criterion(model, sample)
        core_logits = model(**sample["net_input"])[0]
    keep = sample["target"].ne(task.target_dictionary.pad())
    soft = -(F.softmax(full_logits / 2, -1) * F.log_softmax(core_logits / 2, -1)).sum(-1)[keep].sum()
    expected = full_loss + 0.5 * ((1 - alpha) * core_loss + alpha * 4 * soft)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-6, atol=0)
    assert sample_size == sample["ntokens"]
    torch.testing.assert_close(log["core_loss"], core_log["loss"])
    assert ("distill_loss" in log) == (alpha > 0)


def test_every_update_trains_every_parameter(data_dir, tmp_path):
    first = _train(data_dir, str(tmp_path), EVERY, 1)
    second = _train(data_dir, str(tmp_path), EVERY, 2)
    weights = [k for k, v in second["model"].items() if k.endswith("weight")]
    assert all(not torch.equal(first["model"][k], second["model"][k]) for k in weights)
    assert all(s["step"] == 2 for s in second["last_optimizer_state"]["state"].values())


# ------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("flags,message", [
    (["--core-decoder-layers", "-1"], r"--core-decoder-layers must be >= 1 \(0 = no depth core\), got -1"),
    (["--core-decoder-layers", "2"], r"--core-decoder-layers must be in 1..1 for a decoder of 2 layers \(--decoder-layers 2\), got 2"),
    ([*DEPTH, "--small-ratio", "0.5"], "--small-ratio 0.5 is for a low-rank or small-width core; --core-decoder-layers 1"),
    ([*DEPTH, "--partitioned-linear-module-name", "PartitionedLinear"], "do not combine"),
    ([*DEPTH, "--decoder-layerdrop", "0.2"], "cannot be combined with --decoder-layerdrop"),
    ([*DEPTH, "--gap-sparsity", "0.5"], "--core-decoder-layers 1 is for a partitioned model"),
    (["--core-loss-weight", "0.5"], "it needs a depth core, --core-decoder-layers K"),
    ([*EVERY, "--alternate"], "--core-loss-weight trains both networks at every update, --alternate in turns"),
    ([*DEPTH, "--core-loss-weight", "-1"], r"--core-loss-weight must be >= 0 \(0 = off\), got -1"),
    ([*EVERY, "--max-level", "1"], "--core-loss-weight trains the full network and its core: drop --max-level 1"),
    ([*EVERY, "--alternate-lr-coef", "0.5"], "--alternate-lr-coef scales the core updates of --alternate"),
    ([*EVERY, "--core-distill", "0.5", "--core-distill-teacher-dropout"], "--core-distill-teacher-dropout has no effect"),
    (["--core-distill", "0.5", *DEPTH], "or at every update with --core-loss-weight"),
    ([*DEPTH, "--arch", "lightconv", "--encoder-kernel-size-list", "[3,3]", "--decoder-kernel-size-list", "[3,3]"],
     "--core-decoder-layers needs a Transformer decoder .*: LightConvModel has none"),
], ids=["negative", "too-deep", "with-small-ratio", "with-module-name", "layerdrop", "gap", "weight-without-depth",
        "weight-with-alternate", "negative-weight", "weight-with-max-level", "weight-with-lr-coef",
        "weight-with-teacher-dropout", "distill-without-schedule", "lightconv"])
def test_bad_input_is_one_line_before_training(data_dir, tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        h.train_translation_model(data_dir, flags, save_dir=str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoint_last.pt")


def test_resuming_a_depth_checkpoint_with_another_k_is_refused(data_dir, trained, tmp_path):
    shutil.copy(trained["alternate"], tmp_path / "checkpoint_last.pt")
    with pytest.raises(ValueError, match="was trained with --core-decoder-layers 1 .* but this run uses --partitioned"):
        h.train_translation_model(data_dir, ["--alternate"], save_dir=str(tmp_path))
