"""GaP pruning library: exact counts, granularities, partitions of the paper, P-GaP combine, reports."""
import pytest
import torch
from torch import nn

from fairseq_partitioned.pruning import (
    DEFAULT_PRUNABLE,
    combine,
    cyclic_partition,
    format_table,
    layer_of,
    owners,
    partition_names,
    prunable_names,
    prune_to,
    random_masks,
    random_partition,
    sparsity_table,
    transformer_partitions,
)

SPARSITIES = [0.0, 0.1, 0.25, 0.5, 0.8, 0.9, 0.95]


def _weights(seed=0, shapes=None):
    g = torch.Generator().manual_seed(seed)
    shapes = shapes or {"a": (7, 13), "b": (16, 24), "c": (5, 40)}
    return {name: torch.randn(shape, generator=g) for name, shape in shapes.items()}


def _pruned(mask):
    return int((~mask).sum())


def _blocks(t, size=8):  # (..., in) -> (n_blocks, size)
    return t.reshape(-1, size)


def _fairseq_transformer_state(layers=2):
    """A real fairseq Transformer's state dict: the names the library must map."""
    from fairseq.data import Dictionary
    from fairseq.models.transformer import (
        TransformerConfig,
        TransformerDecoderBase,
        TransformerEncoderBase,
        TransformerModelBase,
    )

    cfg = TransformerConfig()
    for part in (cfg.encoder, cfg.decoder):
        part.layers, part.embed_dim, part.ffn_embed_dim, part.attention_heads = layers, 16, 32, 2
    cfg.decoder.input_dim = cfg.decoder.output_dim = 16
    d = Dictionary()
    for c in "abcd":
        d.add_symbol(c)
    encoder = TransformerEncoderBase(cfg, d, nn.Embedding(len(d), 16, d.pad()))
    decoder = TransformerDecoderBase(cfg, d, nn.Embedding(len(d), 16, d.pad()))
    return TransformerModelBase(cfg, encoder, decoder).state_dict()


# ---------------------------------------------------------------- unstructured magnitude pruning


@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_uniform_prunes_exactly_round_s_n_in_every_matrix(sparsity):
    weights = _weights()
    masks = prune_to(weights, sparsity)
    assert list(masks) == list(weights)
    for name, w in weights.items():
        mask = masks[name]
        assert mask.dtype == torch.bool and mask.shape == w.shape
        assert _pruned(mask) == round(sparsity * w.numel())
        if 0 < _pruned(mask) < w.numel():  # magnitude: every kept weight >= every pruned one
            assert w.abs()[mask].min() >= w.abs()[~mask].max()


@pytest.mark.parametrize("sparsity", SPARSITIES)
def test_non_uniform_prunes_exactly_round_s_total_with_one_threshold(sparsity):
    weights = _weights()
    weights["b"] = weights["b"] * 0.1  # a small-magnitude matrix: it should lose more
    masks = prune_to(weights, sparsity, distribution="non-uniform")
    total = sum(w.numel() for w in weights.values())
    assert sum(_pruned(m) for m in masks.values()) == round(sparsity * total)
    kept = torch.cat([w.abs()[masks[n]] for n, w in weights.items()])
    pruned = torch.cat([w.abs()[~masks[n]] for n, w in weights.items()])
    if len(pruned) and len(kept):
        assert kept.min() >= pruned.max()
    if 0.25 <= sparsity <= 0.9:
        fraction = {n: _pruned(m) / m.numel() for n, m in masks.items()}
        assert fraction["b"] > sparsity > fraction["a"]


@pytest.mark.parametrize("distribution", ["uniform", "non-uniform"])
@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.9])
def test_ties_keep_the_count_exact_and_are_broken_by_position(distribution, sparsity):
    weights = {"a": torch.full((6, 7), 0.5), "b": torch.full((3, 8), -0.5)}
    masks = prune_to(weights, sparsity, distribution=distribution)
    if distribution == "uniform":
        for name, w in weights.items():
            n = round(sparsity * w.numel())
            expected = torch.arange(w.numel()).reshape(w.shape) >= n  # the first n positions go
            torch.testing.assert_close(masks[name], expected)
    else:
        assert sum(_pruned(m) for m in masks.values()) == round(sparsity * (42 + 24))
    again = prune_to(dict(reversed(list(weights.items()))), sparsity, distribution=distribution)
    for name in weights:  # deterministic, and independent of the dict order
        assert torch.equal(masks[name], again[name])


@pytest.mark.parametrize("distribution", ["uniform", "non-uniform"])
def test_already_masked_weights_are_pruned_first_even_if_not_zeroed(distribution):
    w = torch.arange(1.0, 21.0).reshape(4, 5)  # all distinct, all nonzero
    current = torch.ones(4, 5, dtype=torch.bool)
    current.view(-1)[[15, 16, 17, 18, 19]] = False  # the five largest are masked (weights not zeroed)
    current_masks = {"w": current, "another.weight": current}  # names beyond the weights are ignored
    masks = prune_to({"w": w}, 0.25, distribution=distribution, current_masks=current_masks)
    assert torch.equal(masks["w"], current)  # exactly the masked five are pruned again


def test_masked_elements_go_before_unmasked_zeros_of_the_same_score():
    w = torch.zeros(1, 8)  # every weight scores zero
    current = torch.tensor([[True, True, True, True, True, False, False, True]])
    masks = prune_to({"w": w}, 0.25, current_masks={"w": current})
    assert torch.equal(masks["w"], current)  # not positions 0 and 1, which come first by index


@pytest.mark.parametrize("distribution", ["uniform", "non-uniform"])
def test_pruning_masks_already_at_target_is_a_no_op(distribution):
    """C-GaP step 0 prunes partition (0 - 1) mod kappa, still at its random start (Algorithm 1)."""
    shapes = {"a": torch.Size([8, 16]), "b": torch.Size([16, 8])}
    start = random_masks(shapes, 0.75, generator=torch.Generator().manual_seed(0))
    weights = {n: torch.randn(s) for n, s in shapes.items()}
    again = prune_to(weights, 0.75, distribution=distribution, current_masks=start)
    for name in shapes:
        assert torch.equal(again[name], start[name])


@pytest.mark.parametrize("granularity", ["unstructured", "block-1x8"])
def test_sparsity_zero_gives_dense_masks(granularity):
    masks = prune_to(_weights(shapes={"a": (4, 16), "b": (8, 8)}), 0.0, "non-uniform", granularity)
    assert all(m.all() for m in masks.values())


# ---------------------------------------------------------------- block 1x8 and 2:4


@pytest.mark.parametrize("distribution", ["uniform", "non-uniform"])
@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.8, 0.95])
def test_block_1x8_prunes_exactly_round_s_blocks(distribution, sparsity):
    weights = _weights(shapes={"fc1": (12, 16), "fc2": (16, 48), "k": (3, 8)})
    masks = prune_to(weights, sparsity, distribution=distribution, granularity="block-1x8")
    counts = {}
    for name, w in weights.items():
        blocks = _blocks(masks[name])
        assert (blocks.all(-1) | ~blocks.any(-1)).all()  # every block all kept or all pruned
        counts[name] = int((~blocks.any(-1)).sum())
        pruned_weights = w.masked_fill(~masks[name], 0)
        assert int((_blocks(pruned_weights) == 0).all(-1).sum()) == counts[name]  # all-zero blocks
    n_blocks = {name: w.numel() // 8 for name, w in weights.items()}
    if distribution == "uniform":
        assert counts == {name: round(sparsity * n) for name, n in n_blocks.items()}
    else:
        assert sum(counts.values()) == round(sparsity * sum(n_blocks.values()))


def test_block_score_is_the_sum_of_magnitudes_as_the_official_code_or_of_squares():
    # block A: eight ones (L1 8, L2^2 8); block B: one 3 (L1 3, L2^2 9). L1 prunes B, L2 prunes A.
    w = torch.tensor([[1.0] * 8 + [3.0] + [0.0] * 7])
    l1 = prune_to({"w": w}, 0.5, granularity="block-1x8")["w"]
    assert torch.equal(l1, torch.tensor([[True] * 8 + [False] * 8]))
    l2 = prune_to({"w": w}, 0.5, granularity="block-1x8", block_score="l2")["w"]
    assert torch.equal(l2, torch.tensor([[False] * 8 + [True] * 8]))
    with pytest.raises(ValueError, match="--gap-block-score must be one of l1, l2"):
        prune_to({"w": w}, 0.5, granularity="block-1x8", block_score="l3")


def test_block_that_does_not_divide_the_last_dimension_is_one_clear_error():
    message = r"--gap-granularity block-1x8: dec\.fc1\.weight has shape \(4, 30\), whose last dimension 30"
    with pytest.raises(ValueError, match=message):
        prune_to({"dec.fc1.weight": torch.randn(4, 30)}, 0.5, granularity="block-1x8")
    with pytest.raises(ValueError, match=r"--gap-granularity block-1x8: w has shape \(4, 12\)"):
        random_masks({"w": torch.Size([4, 12])}, 0.5, granularity="block-1x8")


def test_2_of_4_keeps_the_two_largest_of_every_four():
    w = torch.randn(6, 16, generator=torch.Generator().manual_seed(1))
    mask = prune_to({"w": w}, 0.5, granularity="2:4")["w"]
    groups, kept = w.abs().reshape(-1, 4), mask.reshape(-1, 4)
    assert (kept.sum(-1) == 2).all()
    top2 = torch.zeros_like(kept).scatter_(-1, groups.topk(2, dim=-1).indices, True)
    assert torch.equal(kept, top2)
    ties = prune_to({"w": torch.ones(2, 8)}, 0.5, granularity="2:4")["w"]
    assert torch.equal(ties, torch.tensor([[False, False, True, True] * 2] * 2))


def test_2_of_4_needs_sparsity_one_half_and_uniform():
    with pytest.raises(ValueError, match=r"--gap-granularity 2:4 .* needs --gap-sparsity 0.5, got 0.8"):
        prune_to({"w": torch.randn(4, 8)}, 0.8, granularity="2:4")
    with pytest.raises(ValueError, match=r"--gap-distribution uniform"):
        prune_to({"w": torch.randn(4, 8)}, 0.5, distribution="non-uniform", granularity="2:4")
    with pytest.raises(ValueError, match=r"--gap-granularity 2:4: w has shape \(4, 6\)"):
        prune_to({"w": torch.randn(4, 6)}, 0.5, granularity="2:4")


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        (dict(sparsity=1.0), "--gap-sparsity must be in \\[0, 1\\), got 1.0"),
        (dict(sparsity=-0.1), "--gap-sparsity must be in \\[0, 1\\), got -0.1"),
        (dict(sparsity=0.5, distribution="global"), "--gap-distribution must be one of uniform, non-uniform"),
        (dict(sparsity=0.5, granularity="block-8x1"), "--gap-granularity must be unstructured, block-1x<B>"),
        (dict(sparsity=0.5, granularity="4:2"), "--gap-granularity must be"),
    ],
)
def test_bad_options_are_one_line_errors_naming_the_flag(kwargs, flag):
    for call in (
        lambda: prune_to({"w": torch.randn(4, 8)}, **kwargs),
        lambda: random_masks({"w": torch.Size([4, 8])}, **kwargs),
    ):
        with pytest.raises(ValueError, match=flag) as info:
            call()
        assert "\n" not in str(info.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("distribution", ["uniform", "non-uniform"])
@pytest.mark.parametrize("granularity", ["unstructured", "block-1x8"])
def test_gpu_masks_equal_cpu_masks(distribution, granularity):
    weights = _weights(shapes={"a": (64, 128), "b": (32, 64)})
    weights["b"][:, :16] = 0.25  # ties at the threshold as well
    cpu = prune_to(weights, 0.8, distribution, granularity)
    gpu = prune_to({n: w.cuda() for n, w in weights.items()}, 0.8, distribution, granularity)
    for name in weights:
        assert gpu[name].is_cuda and torch.equal(gpu[name].cpu(), cpu[name])


# ---------------------------------------------------------------- random start


@pytest.mark.parametrize("distribution", ["uniform", "non-uniform"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.8, 0.9])
def test_random_masks_are_exact_and_seeded(distribution, sparsity):
    shapes = {"a": torch.Size([7, 13]), "b": torch.Size([16, 24])}
    masks = random_masks(shapes, sparsity, distribution, generator=torch.Generator().manual_seed(3))
    for name, shape in shapes.items():
        assert masks[name].shape == shape and masks[name].dtype == torch.bool
        assert _pruned(masks[name]) == round(sparsity * shape.numel())  # per layer, both distributions
    same = random_masks(dict(reversed(list(shapes.items()))), sparsity, distribution,
                        generator=torch.Generator().manual_seed(3))
    other = random_masks(shapes, sparsity, distribution, generator=torch.Generator().manual_seed(4))
    for name in shapes:
        assert torch.equal(masks[name], same[name])
    if sparsity > 0:
        assert any(not torch.equal(masks[n], other[n]) for n in shapes)


def test_random_masks_follow_the_granularity():
    g = torch.Generator().manual_seed(0)
    block = random_masks({"w": torch.Size([4, 32])}, 0.75, granularity="block-1x8", generator=g)["w"]
    blocks = _blocks(block)
    assert (blocks.all(-1) | ~blocks.any(-1)).all() and int((~blocks.any(-1)).sum()) == 12
    nm = random_masks({"w": torch.Size([4, 32])}, 0.5, granularity="2:4", generator=g)["w"]
    assert (nm.reshape(-1, 4).sum(-1) == 2).all()


# ---------------------------------------------------------------- partitions and schedule


def test_partitions_of_a_6_plus_6_transformer_as_the_official_code():
    enc = [("encoder", i) for i in range(6)]
    dec = [("decoder", j) for j in range(6)]
    assert transformer_partitions(6, 6, 1) == [enc + dec]
    # boone891214/GaP Transformer/profiles/3_step_sequential_gap_sp_0.9: enc 0-3, enc 4-5 + dec 0-1, dec 2-5
    assert transformer_partitions(6, 6, 3) == [enc[:4], enc[4:] + dec[:2], dec[2:]]
    # profiles/6_step_*: six 2-layer blocks, three in the encoder and three in the decoder
    assert transformer_partitions(6, 6, 6) == [enc[:2], enc[2:4], enc[4:], dec[:2], dec[2:4], dec[4:]]


def test_partitions_of_a_6_plus_6_transformer_as_in_the_paper():
    enc = [("encoder", i) for i in range(6)]
    dec = [("decoder", j) for j in range(6)]
    # section 3.4 / A.1: {encoder}, {first half of the decoder}, {second half}
    assert transformer_partitions(6, 6, 3, "paper") == [enc, dec[:3], dec[3:]]
    # section 3.4: six partitions, the decoder with twice the partitions of the encoder
    assert transformer_partitions(6, 6, 6, "paper") == [enc[:3], enc[3:], dec[:2], dec[2:4], dec[4:5], dec[5:]]


def test_partitions_general_rule_and_errors():
    enc, dec = [("encoder", i) for i in range(6)], [("decoder", j) for j in range(6)]
    assert transformer_partitions(6, 6, 2, "paper") == transformer_partitions(6, 6, 2) == [enc, dec]
    parts = transformer_partitions(12, 12, 9, "paper")  # 3 encoder + 6 decoder parts, contiguous, covering
    assert [len(p) for p in parts] == [4, 4, 4, 2, 2, 2, 2, 2, 2]
    assert [layer for p in parts for layer in p] == transformer_partitions(12, 12, 1)[0]
    assert [len(p) for p in transformer_partitions(3, 3, 4)] == [2, 2, 1, 1]  # earlier parts longer
    assert transformer_partitions(3, 3, 3) == [enc[:2], [enc[2], dec[0]], dec[1:3]]
    assert transformer_partitions(0, 4, 2, "paper") == [dec[:2], dec[2:4]]  # no encoder: all parts in the decoder
    with pytest.raises(ValueError, match=r"--gap-partitions 13: more partitions than layers"):
        transformer_partitions(6, 6, 13)
    with pytest.raises(ValueError, match=r"--gap-partitions 12: more partitions than layers"):
        transformer_partitions(6, 6, 12, "paper")
    with pytest.raises(ValueError, match=r"--gap-partitions must be >= 1"):
        transformer_partitions(6, 6, 0)
    with pytest.raises(ValueError, match=r"--gap-partition-layout must be one of official, paper"):
        transformer_partitions(6, 6, 3, "other")


def test_cyclic_schedule_is_algorithm_1_line_5():
    assert [cyclic_partition(step, 3) for step in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert cyclic_partition(0 - 1, 3) == 2  # the partition pruned at step 0


def test_random_partition_is_pure_and_never_grows_the_step_before_s_matrices():
    names = prunable_names(_fairseq_transformer_state(layers=6))  # 96 matrices, as the official code's
    steps = [random_partition(k, names, 3, seed=1) for k in range(12)]
    assert all(len(s) == 32 for s in steps)  # int(96 / 3), as utils_pr.generate_rand_seq_gap_yaml
    assert all(not set(a) & set(b) for a, b in zip(steps, steps[1:]))
    assert all(s == [n for n in names if n in s] for s in steps)  # model order
    assert random_partition(7, names, 3, seed=1) == steps[7]  # a resumed run: same choice
    assert [random_partition(k, names, 3, seed=2) for k in range(3)] != steps[:3]
    assert any(set(steps[k]) & set(steps[k + 2]) for k in range(10))  # not a fixed 3-way split
    assert random_partition(3, names, 1, seed=1) == names  # kappa = 1: everything, every step
    with pytest.raises(ValueError, match=r"--gap-partitions must be in 1..96"):
        random_partition(0, names, 97, seed=1)


def test_layer_of_and_the_default_prunable_set_on_real_fairseq_names():
    state = _fairseq_transformer_state(layers=2)
    assert layer_of("encoder.layers.3.self_attn.q_proj.weight") == ("encoder", 3)
    assert layer_of("decoder.layers.0.fc1.weight") == ("decoder", 0)
    assert layer_of("decoder.layers.2.encoder_attn.k_proj.weight") == ("decoder", 2)
    assert layer_of("decoder.embed_tokens.weight") is None
    names = prunable_names(state)
    expected = [
        f"{stack}.layers.{i}.{proj}.weight"
        for stack, attns in [("encoder", ["self_attn"]), ("decoder", ["self_attn", "encoder_attn"])]
        for i in range(2)
        for proj in [f"{a}.{p}_proj" for a in attns for p in ("q", "k", "v", "out")] + ["fc1", "fc2"]
    ]
    assert sorted(names) == sorted(expected)  # 6 per encoder layer, 10 per decoder layer
    assert all(state[n].dim() == 2 for n in names)
    assert prunable_names(state, r"\.fc[12]\.weight$") == [n for n in names if ".fc" in n]
    assert prunable_names(["model.encoder.layers.0.fc1.weight"]) == ["model.encoder.layers.0.fc1.weight"]
    assert DEFAULT_PRUNABLE  # exported for the task's help text


def test_partition_names_groups_weights_and_rejects_weights_outside_layers():
    names = prunable_names(_fairseq_transformer_state(layers=2))
    groups = partition_names(names, transformer_partitions(2, 2, 3))
    assert [len(g) for g in groups] == [12, 10, 10]
    assert all(layer_of(n) == ("decoder", 1) for n in groups[2])
    message = "decoder.output_projection.weight is not in an encoder or decoder layer"
    with pytest.raises(ValueError, match=message):
        partition_names(["decoder.output_projection.weight"], transformer_partitions(2, 2, 3))


# ---------------------------------------------------------------- P-GaP combine


def _workers(kappa=3, seed=0):
    """kappa workers trained from one start: each changed everything (its own partition the most)."""
    start = _fairseq_transformer_state(layers=2)
    groups = partition_names(prunable_names(start), transformer_partitions(2, 2, kappa))
    states = []
    for i in range(kappa):
        g = torch.Generator().manual_seed(seed + i)
        state = {}
        for name, t in start.items():
            trained = name.endswith(("weight", "bias")) and not name.endswith("version")
            state[name] = t + torch.randn(t.shape, generator=g) if trained else t.clone()
        state["step_counter"] = torch.tensor(7)  # an integer buffer equal on every worker
        states.append(state)
    return start, states, groups


def test_owners_name_every_tensor_once_by_the_layer_rule():
    _, states, _ = _workers()
    owned = owners(states[0], 3)
    assert sorted(k for names in owned for k in names) == sorted(states[0])  # every key, exactly once
    worker = {k: i for i, names in enumerate(owned) for k in names}
    partitions = transformer_partitions(2, 2, 3)
    for key in states[0]:
        layer = layer_of(key)
        if layer is not None:  # weights, masks, biases and norms of a layer: its partition's worker
            assert layer in partitions[worker[key]], key
    assert worker["encoder.embed_tokens.weight"] == 0  # the first encoder partition
    assert worker["decoder.output_projection.weight"] == 2  # the last decoder partition
    assert worker["step_counter"] == 0


def test_owners_take_tied_tensors_from_one_worker():
    _, states, _ = _workers()
    state = dict(states[0])
    state["decoder.embed_tokens.weight"] = state["encoder.embed_tokens.weight"]  # --share-all-embeddings
    worker = {k: i for i, names in enumerate(owners(state, 3)) for k in names}
    assert worker["decoder.embed_tokens.weight"] == worker["encoder.embed_tokens.weight"] == 0


def test_combine_takes_every_tensor_from_its_owner_and_averages_nothing():
    start, states, _ = _workers()
    owned = owners(states[0], 3)
    combined = combine(states, owned)
    assert list(combined) == list(states[0])  # no key lost, none added
    worker = {k: i for i, names in enumerate(owned) for k in names}
    for name, t in combined.items():
        assert t is states[worker[name]][name]


def test_combine_rejects_missing_unowned_and_double_owned_tensors():
    _, states, _ = _workers()
    owned = owners(states[0], 3)
    del states[2]["encoder.layers.0.fc1.bias"]
    with pytest.raises(ValueError, match="encoder.layers.0.fc1.bias is missing from worker 2"):
        combine(states, owned)
    _, states, _ = _workers()
    with pytest.raises(ValueError, match=f"{owned[0][0]} is owned by workers 0 and 1"):
        combine(states, [owned[0], owned[1] + owned[0][:1], owned[2]])
    with pytest.raises(ValueError, match=f"{owned[2][0]} has no owner"):
        combine(states, [owned[0], owned[1], owned[2][1:]])
    with pytest.raises(ValueError, match="owns nowhere.weight, which is in no worker's state"):
        combine(states, [owned[0] + ["nowhere.weight"], owned[1], owned[2]])
    with pytest.raises(ValueError, match="one list of owned names per worker"):
        combine(states, owned[:2])


# ---------------------------------------------------------------- report


def test_sparsity_table_counts_zeros_and_mask_falses_with_totals():
    masks = {"a": torch.tensor([[True, False], [False, False]]), "b": torch.ones(3, 4, dtype=torch.bool)}
    weights = {"c": torch.tensor([0.0, 1.0, 0.0, 2.0, 0.0])}
    rows = sparsity_table({**masks, **weights})
    assert [(r.name, r.shape, r.numel, r.zeros) for r in rows] == [
        ("a", (2, 2), 4, 3),
        ("b", (3, 4), 12, 0),
        ("c", (5,), 5, 3),
        ("total", (), 21, 6),
    ]
    assert rows[0].sparsity == 0.75 and rows[-1].sparsity == 6 / 21
    text = format_table(rows).splitlines()
    assert text[0].split() == ["name", "shape", "numel", "zeros", "sparsity"]
    assert text[-1].split() == ["total", "21", "6", "28.57%"] and set(text[-2]) <= {"-", " "}
    assert len({len(line) for line in text if not line.startswith("total")}) == 1  # aligned


def test_report_after_pruning_shows_the_target_sparsity():
    weights = _weights(shapes={"fc1": (32, 16), "fc2": (16, 32)})
    rows = sparsity_table(prune_to(weights, 0.9, distribution="non-uniform"))
    assert rows[-1].zeros == round(0.9 * 1024) and rows[-1].name == "total"
