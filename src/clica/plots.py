"""Figures: true vs recovered latents, training curves."""

from __future__ import annotations

import io
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .metrics import mcc, to_numpy  # noqa: E402
from .runs import atomic_write_bytes  # noqa: E402

__all__ = ["true_vs_predicted", "save_figure"]


def save_figure(fig, path) -> None:
    """Write a matplotlib figure as PNG atomically and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def true_vs_predicted(z, hz, path, names: Sequence[str] | None = None, max_points: int = 2000,
                      title: str | None = None) -> None:
    """Scatter each true latent against the recovered dimension the MCC matching assigns to it."""
    z, hz = to_numpy(z), to_numpy(hz)
    result = mcc(z, hz)
    k = z.shape[1]
    cols = min(k, 5)
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
    idx = np.random.default_rng(0).permutation(len(z))[:max_points]
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.axis("off")
            continue
        j = result.assignment[i]
        ax.scatter(z[idx, i], hz[idx, j], s=2, alpha=0.4)
        label = names[i] if names else f"z{i}"
        ax.set_title(f"{label} ↔ ẑ{j}  ρ={result.corr[i, i]:+.3f}", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.suptitle(title or f"true vs recovered latents (MCC {result.score:.3f})", fontsize=10)
    save_figure(fig, path)
