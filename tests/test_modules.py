"""The partitioned layers compute exactly the formulas of the ATS paper, at every level."""
import pytest
import torch
from torch import nn

from fairseq_partitioned.modules import (
    PartitionedLinear,
    PartitionedRankLinear,
    PartitioningMismatch,
)


def _fill(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return module


@pytest.mark.parametrize("tokens", [3, 400])  # both the additive and the merged path
def test_rank_full_level_is_VU_plus_W(tokens):
    layer = _fill(PartitionedRankLinear(12, 20, small_ratios=(0.25,)))
    x = torch.randn(tokens, 12)
    U, V, W, b = layer.U[0], layer.V[0], layer.W, layer.bias
    assert U.shape == (3, 12) and V.shape == (20, 3)  # k = round(0.25 * min(12, 20))
    torch.testing.assert_close(layer(x), x @ (V @ U + W).T + b)


def test_rank_core_level_is_VU():
    layer = _fill(PartitionedRankLinear(12, 20, small_ratios=(0.25,)))
    layer.set_level(1)
    x = torch.randn(5, 12)
    torch.testing.assert_close(layer(x), x @ (layer.V[0] @ layer.U[0]).T + layer.bias)


def test_rank_core_does_not_touch_W():
    layer = _fill(PartitionedRankLinear(12, 20))
    layer.set_level(1)
    layer(torch.randn(4, 12)).sum().backward()
    assert layer.W.grad is None  # W is not in the core's graph at all
    assert layer.U[0].grad is not None


def test_rank_nested_levels():
    layer = _fill(PartitionedRankLinear(16, 16, small_ratios=(0.125, 0.5)))
    assert layer.ranks == (2, 8) and layer.num_levels == 3
    x = torch.randn(4, 16)
    U = torch.cat([layer.U[0], layer.U[1]])
    V = torch.cat([layer.V[0], layer.V[1]], 1)
    for level, expected in [
        (1, x @ (layer.V[0] @ layer.U[0]).T + layer.bias),
        (2, x @ (V @ U).T + layer.bias),
        (3, x @ (V @ U + layer.W).T + layer.bias),
    ]:
        layer.set_level(level)
        torch.testing.assert_close(layer(x), expected)


def test_rank_eval_uses_the_merged_weight_bit_for_bit():
    layer = _fill(PartitionedRankLinear(12, 20)).eval()
    x = torch.randn(2, 12)
    with torch.no_grad():
        assert torch.equal(layer(x), nn.functional.linear(x, layer.merged_weight(), layer.bias))


def test_width_fc1_fc2_core_equals_sliced_dense():
    fc1 = nn.Linear(8, 16)
    fc2 = nn.Linear(16, 8)
    p1 = PartitionedLinear.from_linear(fc1, (0.25,), partition="out")
    p2 = PartitionedLinear.from_linear(fc2, (0.25,), partition="in")
    x = torch.randn(5, 8)
    # full level: exactly the dense layers
    torch.testing.assert_close(p2(torch.relu(p1(x))), fc2(torch.relu(fc1(x))))
    # core: the first round(0.25 * 16) = 4 hidden units of the same dense weights
    p1.set_level(1)
    p2.set_level(1)
    h = torch.relu(x @ fc1.weight[:4].T + fc1.bias[:4])
    torch.testing.assert_close(p2(torch.relu(p1(x))), h @ fc2.weight[:, :4].T + fc2.bias)


def test_width_attention_core_uses_first_dims_of_each_head():
    heads, head_dim = 2, 8
    q = nn.Linear(16, heads * head_dim)
    pq = PartitionedLinear.from_linear(q, (0.25,), partition="out", groups=heads)
    x = torch.randn(3, 16)
    torch.testing.assert_close(pq(x), q(x))  # full level: the dense projection, same layout
    pq.set_level(1)
    y = pq(x).view(3, heads, head_dim)
    dense = q(x).view(3, heads, head_dim)
    torch.testing.assert_close(y[..., :2], dense[..., :2])  # round(0.25 * 8) = 2 dims per head
    assert torch.all(y[..., 2:] == 0)  # padded: contributes nothing to q . k


def test_width_attention_nested_middle_level_uses_first_dims_of_each_head():
    heads, head_dim = 2, 8
    q = nn.Linear(16, heads * head_dim)
    pq = PartitionedLinear.from_linear(q, (0.25, 0.5), partition="out", groups=heads)
    x = torch.randn(3, 16)
    pq.set_level(2)  # round(0.5 * 8) = 4 dims per head, from the core's 2 and level 2's next 2
    y = pq(x).view(3, heads, head_dim)
    dense = q(x).view(3, heads, head_dim)
    torch.testing.assert_close(y[..., :4], dense[..., :4])
    assert torch.all(y[..., 4:] == 0)


@pytest.mark.parametrize("kind", ["rank", "width"])
def test_merged_weight_matches_module_output(kind):
    if kind == "rank":
        layer = _fill(PartitionedRankLinear(12, 20))
    else:
        layer = _fill(PartitionedLinear(12, 20, groups=4))
    x = torch.randn(7, 12)
    torch.testing.assert_close(layer(x), nn.functional.linear(x, layer.merged_weight(), layer.merged_bias()))


@pytest.mark.parametrize("ratio,dim", [(0.01, 16), (0.03, 16)])
def test_rank_rounding_to_zero_is_rejected(ratio, dim):
    with pytest.raises(ValueError, match="--small-ratio .* = 0"):
        PartitionedRankLinear(dim, dim, small_ratios=(ratio,))


def test_ratio_one_is_a_full_rank_core():
    layer = PartitionedRankLinear(8, 8, small_ratios=(1.0,))
    assert layer.ranks == (8,)
    width = PartitionedLinear(8, 8, small_ratios=(1.0,))
    assert width.weight_blocks[1].numel() == 0  # empty extension: the core is the whole layer


def test_partial_build_has_no_extension_parameters():
    layer = PartitionedRankLinear(12, 20, built_levels=1)
    assert layer.W is None and layer.level == 1
    with pytest.raises(ValueError, match="level 2 is not available"):
        layer.set_level(2)


def test_loading_another_partitioning_is_one_clear_error():
    a = PartitionedRankLinear(12, 20, small_ratios=(0.25,))
    b = PartitionedRankLinear(12, 20, small_ratios=(0.5,))
    state = {f"fc.{k}": v for k, v in a.state_dict().items()}
    with pytest.raises(PartitioningMismatch, match="another --small-ratio"):
        b.upgrade_state_dict_named(state, "fc")
    width = PartitionedLinear(12, 20)
    with pytest.raises(PartitioningMismatch, match="--partitioned-linear-module-name"):
        width.upgrade_state_dict_named(dict(state), "fc")


def test_core_model_loads_the_core_of_a_full_checkpoint():
    full = _fill(PartitionedRankLinear(12, 20))
    core = PartitionedRankLinear(12, 20, built_levels=1)
    state = {f"fc.{k}": v for k, v in full.state_dict().items()}
    core.upgrade_state_dict_named(state, "fc")
    assert "fc.W" not in state
    core.load_state_dict({k[3:]: v for k, v in state.items()})
    full.set_level(1)
    x = torch.randn(3, 12)
    torch.testing.assert_close(core(x), full(x))


def test_dense_low_rank_init_starts_v_u_at_a_dense_layer_s_variance():
    torch.manual_seed(0)
    dense = nn.Linear(512, 512)
    nn.init.xavier_uniform_(dense.weight)
    xavier = PartitionedRankLinear(512, 512, small_ratios=(1 / 32,))
    scaled = PartitionedRankLinear(512, 512, small_ratios=(1 / 32,), init="dense")
    std = lambda layer: layer.merged_weight(level=1).std().item()  # noqa: E731  (V U)
    assert std(xavier) < dense.weight.std().item() / 2.5  # k = 16: about 3x smaller
    assert abs(std(scaled) / dense.weight.std().item() - 1) < 0.05
    with pytest.raises(ValueError, match="--low-rank-init must be xavier or dense"):
        PartitionedRankLinear(8, 8, init="other")


def test_core_attention_scale_rescales_only_the_core_s_queries():
    heads, head_dim = 2, 8
    q = nn.Linear(16, heads * head_dim)
    plain = PartitionedLinear.from_linear(q, (0.25,), partition="out", groups=heads)
    rescaled = PartitionedLinear.from_linear(q, (0.25,), partition="out", groups=heads, rescale_core=True)
    x = torch.randn(3, 16)
    torch.testing.assert_close(rescaled(x), plain(x))  # the full network: unchanged
    plain.set_level(1)
    rescaled.set_level(1)
    torch.testing.assert_close(rescaled(x), plain(x) * (head_dim / 2) ** 0.5)  # 2 of 8 dims: x 2
    with pytest.raises(ValueError, match="rescale_core is for the per-head"):
        PartitionedLinear(8, 8, rescale_core=True)
