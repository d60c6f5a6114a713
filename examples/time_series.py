"""A scientist's time series: recover slowly varying sources from a nonlinear mixture.

Five sources take small Laplace-distributed steps (a random walk, kept in the box
[0, 1]^5 by reflecting at its faces); we observe them only through a random
invertible MLP g (``clica.mixing.invertible_mlp``). ``ContrastiveICA`` with its
default settings is fitted on the observations alone, treating neighbouring time
steps as positive pairs, and its output is compared with the true sources (MCC:
mean |correlation| after matching; 1 = recovered up to permutation, sign and scale).

    python examples/time_series.py --out time_series.png --seed 0
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from clica import ContrastiveICA
from clica.metrics import mcc
from clica.mixing import invertible_mlp


def reflect(v: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """Fold values back into [lo, hi] as a walk reflected at the box's faces."""
    span = hi - lo
    w = np.mod(v - lo, 2 * span)
    return lo + np.where(w > span, 2 * span - w, w)


def make_time_series(n_sources: int = 5, n_steps: int = 50_000, step_scale: float = 0.05, seed: int = 0):
    """(x, z): observations g(z) (n_steps × n_sources) and the true sources z (n_steps × n_sources)."""
    rng = np.random.default_rng(seed)
    steps = rng.laplace(0.0, step_scale, size=(n_steps, n_sources))
    steps[0] = rng.uniform(0, 1, size=n_sources)
    z = reflect(np.cumsum(steps, axis=0))  # a reflected walk is the cumulated steps, folded once
    g = invertible_mlp(n_sources, n_layers=3, seed=seed)
    with torch.no_grad():
        x = g(torch.from_numpy(z).float()).double().numpy()
    return x, z


def plot(z: np.ndarray, s: np.ndarray, path: str, score: float, n_show: int = 1000) -> None:
    """Each true source over time with the recovered source matched to it (sign and scale fitted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.optimize import linear_sum_assignment

    k = z.shape[1]
    corr = np.corrcoef(z.T, s.T)[:k, k:]
    rows, cols = linear_sum_assignment(-np.abs(corr))
    fig, axes = plt.subplots(k, 2, figsize=(11, 1.8 * k), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1]}, layout="constrained")
    for i, j in zip(rows, cols):
        a, b = np.polyfit(s[:, j], z[:, i], 1)  # the recovered source in the true one's units
        ax = axes[i, 0]
        ax.plot(z[:n_show, i], lw=1.2, label="true")
        ax.plot(a * s[:n_show, j] + b, lw=0.9, label=f"recovered (output {j})")
        ax.set_ylabel(f"source {i}", fontsize=8)
        if i == rows[0]:
            ax.legend(fontsize=7, loc="lower left", ncol=2)
        idx = np.random.default_rng(0).permutation(len(z))[:3000]
        axes[i, 1].scatter(z[idx, i], s[idx, j], s=1, alpha=0.3)
        axes[i, 1].set_title(f"r = {corr[i, j]:+.3f}", fontsize=8)
    axes[-1, 0].set_xlabel("time step")
    axes[-1, 1].set_xlabel("true source")
    fig.suptitle(f"ContrastiveICA on a nonlinear mixture of {k} random walks: MCC {score:.3f}")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="time_series.png", help="where to write the figure (PNG)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the mixing and the fit")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the estimator's)")
    p.add_argument("--length", type=int, default=50_000, help="time steps in the series")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    x, z = make_time_series(n_steps=args.length, seed=args.seed)
    ica = ContrastiveICA(n_components=z.shape[1], random_state=args.seed, verbose=True)
    if args.steps:
        ica.set_params(n_steps=args.steps)
    t0 = time.monotonic()
    ica.fit(x)
    seconds = time.monotonic() - t0
    s = ica.transform(x)
    score = ica.score(x, z)
    print(f"fit: {ica.n_iter_} steps in {seconds:.0f} s on {ica.device_}")
    print(f"MCC {score:.4f}, linear R² {ica.score(x, z, metric='r2'):.4f} "
          f"(the observations themselves: MCC {mcc(z, x).score:.4f})")
    plot(z, s, args.out, score)
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
