"""In-place distillation on ATS core updates (--core-distill): the mixed loss by hand, no teacher at
ALPHA = 0, no leak into the extension, the start, resume, data parallelism, the diagnostics, errors."""
import json
import logging
import math
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from fairseq import options, tasks, utils
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

import fairseq_helpers as h
from fairseq_partitioned.methods.distillation import DistillingCriterion
from fairseq_partitioned.modules import partitioned_modules, set_level
from test_train_ats import CORE, EXTENSION, _keys

ATS = ["--alternate", "--max-epoch", "100", "--update-freq", "2",
       "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"]
DISTILL = ["--core-distill", "0.5"]
LONG_EPOCHS = ["--batch-size", "8"]  # 25 micro-batches an epoch: these runs stay inside epoch 1


def _built(data_dir, flags):
    """Task, model, criterion and the first training batch, as fairseq-train builds them."""
    args = options.parse_args_and_arch(options.get_training_parser(), h.train_args(data_dir, flags))
    cfg = convert_namespace_to_omegaconf(args)
    utils.set_torch_seed(1)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    task.load_dataset("train")
    itr = task.get_batch_iterator(task.dataset("train"), max_tokens=500, seed=1).next_epoch_itr(shuffle=False)
    return task, model, criterion, next(itr)


def _hand_loss(model, layers, sample, level, top, alpha, temperature, eps, pad, teacher_dropout=False):
    """The formula of methods/distillation.py, written out: the top level's forward (eval mode, or train
    mode with ``teacher_dropout``; no gradient), then the core's (train mode)."""
    set_level(layers, top)
    model.train(teacher_dropout)
    with torch.no_grad():
        z_top = model(**sample["net_input"])[0].float()
    model.train()
    set_level(layers, level)
    z = model(**sample["net_input"])[0].float()  # (B, T, V)
    keep = sample["target"].ne(pad)
    lprobs = F.log_softmax(z, dim=-1)
    vocab = lprobs.size(-1)
    nll = -lprobs.gather(-1, sample["target"].unsqueeze(-1)).squeeze(-1)
    smooth = -lprobs.sum(-1)
    smoothed = ((1 - eps - eps / (vocab - 1)) * nll + eps / (vocab - 1) * smooth)[keep].sum()
    soft = -(F.softmax(z_top / temperature, -1) * F.log_softmax(z / temperature, -1)).sum(-1)[keep].sum()
    mixed = (1 - alpha) * smoothed + alpha * temperature ** 2 * soft
    return mixed, smoothed, nll[keep].sum(), soft


@pytest.mark.parametrize("kind,ratio,update", [
    ("PartitionedRankLinear", "0.5", 1), ("PartitionedLinear", "0.5", 1),
    ("PartitionedRankLinear", "0.25,0.5", 1), ("PartitionedRankLinear", "0.25,0.5", 2),
], ids=["rank", "width", "nested-level2", "nested-core"])
def test_mixed_loss_and_its_gradient_are_the_hand_computation(data_dir, kind, ratio, update):
    """Loss, logged terms and gradient against the formula; the teacher is the top level, draws no
    random numbers (the core's dropout is the same as the hand computation's), and leaks no gradient."""
    task, model, criterion, sample = _built(data_dir, ATS + [
        "--partitioned-linear-module-name", kind, "--small-ratio", ratio, "--dropout", "0.2",
        "--core-distill", "0.3", "--core-distill-temperature", "2"])
    method, layers = task.method, list(partitioned_modules(model))
    level, top = method.level(update), method.top_level
    assert level < top
    method.begin_update(model, None, update)
    distilled = method.training_criterion(model, criterion, update)
    assert isinstance(distilled, DistillingCriterion)
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    rng = torch.get_rng_state()
    loss, sample_size, log = distilled(model, sample)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    assert model.training and all(m.level == level for m in layers)  # set back for the core's update

    torch.set_rng_state(rng)
    mixed, smoothed, nll, soft = _hand_loss(model, layers, sample, level, top, 0.3, 2.0, 0.1, task.tgt_dict.pad())
    torch.testing.assert_close(loss, mixed)
    torch.testing.assert_close(log["loss"], smoothed.detach())  # fairseq's loss: the core's, on the data
    torch.testing.assert_close(log["nll_loss"], nll.detach())
    torch.testing.assert_close(log["distill_loss"], soft.detach())
    assert sample_size == sample["ntokens"]
    for p, got, want in zip(params, grads, torch.autograd.grad(mixed, params, allow_unused=True)):
        if getattr(p, "partition_level", 1) > level:  # the teacher's only: no gradient at all
            assert got is None and want is None
        else:
            torch.testing.assert_close(got, want)
    assert any(getattr(p, "partition_level", 1) > level for p in params)


def test_a_teacher_with_dropout_is_the_hand_computation_with_dropout_drawn_first(data_dir):
    """--core-distill-teacher-dropout: the teacher's forward in train mode, drawing its dropout before the
    core's; the loss is the formula's with those draws, and not the eval-mode teacher's."""
    task, model, criterion, sample = _built(data_dir, ATS + [
        "--small-ratio", "0.5", "--dropout", "0.2", "--core-distill", "0.3", "--core-distill-teacher-dropout"])
    method, layers = task.method, list(partitioned_modules(model))
    method.begin_update(model, None, 1)
    distilled = method.training_criterion(model, criterion, 1)
    model.train()
    rng = torch.get_rng_state()
    loss, _, log = distilled(model, sample)
    assert model.training and all(m.level == 1 for m in layers)
    pad = task.tgt_dict.pad()
    torch.set_rng_state(rng)
    mixed, _, _, soft = _hand_loss(model, layers, sample, 1, 2, 0.3, 1.0, 0.1, pad, teacher_dropout=True)
    torch.testing.assert_close(loss.detach(), mixed.detach())
    torch.testing.assert_close(log["distill_loss"], soft.detach())
    torch.set_rng_state(rng)
    eval_mixed = _hand_loss(model, layers, sample, 1, 2, 0.3, 1.0, 0.1, pad)[0]
    assert not torch.allclose(loss.detach(), eval_mixed.detach())


def test_no_wrapper_at_alpha_0_at_the_top_level_or_before_the_start(data_dir):
    task, model, criterion, _ = _built(data_dir, ATS)
    assert all(task.method.training_criterion(model, criterion, u) is criterion for u in range(4))
    task, model, criterion, _ = _built(data_dir, ATS + DISTILL + ["--core-distill-start", "3"])
    got = [task.method.training_criterion(model, criterion, u) is criterion for u in range(6)]
    assert got == [True, True, True, False, True, False]  # even updates: the full network, the teacher


def _train(data_dir, save_dir, flags, updates):
    h.train_translation_model(data_dir, ATS + ["--max-update", str(updates)] + flags, save_dir=save_dir)
    return h.load_checkpoint(os.path.join(save_dir, "checkpoint_last.pt"))


def _count_teacher_calls(monkeypatch):
    calls = []
    teacher = DistillingCriterion.teacher_probs

    def counted(self, net, sample):
        calls.append(1)
        return teacher(self, net, sample)

    monkeypatch.setattr(DistillingCriterion, "teacher_probs", counted)
    return calls


def _distill_losses(caplog):
    """num_updates -> the distill_loss logged for that update (None: not distilled)."""
    out = {}
    for record in caplog.records:
        if record.name == "train_inner":
            message = record.getMessage()
            value = re.search(r"distill_loss=([^,]+)", message)
            updates = int(re.search(r"num_updates=(\d+)", message).group(1))
            out[updates] = None if value is None or value.group(1) == "None" else float(value.group(1))
    return out


def test_alpha_0_is_ats_bit_for_bit_without_a_teacher_forward(data_dir, tmp_path, monkeypatch):
    calls = _count_teacher_calls(monkeypatch)
    plain = _train(data_dir, str(tmp_path / "plain"), [], 4)
    zero = _train(data_dir, str(tmp_path / "zero"), ["--core-distill", "0"], 4)
    assert calls == []
    h.assert_same_training_state(plain, zero)


def test_no_distillation_before_the_start(data_dir, tmp_path, monkeypatch, caplog):
    calls = _count_teacher_calls(monkeypatch)
    plain = _train(data_dir, str(tmp_path / "plain"), [], 4)
    late = _train(data_dir, str(tmp_path / "late"), DISTILL + ["--core-distill-start", "4"], 4)
    assert calls == []
    h.assert_same_training_state(plain, late)  # the first 4 updates (0..3) are plain ATS
    with caplog.at_level(logging.INFO):
        _train(data_dir, str(tmp_path / "start3"), DISTILL + ["--core-distill-start", "3"], 4)
    assert len(calls) == 2  # update 3, a core update, of 2 micro-batches
    logged = _distill_losses(caplog)
    assert [u for u, v in sorted(logged.items()) if v is not None] == [4]  # fairseq logs update 3 as num_updates 4
    assert logged[4] > 0


@pytest.mark.parametrize(
    "kind,extra",
    [("PartitionedRankLinear", ()), ("PartitionedLinear", ()),
     ("PartitionedRankLinear", ("--fp16", "--fp16-no-flatten-grads", "--fp16-init-scale", "8"))],
    ids=["rank", "width", "rank-fp16"],
)
def test_a_distilled_core_update_leaves_the_extension_and_its_adam_state_untouched(
        data_dir, tmp_path, kind, extra):
    """Update 0 trains the full network; update 1, the core with distillation, resumes from it: the
    extension and its Adam moments stay as they were, bit for bit, the core moves, and not as ATS moves it."""
    flags = ["--partitioned-linear-module-name", kind, "--small-ratio", "0.5", *extra]
    after_full = _train(data_dir, str(tmp_path / "d"), flags + DISTILL, 1)
    shutil.copytree(tmp_path / "d", tmp_path / "plain")
    after_core = _train(data_dir, str(tmp_path / "d"), flags + DISTILL, 2)
    plain_core = _train(data_dir, str(tmp_path / "plain"), flags, 2)
    ext, core = _keys(after_core, EXTENSION[kind]), _keys(after_core, CORE[kind])
    assert ext and core
    for k in ext:
        assert torch.equal(after_full["model"][k], after_core["model"][k]), k
    assert any(not torch.equal(after_full["model"][k], after_core["model"][k]) for k in core)
    assert any(not torch.equal(plain_core["model"][k], after_core["model"][k]) for k in core)
    before, now = after_full["last_optimizer_state"]["state"], after_core["last_optimizer_state"]["state"]
    skipped = [i for i in now if now[i]["step"] == 1]
    assert len(skipped) == len(ext)
    for i in skipped:
        assert torch.equal(now[i]["exp_avg"], before[i]["exp_avg"])
        assert torch.equal(now[i]["exp_avg_sq"], before[i]["exp_avg_sq"])


def test_a_distilled_checkpoint_exports_and_translates(data_dir, tmp_path):
    """Export builds the task with --max-level 1 or without --alternate: no teacher is needed there."""
    from fairseq_partitioned.cli.export import export

    _train(data_dir, str(tmp_path), DISTILL, 2)
    ckpt, core = str(tmp_path / "checkpoint_last.pt"), str(tmp_path / "core.pt")
    export(ckpt, "full", str(tmp_path / "full.pt"))
    export(ckpt, "core", core)
    assert h.hypotheses(h.generate_main(data_dir, [], path=core)) == h.hypotheses(
        h.generate_main(data_dir, ["--max-level", "1"], path=ckpt))


@pytest.mark.parametrize("teacher", [[], ["--core-distill-teacher-dropout"]], ids=["eval-teacher", "teacher-dropout"])
def test_resume_inside_epoch_1_is_bit_exact(data_dir, tmp_path, teacher):
    flags = DISTILL + ["--core-distill-temperature", "2", "--core-distill-start", "2"] + LONG_EPOCHS + teacher
    straight = str(tmp_path / "straight")
    a = _train(data_dir, straight, flags + ["--save-interval-updates", "3"], 6)
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(os.path.join(straight, "checkpoint_1_3.pt"), resumed / "checkpoint_last.pt")
    b = _train(data_dir, str(resumed), flags, 6)
    assert a["optimizer_history"][-1]["num_updates"] == b["optimizer_history"][-1]["num_updates"] == 6
    h.assert_same_training_state(a, b)


def test_gradient_alignment_measures_without_changing_a_distilled_run(data_dir, tmp_path, caplog):
    off = _train(data_dir, str(tmp_path / "off"), DISTILL, 4)
    with caplog.at_level(logging.INFO):
        on = _train(data_dir, str(tmp_path / "on"), DISTILL + ["--gradient-alignment-interval", "1"], 4)
    h.assert_same_training_state(off, on)
    last = [r.getMessage() for r in caplog.records if r.name == "train_inner"][-1]
    assert "grad_alignment=" in last and _distill_losses(caplog)[4] > 0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_workers_distil_with_legacy_ddp(data_dir, tmp_path):
    save = str(tmp_path / "ckpt")
    argv = h.train_args(data_dir, ATS + DISTILL + [
        "--max-update", "4", "--distributed-world-size", "2", "--distributed-init-method",
        f"tcp://127.0.0.1:{_free_port()}", "--distributed-no-spawn", "--distributed-backend", "gloo",
        "--ddp-backend", "legacy_ddp"], save_dir=save)
    procs = [subprocess.Popen([sys.executable, "-m", "fairseq_cli.train", *argv, "--distributed-rank", str(rank)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    last = [line for line in outputs[0].splitlines() if "num_updates=4," in line]
    assert last and re.search(r"distill_loss=[0-9.]+,", last[0]), outputs[0][-3000:]
    state = h.load_checkpoint(os.path.join(save, "checkpoint_last.pt"))
    assert sorted({s["step"] for s in state["last_optimizer_state"]["state"].values()}) == [2, 4]


def test_c10d_wrapper_with_find_unused_parameters_gives_the_unwrapped_gradients(data_dir):
    """fairseq's c10d wrapper (ModuleProxyWrapper around DistributedDataParallel) needs a GPU in
    fairseq-train (device ids); built here on CPU, one gloo process, over full and distilled core
    updates: every backward reduces, and the gradients are those of the model without the wrapper."""
    import torch.distributed as dist
    from fairseq.distributed import ModuleProxyWrapper
    from torch.nn.parallel import DistributedDataParallel

    task, model, criterion, sample = _built(data_dir, ATS + DISTILL + ["--dropout", "0"])
    params = [p for p in model.parameters() if p.requires_grad]

    def grads(wrapped, update):
        task.method.begin_update(model, None, update)
        model.zero_grad()
        loss = task.method.training_criterion(wrapped, criterion, update)(wrapped, sample)[0]
        loss.backward()
        return [None if p.grad is None or not p.grad.any() else p.grad.clone() for p in params]

    plain = [grads(model, u) for u in range(4)]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        wrapped = ModuleProxyWrapper(DistributedDataParallel(model, find_unused_parameters=True))
        ddp = [grads(wrapped, u) for u in range(4)]
    finally:
        dist.destroy_process_group()
    for update, (a, b) in enumerate(zip(plain, ddp)):
        for x, y in zip(a, b):
            assert (x is None) == (y is None), update
            if x is not None:
                torch.testing.assert_close(x, y)
    assert any(x is None for x in plain[1]) and not any(x is None for x in plain[0])


@pytest.mark.parametrize("flags,message", [
    (["--alternate", "--core-distill", "1.5"], "--core-distill must be in [0, 1], got 1.5"),
    (["--alternate", "--core-distill", "-0.5"], "--core-distill must be in [0, 1], got -0.5"),
    (["--alternate", "--core-distill", "0.5", "--core-distill-temperature", "0"],
     "--core-distill-temperature must be > 0, got 0.0"),
    (["--alternate", "--core-distill", "0.5", "--core-distill-start", "-1"],
     "--core-distill-start must be >= 0, got -1"),
    (["--core-distill", "0.5"], "--core-distill distils the full network into the core on the core updates of "
                                "--alternate, or at every update with --core-loss-weight: add one of them"),
    (["--alternate", "--max-level", "1", "--core-distill", "0.5"],
     "--core-distill needs the full network as its teacher: drop --max-level 1"),
    (["--max-level", "1", "--core-distill", "0.5"], "--core-distill needs the full network as its teacher"),
    (["--gap-sparsity", "0.5", "--core-distill", "0.5"], "--core-distill distils an ATS core, GaP has none"),
    (["--alternate", "--core-distill-temperature", "2"],
     "--core-distill-temperature has no effect without --core-distill > 0"),
    (["--alternate", "--core-distill-start", "100"], "--core-distill-start has no effect without --core-distill > 0"),
    (["--alternate", "--core-distill-teacher-dropout"],
     "--core-distill-teacher-dropout has no effect without --core-distill > 0"),
], ids=["alpha-high", "alpha-negative", "temperature", "start", "no-alternate", "alternate-max-level-1",
        "max-level-1", "gap", "temperature-alone", "start-alone", "teacher-dropout-alone"])
def test_bad_input_is_one_line_before_training(data_dir, tmp_path, flags, message):
    with pytest.raises(ValueError) as error:
        h.train_translation_model(data_dir, flags, save_dir=str(tmp_path))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not os.path.exists(tmp_path / "checkpoint_last.pt")


def test_the_benchmark_times_a_distilled_core_update_against_ats_and_a_full_update(tmp_path):
    from test_benchmark import SCRIPT, TINY

    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--cpu", "--threads", "1", "--arch", "transformer", "--arch-args", TINY,
         "--max-tokens", "500", "--warmup", "1", "--repeats", "2", "--skip-memory",
         "--configs", "ats-rank-0.25,distill-rank-0.25", "--json", str(out)],
        cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "with --core-distill" in proc.stdout
    train = json.loads(out.read_text())["train"]
    core, avg = train["distill-rank-0.25/core"], train["distill-rank-0.25/avg"]
    for key in ("ratio_to_ats", "ratio_to_ats_cpu", "ratio_to_full", "ratio_to_full_cpu"):
        assert math.isfinite(core[key]) and core[key] > 0, key
    assert math.isfinite(avg["ratio_to_ats"]) and "ratio_to_full" not in avg
    assert core["params"] == train["ats-rank-0.25/core"]["params"] < train["distill-rank-0.25/full"]["params"]
