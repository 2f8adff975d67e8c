"""The scripts' figures: matplotlib without a display, and BLEU against parameters (study.png, collect_results --plot).

Not a command itself; matplotlib is imported only when a figure is drawn.
"""
import logging
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only)."""
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq's logging set-up lets its debug lines out
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass
class Point:
    """One network: its parameters, its BLEU's mean and std over the seeds, how it is drawn."""
    parameters: int
    mean: float
    std: float
    marker: str
    color: str
    label: Optional[str]  # in the legend (None: a network already labelled)
    note: Optional[str] = None  # written beside the point


def bleu_against_parameters(path: str, points: Sequence[Point], title: str, xlabel: str, ylabel: str,
                            figsize: Tuple[float, float], legend: dict, empty: Optional[str] = None) -> str:
    """Each point with its std as an error bar, parameters on a log scale; ``empty``: the text of a figure
    without points (without it, the empty axes keep the log scale)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    for p in points:
        ax.errorbar(p.parameters, p.mean, yerr=p.std, fmt=p.marker, color=p.color, capsize=3, label=p.label)
        if p.note:
            ax.annotate(p.note, (p.parameters, p.mean), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if points or empty is None:
        ax.set_xscale("log")
    if points:
        ax.legend(**legend)
    elif empty:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
