"""ATS Theorem 2's quantities: against a direct computation, without effect on training, plotted."""
import logging
import math
import os
import subprocess
import sys

import torch
from torch import nn

import fairseq_helpers as h
from fairseq_partitioned.diagnostics import measure_alignment
from fairseq_partitioned.modules import PartitionedRankLinear, set_level

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quantities_match_a_direct_autograd_computation():
    torch.manual_seed(0)
    layers = [PartitionedRankLinear(6, 8, small_ratios=(0.5,)), PartitionedRankLinear(8, 3, small_ratios=(0.5,))]
    model = nn.Sequential(layers[0], nn.Tanh(), nn.Dropout(0.2), layers[1])
    x, y = torch.randn(5, 6), torch.randn(5, 3)
    params = list(model.parameters())
    core = {id(p) for m in layers for n, p in m.named_parameters() if m.param_levels()[n] == 1}
    masks = [id(p) in core for p in params]

    def loss():
        return ((model(x) - y) ** 2).sum()

    got = measure_alignment(model, loss, lambda: set_level(layers, 2), lambda: set_level(layers, 1), params, masks)

    # direct: flatten, mask, the formulas of the paper, with the same dropout draws
    state = torch.get_rng_state()
    set_level(layers, 2)
    gf = torch.autograd.grad(loss(), params, allow_unused=True)
    torch.set_rng_state(state)  # the same dropout for both networks
    set_level(layers, 1)
    gm = torch.autograd.grad(loss(), params, allow_unused=True)
    torch.set_rng_state(state)
    flat = lambda gs: torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(gs, params)])  # noqa: E731
    p = torch.cat([torch.full((q.numel(),), float(m)) for q, m in zip(params, masks)])
    g, gt = flat(gf).double(), flat(gm).double()
    pg, pgt = p * g, p * gt
    expected = {
        "grad_overlap": (g.norm() ** 2 / pg.norm() ** 2).item(),
        "grad_norm_ratio": (pg.norm() / pgt.norm()).item(),
        "grad_alignment": (pg.norm() * pgt.norm() / (pg @ pgt)).item(),
        "grad_alpha": min(1.0, ((pg @ pgt) / pgt.norm() ** 2).item()),
    }
    expected["grad_q"] = math.sqrt(expected["grad_overlap"]) * max(expected["grad_norm_ratio"], expected["grad_alignment"])
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-9), key
    assert got["grad_overlap"] > 1  # W is outside the core mask and has a gradient at full level


def test_measuring_does_not_change_training(tmp_path):
    data = str(tmp_path / "data")
    os.makedirs(data)
    h.create_dummy_data(data, num_examples=120)
    h.preprocess_translation_data(data)
    flags = ["--alternate", "--max-update", "5", "--max-epoch", "10", "--update-freq", "2"]
    h.train_translation_model(data, flags, save_dir=str(tmp_path / "off"))
    h.train_translation_model(data, flags + ["--gradient-alignment-interval", "1"], save_dir=str(tmp_path / "on"))
    off = h.load_checkpoint(str(tmp_path / "off" / "checkpoint_last.pt"))
    on = h.load_checkpoint(str(tmp_path / "on" / "checkpoint_last.pt"))
    for k, v in off["model"].items():
        assert torch.equal(v, on["model"][k]), k
    for i, st in off["last_optimizer_state"]["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(st[key], on["last_optimizer_state"]["state"][i][key])


def test_gap_and_standard_training_are_measured_and_plotted(tmp_path, caplog):
    data = str(tmp_path / "data")
    os.makedirs(data)
    h.create_dummy_data(data, num_examples=120)
    h.preprocess_translation_data(data)
    logs = []
    for name, flags in [
        ("standard", ["--partitioned-linear-module-name", "PartitionedLinear", "--small-ratio", "0.5"]),
        ("gap", ["--gap-sparsity", "0.5"]),
    ]:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            h.train_translation_model(data, flags + ["--gradient-alignment-interval", "1", "--max-epoch", "2"],
                                      save_dir=str(tmp_path / name))
        lines = [r.getMessage() for r in caplog.records if r.name == "train_inner"]
        assert lines and all("grad_overlap=" in line for line in lines)
        log = tmp_path / f"{name}.log"
        log.write_text("\n".join(f"INFO:train_inner:{line}" for line in lines))
        logs.append(str(log))
    # GaP: the masked network is the model itself, so g(x~) = g(x)
    assert "grad_norm_ratio=1," in lines[0] and "grad_alignment=1," in lines[0]
    out = tmp_path / "fig.png"
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "plot_alignment.py"), *logs,
                    "--labels", "standard,GaP", "--output", str(out)], check=True)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10000
