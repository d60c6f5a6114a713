"""Figures: true vs recovered latents, training curves."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

from .metrics import correlation_matrix, mcc, to_numpy
from .runs import atomic_write_bytes

__all__ = ["pyplot", "true_vs_predicted", "save_figure"]


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
    """Scatter each true latent against the recovered dimension matched to it.

    The matching is MCC's (Hungarian on ``|corr|`` with ``method``, "pearson" or
    "spearman") unless ``assignment`` gives the column of ``hz`` for each true
    latent. Each panel states that correlation (e.g. "Spearman ρ = +0.91"), so
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
    save_figure(fig, path)
