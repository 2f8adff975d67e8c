"""Sparsity reports: how many weights of each matrix are zero (or masked out), and in total.

Sparsity is the fraction of zero weights (GaP section 2: the target "sparsity ratio" of Tables 1-9).
A boolean tensor is read as a mask (zero = False); any other tensor counts its exact zeros.
"""
from typing import List, Mapping, NamedTuple, Tuple

import torch
from torch import Tensor

TOTAL = "total"


class SparsityRow(NamedTuple):
    name: str
    shape: Tuple[int, ...]
    numel: int
    zeros: int
    sparsity: float  # zeros / numel, 0.0 for an empty tensor


def _row(name: str, shape: Tuple[int, ...], numel: int, zeros: int) -> SparsityRow:
    return SparsityRow(name, shape, numel, zeros, zeros / numel if numel else 0.0)


def sparsity_table(tensors: Mapping[str, Tensor]) -> List[SparsityRow]:
    """One row per tensor, in the given order, then a last row named ``"total"`` (shape ``()``)."""
    rows = []
    for name, t in tensors.items():
        t = t.detach()
        zeros = int((~t).sum()) if t.dtype == torch.bool else int((t == 0).sum())
        rows.append(_row(name, tuple(t.shape), t.numel(), zeros))
    rows.append(_row(TOTAL, (), sum(r.numel for r in rows), sum(r.zeros for r in rows)))
    return rows


def format_table(rows: List[SparsityRow]) -> str:
    """An aligned plain-text table; a rule line sets the ``"total"`` row apart."""
    header = ("name", "shape", "numel", "zeros", "sparsity")
    cells = [
        (r.name, "x".join(str(d) for d in r.shape), str(r.numel), str(r.zeros), f"{100 * r.sparsity:.2f}%")
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [header] + cells) for i in range(len(header))]

    def line(c):  # name and shape left-aligned, numbers right-aligned
        left = [c[i].ljust(widths[i]) for i in (0, 1)]
        right = [c[i].rjust(widths[i]) for i in (2, 3, 4)]
        return "  ".join(left + right).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [line(header), rule]
    for i, (r, c) in enumerate(zip(rows, cells)):
        if r.name == TOTAL and i == len(rows) - 1:
            out.append(rule)
        out.append(line(c))
    return "\n".join(out)
