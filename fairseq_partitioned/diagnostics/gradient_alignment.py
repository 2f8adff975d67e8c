"""The quantities of the ATS convergence theorem (Mohtashami, Jaggi, Stich 2022, Theorem 2, sec. 4.4).

With p the update mask (1 on the core and shared parameters for ATS; the sparse masks for GaP),
g(x) the minibatch gradient of the full network at the parameters x, and g(x~) that of the masked
network (forward mask applied) on the same minibatch:

    grad_overlap    = ||g(x)||^2 / ||p * g(x)||^2                                      (Figure 2a)
    grad_norm_ratio = ||p * g(x)|| / ||p * g(x~)||                                      (Figure 2b)
    grad_alignment  = ||p * g(x)|| ||p * g(x~)|| / <p * g(x), p * g(x~)>                (Figure 2c)
    grad_alpha      = min(1, <p * g(x), p * g(x~)> / ||p * g(x~)||^2)                   (alpha_t)
    grad_q          = ||g(x)|| / ||p * g(x)|| * max(grad_norm_ratio, grad_alignment)   (q_t)

Small overlap, norm ratio near 1 and small alignment mean that training the core and the full network
together converges (q_t small, alpha_t large).
"""
import math
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch

Mask = Union[bool, torch.Tensor]


def alignment_quantities(
    g_full: Sequence[Optional[torch.Tensor]],
    g_masked: Sequence[Optional[torch.Tensor]],
    masks: Sequence[Mask],
) -> Dict[str, float]:
    """The five quantities from per-parameter gradients (None = zero) and per-parameter masks."""
    full_sq = pf_sq = pm_sq = dot = 0.0
    for gf, gm, m in zip(g_full, g_masked, masks):
        if gf is not None:
            full_sq += float(gf.double().pow(2).sum())
        if m is False:
            continue
        pf = _masked(gf, m)
        pm = _masked(gm, m)
        if pf is not None:
            pf_sq += float(pf.pow(2).sum())
        if pm is not None:
            pm_sq += float(pm.pow(2).sum())
        if pf is not None and pm is not None:
            dot += float((pf * pm).sum())
    pf_norm, pm_norm = math.sqrt(pf_sq), math.sqrt(pm_sq)
    overlap = full_sq / pf_sq if pf_sq > 0 else math.inf
    norm_ratio = pf_norm / pm_norm if pm_norm > 0 else math.inf
    alignment = pf_norm * pm_norm / dot if dot != 0 else math.inf
    alpha = min(1.0, dot / pm_sq) if pm_sq > 0 else 0.0
    q = math.sqrt(overlap) * max(norm_ratio, alignment) if alignment > 0 else math.inf
    return {
        "grad_overlap": overlap,
        "grad_norm_ratio": norm_ratio,
        "grad_alignment": alignment,
        "grad_alpha": alpha,
        "grad_q": q,
    }


def _masked(g: Optional[torch.Tensor], m: Mask) -> Optional[torch.Tensor]:
    if g is None:
        return None
    g = g.double()
    return g if m is True else g * m.to(device=g.device, dtype=g.dtype)


def measure_alignment(
    model: torch.nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    set_full: Callable[[], None],
    set_masked: Callable[[], None],
    params: List[torch.nn.Parameter],
    masks: Sequence[Mask],
) -> Dict[str, float]:
    """Two extra forward/backward passes on the same minibatch, off the training trajectory.

    Gradients come from ``torch.autograd.grad`` (nothing is accumulated into ``.grad``), and the random
    number generators are forked, so dropout in the training step that follows draws exactly what it
    would have drawn without the measurement; both passes draw the same dropout, so they differ only by
    the forward mask.
    """
    cuda = torch.cuda.is_available() and any(p.is_cuda for p in params)
    devices = [torch.cuda.current_device()] if cuda else []
    with torch.random.fork_rng(devices=devices):
        cpu_state = torch.get_rng_state()
        cuda_state = torch.cuda.get_rng_state() if cuda else None
        set_full()
        g_full = torch.autograd.grad(loss_fn(), params, allow_unused=True)
        torch.set_rng_state(cpu_state)
        if cuda:
            torch.cuda.set_rng_state(cuda_state)
        set_masked()
        g_masked = torch.autograd.grad(loss_fn(), params, allow_unused=True)
    return alignment_quantities(g_full, g_masked, masks)
