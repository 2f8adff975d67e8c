"""adam_for_partitioned_model: the update mask of partial SGD, and nothing else."""
import pytest
import torch
from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig

from fairseq_partitioned.optim.adam_for_partitioned_model import (
    AdamForPartitionedModel,
    AdamForPartitionedModelConfig,
)


def _cfg(**overrides):
    base = dict(
        lr=[0.01], adam_betas="(0.9, 0.98)", adam_eps=1e-8, weight_decay=0.1,
        task_name="translation_with_partitioned_model", fp16=False, bf16=False,
        fp16_no_flatten_grads=False, memory_efficient_fp16=False, memory_efficient_bf16=False, tpu=False,
    )
    base.update(overrides)
    return AdamForPartitionedModelConfig(**base)


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(4, 3, generator=g)) for _ in range(3)]


def _set_grads(params, step):
    g = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)


def test_all_active_is_fairseq_adam_bit_for_bit():
    ours, ref = _params(), _params()
    opt = AdamForPartitionedModel(_cfg(), ours)
    ref_cfg = FairseqAdamConfig(lr=[0.01], adam_betas="(0.9, 0.98)", adam_eps=1e-8, weight_decay=0.1)
    ref_opt = FairseqAdam(ref_cfg, ref)
    for step in range(4):
        _set_grads(ours, step)
        _set_grads(ref, step)
        opt.set_update_mask([True, True, True])
        opt.step()
        ref_opt.step()
    for a, b in zip(ours, ref):
        assert torch.equal(a, b)


def test_inactive_parameter_and_its_state_are_untouched():
    params = _params()
    opt = AdamForPartitionedModel(_cfg(weight_decay=0.5), params)
    _set_grads(params, 0)
    opt.step()  # a full update: every parameter gets Adam state
    ext = params[2]
    before = ext.detach().clone()
    state_before = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in opt.optimizer.state[ext].items()}
    for step in range(1, 4):  # core updates: the extension has a (nonzero) gradient, but is masked
        _set_grads(params, step)
        opt.set_update_mask([True, True, False])
        opt.step()
    assert torch.equal(ext, before)  # no Adam step and no weight decay
    state = opt.optimizer.state[ext]
    assert state["step"] == state_before["step"] == 1
    assert torch.equal(state["exp_avg"], state_before["exp_avg"])
    assert torch.equal(state["exp_avg_sq"], state_before["exp_avg_sq"])
    assert opt.optimizer.state[params[0]]["step"] == 4


def test_mask_is_used_for_one_step_only():
    params = _params()
    opt = AdamForPartitionedModel(_cfg(), params)
    _set_grads(params, 0)
    opt.set_update_mask([False, False, False])
    opt.step()
    assert len(opt.optimizer.state) == 0
    opt.step()  # no mask set: everything updates
    assert len(opt.optimizer.state) == 3


def test_element_mask_keeps_masked_weights_at_zero():
    params = _params()
    mask = torch.rand(4, 3, generator=torch.Generator().manual_seed(1)) > 0.5
    with torch.no_grad():
        params[0].mul_(mask)
    opt = AdamForPartitionedModel(_cfg(), params)
    for step in range(3):
        _set_grads(params, step)
        opt.set_update_mask([mask, True, True])
        opt.step()
    assert torch.all(params[0][~mask] == 0)
    assert torch.all(opt.optimizer.state[params[0]]["exp_avg"][~mask] == 0)


def test_mask_of_wrong_length_names_the_cause():
    opt = AdamForPartitionedModel(_cfg(), _params())
    with pytest.raises(ValueError, match="fp16-no-flatten-grads"):
        opt.set_update_mask([True])


def test_optimizer_without_the_task_is_rejected():
    with pytest.raises(ValueError, match="needs --task translation_with_partitioned_model"):
        AdamForPartitionedModel(_cfg(task_name="translation"), _params())


def test_flattened_half_precision_is_rejected():
    with pytest.raises(ValueError, match="--fp16-no-flatten-grads"):
        AdamForPartitionedModel(_cfg(fp16=True), _params())
    AdamForPartitionedModel(_cfg(fp16=True, fp16_no_flatten_grads=True), _params())


def test_element_mask_is_applied_before_the_gradient_norm():
    """GaP: clipping sees the gradient of the masked network, not the gradient the backward pass left."""
    params = _params()
    mask = torch.rand(4, 3, generator=torch.Generator().manual_seed(2)) > 0.5
    opt = AdamForPartitionedModel(_cfg(), params)
    _set_grads(params, 0)
    expected = torch.cat([params[0].grad[mask], params[1].grad.flatten(), params[2].grad.flatten()]).norm()
    opt.set_update_mask([mask, True, True])
    norm = opt.clip_grad_norm(0.0)
    torch.testing.assert_close(norm, expected)
    assert torch.all(params[0].grad[~mask] == 0)


def test_zero_outside_resets_values_and_moments_outside_the_new_mask_only():
    params = _params()
    opt = AdamForPartitionedModel(_cfg(), params)
    _set_grads(params, 0)
    opt.step()
    before = {k: v.clone() for k, v in opt.optimizer.state[params[1]].items() if torch.is_tensor(v)}
    value = params[1].detach().clone()
    keep = torch.rand(4, 3, generator=torch.Generator().manual_seed(3)) > 0.5
    opt.zero_outside_({1: keep})
    assert torch.all(params[1][~keep] == 0) and torch.equal(params[1][keep], value[keep])
    state = opt.optimizer.state[params[1]]
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.all(state[key][~keep] == 0) and torch.equal(state[key][keep], before[key][keep])
    assert torch.count_nonzero(params[0]) == params[0].numel()  # other parameters untouched
