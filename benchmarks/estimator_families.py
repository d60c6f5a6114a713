"""Data families for judging ``ContrastiveICA`` on data it was not tuned for (``estimator_suite.py``).

Each family is a recipe: slowly varying sources (the dynamics), a random injective
mixing into d ≥ k observed dimensions (depth, activation), optional observation
noise, a size and a layout (one series or several recordings). ``make(name, seed)``
returns ``(X, Z, groups)``: observations, true sources and recording ids (None for
one series). Everything is drawn from ``seed``; nothing here was used to choose the
estimator's defaults except the family ``issue24`` (the time series of issue 24).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.signal import lfilter
from torch import nn

from clica.mixing import ACTIVATIONS


@dataclass(frozen=True)
class Family:
    """One kind of data: sources (``dynamics``, ``k``, ``speed``), mixing and layout."""

    name: str
    dynamics: str = "reflected-laplace"   # reflected-laplace, laplace, ar1-laplace, ar1-gennorm
    k: int = 4
    d: int = 12
    T: int = 20_000
    depth: int = 3
    activation: str = "leaky_relu"        # or smooth_leaky_relu
    speed: float | tuple = 0.05           # step scale; a (lo, hi) pair: sources at different speeds
    noise: float = 0.0                    # observation noise, in units of each observed column's std
    recordings: int = 1                   # > 1: T rows split into this many independent recordings
    note: str = ""
    images: bool = False                  # synthetic KITTI Masks videos instead (k factors; T, d, ... unused)
    n_components: int | None = None       # outputs every method is asked for (None: k)
    clica: tuple = ()                     # ContrastiveICA parameters this kind of data needs, (name, value) pairs


FAMILIES = {f.name: f for f in [
    Family("issue24", note="issue 24's series: reflected Laplace walks, 3 leaky-ReLU layers, d = 3k"),
    Family("unbounded", dynamics="laplace", note="unbounded Laplace random walks"),
    Family("ar1-laplace", dynamics="ar1-laplace", k=6, d=6, depth=2, note="AR(1), Laplace innovations, d = k"),
    Family("ar1-gennorm", dynamics="ar1-gennorm", d=8, activation="smooth_leaky_relu",
           note="AR(1), generalized-normal innovations (β = 3), smooth mixing"),
    Family("speeds", k=5, d=10, speed=(0.01, 0.1), note="sources at speeds 0.01 … 0.1"),
    Family("slow", speed=0.01, note="slow sources: steps of 1 % of their range"),
    Family("deep", depth=5, note="5 leaky-ReLU layers"),
    Family("linear", k=8, d=8, depth=1, note="a linear mixing (FastICA's home ground)"),
    Family("noisy", d=16, noise=0.05, note="observation noise, 5 % of each column's std"),
    Family("small", k=2, d=4, T=2_000, note="T = 2,000, k = 2"),
    Family("wide", k=20, d=40, T=50_000, speed=0.1, note="k = 20 sources in d = 40"),
    Family("long", T=200_000, note="T = 200,000"),
    Family("recordings", recordings=20, note="20 recordings of 1,000 rows (groups=)"),
    Family("kitti-masks", images=True, k=3, n_components=10,
           clica=(("encoder", "conv"), ("batch_size", 32), ("n_steps", 3000)),
           note="synthetic KITTI Masks: 800 videos of 64×64 masks (about 12,000 frames); factors centre y, x "
                "and area; 10 outputs as the KITTI experiment; ContrastiveICA with the conv encoder, "
                "batch 32, 3,000 steps (examples/image_sequences.py)"),
]}


def _reflect(v: np.ndarray) -> np.ndarray:
    w = np.mod(v, 2.0)
    return np.where(w > 1.0, 2.0 - w, w)


def sources(f: Family, rng: np.random.Generator) -> np.ndarray:
    """T × k sources with the family's dynamics, one independent walk per recording."""
    n = f.T // f.recordings
    speed = (np.exp(np.linspace(np.log(f.speed[0]), np.log(f.speed[1]), f.k)) if isinstance(f.speed, tuple)
             else np.full(f.k, f.speed))
    parts = []
    for _ in range(f.recordings):
        if f.dynamics in ("reflected-laplace", "laplace"):
            steps = rng.laplace(0.0, speed, size=(n, f.k))
            steps[0] = rng.uniform(0, 1, size=f.k)
            z = np.cumsum(steps, axis=0)
            parts.append(_reflect(z) if f.dynamics == "reflected-laplace" else z)
        else:
            phi = 1.0 - speed                  # AR(1) z_t = φ z_{t-1} + ε_t, stationary std ≈ 1
            if f.dynamics == "ar1-laplace":
                eps = rng.laplace(0.0, 1.0, size=(n, f.k))
            else:
                from scipy.stats import gennorm
                eps = gennorm.rvs(3.0, size=(n, f.k), random_state=rng)
            eps = eps / eps.std() * np.sqrt(1 - phi ** 2)
            eps[0] = rng.normal(size=f.k)
            parts.append(np.stack([lfilter([1.0], [1.0, -p], e) for p, e in zip(phi, eps.T)], axis=1))
    return np.concatenate(parts)


MAX_DRAWS = 20_000  # square layers of d ≥ 16 almost never reach condition number 5


def injective_mlp(k: int, d: int, depth: int, activation: str, rng: np.random.Generator) -> nn.Sequential:
    """A frozen random injective MLP R^k → R^d: a well-conditioned k → d layer, then d × d layers (each the first
    of random draws with condition number below 5, or the best of ``MAX_DRAWS``)."""
    layers: list[nn.Module] = []
    n_in = k
    for i in range(depth):
        best = (np.inf, None)
        for _ in range(MAX_DRAWS):  # column-normalised; condition number < 5, else the lowest of MAX_DRAWS
            w = rng.uniform(-1, 1, size=(d, n_in))
            w /= np.linalg.norm(w, axis=0, keepdims=True)
            best = min(best, (np.linalg.cond(w), w), key=lambda cw: cw[0])
            if best[0] < 5:
                break
        w = best[1]
        lin = nn.Linear(n_in, d, bias=False)
        lin.weight.data = torch.from_numpy(w).float()
        layers.append(lin)
        if i < depth - 1:
            layers.append(ACTIVATIONS[activation]())
        n_in = d
    g = nn.Sequential(*layers)
    for p in g.parameters():
        p.requires_grad_(False)
    return g


def make(family: str | Family, seed: int, **changes):
    """(X, Z, groups) of ``family`` (a name or a :class:`Family`), drawn from ``seed``."""
    f = FAMILIES[family] if isinstance(family, str) else family
    f = replace(f, **changes)
    if f.images:
        return kitti_masks(seed)
    rng = np.random.default_rng([seed, 24])
    z = sources(f, rng)
    zs = (z - z.mean(0)) / z.std(0)
    g = injective_mlp(f.k, f.d, f.depth, f.activation, rng)
    with torch.no_grad():
        x = g(torch.from_numpy(zs).float()).double().numpy()
    if f.noise:
        x = x + rng.normal(size=x.shape) * f.noise * x.std(0)
    groups = None if f.recordings == 1 else np.repeat(np.arange(f.recordings), f.T // f.recordings)
    return x, z, groups


def kitti_masks(seed: int):
    """(X, Z, groups) of synthetic KITTI Masks videos: frames N × 1 × 64 × 64 (float32, 0/1), their factors
    N × 3 (centre of mass y, x; area) and each frame's video id."""
    from clica.data.kitti_masks import SyntheticConfig, generate_synthetic

    data = generate_synthetic(seed, SyntheticConfig(n_sequences=800))
    videos = data["pedestrians"]
    x = np.concatenate(videos)[:, None].astype(np.float32)
    groups = np.repeat(np.arange(len(videos)), [len(v) for v in videos])
    return x, np.concatenate(data["pedestrians_latents"]).astype(np.float64), groups
