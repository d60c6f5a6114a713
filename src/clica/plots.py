"""Figures: true vs recovered sources, loss curves, the agreement of several runs.

The ``plot_*`` helpers return a matplotlib figure (save it with :func:`save_figure`
or show it in a notebook); ``true_vs_predicted`` writes its figure to a file.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

from .metrics import correlation_matrix, mcc, to_numpy
from .runs import atomic_write_bytes

__all__ = ["pyplot", "true_vs_predicted", "save_figure", "plot_sources", "plot_loss_curves", "plot_consistency"]


def pyplot():
    """``matplotlib.pyplot``, imported at the first figure (~0.5 s): on the file-only Agg backend,
    unless the user's own pyplot is already loaded (a notebook's inline plots must keep showing)."""
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> None:
    """Write a matplotlib figure as PNG atomically and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


METHOD_NAMES = {"pearson": "Pearson", "spearman": "Spearman"}


def true_vs_predicted(z, hz, path, names: Sequence[str] | None = None, max_points: int = 2000,
                      title: str | None = None, method: str = "pearson",
                      assignment: Sequence[int] | None = None) -> None:
    """:func:`plot_sources` written to ``path`` (PNG, atomically)."""
    save_figure(plot_sources(z, hz, names, max_points, title, method, assignment), path)


def plot_sources(z, hz, names: Sequence[str] | None = None, max_points: int = 2000, title: str | None = None,
                 method: str = "pearson", assignment: Sequence[int] | None = None):
    """Scatter each true source against the recovered dimension matched to it; returns the figure.

    The matching is MCC's (Hungarian on ``|corr|`` with ``method``, "pearson" or
    "spearman") unless ``assignment`` gives the column of ``hz`` for each true
    source. Each panel states that correlation (e.g. "Spearman ρ = +0.91"), so
    the panels average to the MCC in the default title.
    """
    z, hz = to_numpy(z), to_numpy(hz)
    if assignment is None:
        assignment = mcc(z, hz, method=method).assignment
    assignment = [int(j) for j in assignment]
    rho = np.diag(correlation_matrix(z, hz[:, assignment], method))
    score = float(np.abs(rho).mean())
    rho_name = f"{METHOD_NAMES.get(method, method)} ρ"
    k = z.shape[1]
    cols = min(k, 5)
    rows = int(np.ceil(k / cols))
    fig, axes = pyplot().subplots(rows, cols, figsize=(2.8 * cols, 2.8 * rows + 0.5), squeeze=False,
                             layout="constrained")
    idx = np.random.default_rng(0).permutation(len(z))[:max_points]
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.axis("off")
            continue
        j = assignment[i]
        ax.scatter(z[idx, i], hz[idx, j], s=2, alpha=0.4)
        label = names[i] if names else f"z{i}"
        ax.set_title(f"{label} ↔ ẑ{j}: {rho_name} = {rho[i]:+.3f}", fontsize=8)
        ax.set_xlabel(f"true {label}", fontsize=7)
        ax.set_ylabel(f"recovered ẑ{j}", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(title or f"true vs recovered latents (MCC, mean |{rho_name}|: {score:.3f})", fontsize=10)
    return fig


def plot_loss_curves(estimator, smooth: int = 50):
    """The training loss of a fitted ``ContrastiveICA`` (each step, and a running mean over ``smooth``
    steps) and its validation loss; returns the figure."""
    train = np.asarray(estimator.loss_curve_, dtype=float)
    fig, ax = pyplot().subplots(figsize=(6.5, 3.5), layout="constrained")
    steps = np.arange(1, len(train) + 1)
    ax.plot(steps, train, lw=0.5, alpha=0.35, color="C0", label="training (each step)")
    if len(train) >= smooth > 1:
        mean = np.convolve(train, np.ones(smooth) / smooth, mode="valid")
        ax.plot(steps[smooth - 1:], mean, lw=1.2, color="C0", label=f"training (mean of {smooth} steps)")
    if getattr(estimator, "validation_curve_", None):
        ax.plot(estimator.validation_steps_, estimator.validation_curve_, "o-", ms=3, lw=1.2, color="C1",
                label=f"validation (kept: {estimator.validation_loss_:.4f})")
    ax.set_xlabel("step")
    ax.set_ylabel("InfoNCE loss")
    ax.legend(fontsize=8)
    return fig


def plot_consistency(result, metric: str = "mcc"):
    """The pairwise agreement matrix of :func:`clica.consistency` (``metric`` "mcc" or "r2"), each cell
    annotated; returns the figure."""
    if metric not in ("mcc", "r2"):
        raise ValueError(f"unknown metric {metric!r}; choose 'mcc' or 'r2'")
    a = getattr(result, metric)
    label = {"mcc": "MCC", "r2": "linear R² (row from column)"}[metric]
    m = len(a)
    fig, ax = pyplot().subplots(figsize=(1.0 + 0.6 * m, 0.8 + 0.6 * m), layout="constrained")
    im = ax.imshow(a, vmin=0, vmax=1, cmap="viridis")
    for i in range(m):
        for j in range(m):
            ax.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if a[i, j] > 0.6 else "white")
    ax.set_xticks(range(m))
    ax.set_yticks(range(m))
    ax.set_xlabel("run")
    ax.set_ylabel("run")
    ax.set_title(f"{label}: mean {getattr(result, 'mean_' + metric):.3f}", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig
