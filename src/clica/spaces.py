"""Latent spaces (box, sphere of radius r, R^n) and their samplers.

Every sampler is batched, runs on the requested device and draws all its
randomness from an optional ``torch.Generator`` (the global torch RNG when
``None``), so one seed reproduces a run exactly.

Parametrisations follow the original code: ``normal(mean, std)``,
``laplace(mean, scale)`` with density ∝ exp(-|x-μ|/scale), and
``generalized_normal(mean, scale, p)`` with density ∝ exp(-(|x-μ|/scale)^p).
On a box the samplers are truncated to the box by vectorised per-coordinate
rejection (a buffer of ``rej_mult`` candidates per pending coordinate and round);
on a sphere they are sampled in the ambient space and projected back onto it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Callable

import torch

from .errors import ClicaError

__all__ = ["Space", "Box", "Sphere", "Real", "sample_gamma"]

Sampler = Callable[[torch.Tensor, int], torch.Tensor]

# a box sampler gives up after this many rounds of rejection: with an acceptance rate of 1 % per
# candidate and the default 3 candidates per round, a coordinate is left over with odds e^-30
MAX_REJECTION_ROUNDS = 1000


def _rand(shape, generator, device, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device, dtype=dtype)


def _randn(shape, generator, device, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


def sample_gamma(alpha: float, shape, generator=None, device=None) -> torch.Tensor:
    """Gamma(alpha, 1) samples by Marsaglia–Tsang, vectorised and generator-driven.

    For alpha < 1 it uses Gamma(alpha + 1) · U^(1/alpha).
    """
    boost = alpha < 1
    a = alpha + 1.0 if boost else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(shape, device=device).flatten()
    pending = torch.arange(out.numel(), device=device)
    while pending.numel():
        m = pending.numel()
        x = _randn(m, generator, device)
        v = (1.0 + c * x) ** 3
        u = _rand(m, generator, device)
        ok = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-30)))
        out[pending[ok]] = d * v[ok]
        pending = pending[~ok]
    out = out.view(shape)
    if boost:
        out = out * _rand(shape, generator, device).clamp_min(1e-30) ** (1.0 / alpha)
    return out


_LAST_STEP = -1.0 + 2.0 ** -24  # the largest 2|u| - 1 below 0 on float32's grid of uniform draws


def _noise(kind: str, scale: float, p: float, shape, generator, device) -> torch.Tensor:
    """Zero-centred noise of the given family."""
    if kind == "normal":
        return _randn(shape, generator, device) * scale
    if kind == "laplace":  # inverse CDF; a uniform draw of exactly 0 (1 in 2^24) maps to the largest
        u = _rand(shape, generator, device) - 0.5  # finite value, not to -inf (which made a run's loss nan)
        return -scale * torch.sign(u) * torch.log1p((-2.0 * u.abs()).clamp_min(_LAST_STEP)).clamp_max(0)
    if kind == "generalized_normal":
        g = sample_gamma(1.0 / p, shape, generator, device)
        sign = torch.where(_rand(shape, generator, device) < 0.5, -1.0, 1.0)
        return scale * sign * g ** (1.0 / p)
    raise ValueError(kind)


def _as_mean(mean, n: int, size: int, device) -> torch.Tensor:
    mean = torch.as_tensor(mean, dtype=torch.float32, device=device)
    if mean.shape == (n,):
        mean = mean.expand(size, n)
    if mean.shape != (size, n):
        raise ClicaError(f"mean must have shape ({n},) or ({size}, {n}), got {tuple(mean.shape)}")
    return mean


class Space(ABC):
    """A space of latents with its samplers."""

    n: int

    @property
    def dim(self) -> int:
        return self.n

    @abstractmethod
    def uniform(self, size: int, generator=None, device=None) -> torch.Tensor: ...

    @abstractmethod
    def _around(self, kind: str, mean, scale: float, p: float, size: int, generator, device) -> torch.Tensor: ...

    def normal(self, mean, std: float, size: int, generator=None, device=None) -> torch.Tensor:
        """Normal(mean, std²·I), restricted to the space."""
        return self._around("normal", mean, std, 2.0, size, generator, device)

    def laplace(self, mean, scale: float, size: int, generator=None, device=None) -> torch.Tensor:
        """Factorised Laplace(mean, scale), restricted to the space."""
        return self._around("laplace", mean, scale, 1.0, size, generator, device)

    def generalized_normal(self, mean, scale: float, p: float, size: int, generator=None, device=None):
        """Factorised generalised normal, density ∝ exp(-(|x-μ|/scale)^p), restricted to the space."""
        return self._around("generalized_normal", mean, scale, p, size, generator, device)

    def von_mises_fisher(self, mean, kappa: float, size: int, generator=None, device=None):
        raise ClicaError(
            f"the von Mises–Fisher distribution lives on the sphere, not on {self.describe()}; "
            "use a sphere space (--space-type sphere) or another conditional"
        )

    def contains(self, z: torch.Tensor, atol: float = 1e-5) -> torch.Tensor:
        """Boolean per row: is the point in the space?"""
        return torch.ones(z.shape[0], dtype=torch.bool, device=z.device)

    def describe(self) -> str:
        return type(self).__name__


class Real(Space):
    """R^n: unconstrained."""

    def __init__(self, n: int):
        self.n = int(n)

    def describe(self) -> str:
        return f"R^{self.n}"

    def uniform(self, size, generator=None, device=None):
        raise ClicaError(f"there is no uniform distribution on {self.describe()}; "
                         "use a non-uniform marginal (--m-p 1, 2, …) or a bounded space")

    def _around(self, kind, mean, scale, p, size, generator, device):
        mean = _as_mean(mean, self.n, size, device)
        return mean + _noise(kind, scale, p, mean.shape, generator, mean.device)


class Box(Space):
    """The box [low, high]^n. Samplers are truncated to it by vectorised rejection."""

    def __init__(self, n: int, low: float = 0.0, high: float = 1.0, rej_mult: int = 3):
        if not high > low:
            raise ClicaError(f"the box needs low < high, got [{low}, {high}]")
        if rej_mult < 1:
            raise ClicaError(f"the rejection buffer factor must be ≥ 1, got {rej_mult}")
        self.n, self.low, self.high, self.rej_mult = int(n), float(low), float(high), int(rej_mult)

    def describe(self) -> str:
        return f"the box [{self.low}, {self.high}]^{self.n}"

    def uniform(self, size, generator=None, device=None):
        return self.low + (self.high - self.low) * _rand((size, self.n), generator, device)

    def contains(self, z, atol=1e-6):
        return ((z >= self.low - atol) & (z <= self.high + atol)).all(-1)

    def _around(self, kind, mean, scale, p, size, generator, device):
        mean = _as_mean(mean, self.n, size, device)
        out = torch.empty_like(mean)
        flat_mean, flat_out = mean.reshape(-1), out.view(-1)
        pending = torch.arange(flat_mean.numel(), device=mean.device)
        k, drawn, accepted = self.rej_mult, 0, 0
        for _ in range(MAX_REJECTION_ROUNDS):
            if not pending.numel():
                return out
            # k candidates for every pending coordinate; keep the first that falls in the box
            cand = flat_mean[pending] + _noise(kind, scale, p, (k, pending.numel()), generator, mean.device)
            ok = (cand >= self.low) & (cand <= self.high)
            found = ok.any(0)
            first = ok.to(torch.int8).argmax(0)
            flat_out[pending[found]] = cand[first[found], found.nonzero().squeeze(1)]
            drawn, accepted = drawn + ok.numel(), accepted + int(ok.sum())
            pending = pending[~found]
        if not pending.numel():
            return out
        rate = f"about 1 in {drawn // accepted:,}" if accepted else f"none of {drawn:,}"
        raise ClicaError(
            f"a {kind.replace('_', ' ')} distribution of scale {scale:g} is too wide for the box [{self.low:g}, "
            f"{self.high:g}]: truncating it "
            f"to the box by rejection accepted {rate} candidates and did not finish in "
            f"{MAX_REJECTION_ROUNDS} rounds; lower the scale (--c-param for the conditional, --m-param for "
            "the marginal)")


class Sphere(Space):
    """The sphere {x ∈ R^n : |x| = r}. Normal/Laplace/generalised-normal samples are projected onto it."""

    def __init__(self, n: int, r: float = 1.0):
        if not r > 0:
            raise ClicaError(f"the sphere radius must be positive, got {r}")
        if n < 2:
            raise ClicaError(f"a sphere needs at least 2 dimensions, got {n}")
        self.n, self.r = int(n), float(r)

    def describe(self) -> str:
        return f"the sphere of radius {self.r} in R^{self.n}"

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.r * x / x.norm(dim=-1, keepdim=True)

    def contains(self, z, atol=1e-4):
        return (z.norm(dim=-1) - self.r).abs() <= atol * max(1.0, self.r)

    def uniform(self, size, generator=None, device=None):
        return self.project(_randn((size, self.n), generator, device))

    def _check_mean(self, mean: torch.Tensor) -> None:
        if not torch.allclose(mean.norm(dim=-1), torch.full_like(mean[:, 0], self.r), rtol=1e-3, atol=1e-4):
            raise ClicaError(f"the mean must lie on {self.describe()}")

    def _around(self, kind, mean, scale, p, size, generator, device):
        mean = _as_mean(mean, self.n, size, device)
        self._check_mean(mean)
        return self.project(mean + _noise(kind, scale, p, mean.shape, generator, mean.device))

    def von_mises_fisher(self, mean, kappa: float, size: int, generator=None, device=None):
        """Exact vMF samples (Wood, 1994) around per-row means, scaled to radius r."""
        mean = _as_mean(mean, self.n, size, device)
        self._check_mean(mean)
        mu = mean / self.r
        w = _wood_w(float(kappa), self.n, size, generator, mu.device)
        v = _randn((size, self.n - 1), generator, mu.device)
        v = v / v.norm(dim=-1, keepdim=True)
        x = torch.cat([w[:, None], (1.0 - w * w).clamp_min(0).sqrt()[:, None] * v], dim=1)
        # Householder reflection taking e1 to mu, row by row
        e1 = torch.zeros_like(mu)
        e1[:, 0] = 1.0
        u = e1 - mu
        uu = (u * u).sum(-1, keepdim=True)
        reflected = x - 2.0 * u * (u * x).sum(-1, keepdim=True) / uu.clamp_min(1e-30)
        x = torch.where(uu > 1e-12, reflected, x)
        return self.r * x


def _wood_w(kappa: float, d: int, size: int, generator, device) -> torch.Tensor:
    """The component along the mean of vMF samples (Wood's rejection sampler)."""
    if kappa <= 0:
        raise ClicaError(f"the vMF concentration κ must be positive, got {kappa}")
    b = (d - 1.0) / (2.0 * kappa + math.sqrt(4.0 * kappa**2 + (d - 1.0) ** 2))
    x0 = (1.0 - b) / (1.0 + b)
    c = kappa * x0 + (d - 1.0) * math.log(1.0 - x0 * x0)
    out = torch.empty(size, device=device, dtype=torch.float64)
    pending = torch.arange(size, device=device)
    while pending.numel():
        m = pending.numel()
        # Beta((d-1)/2, (d-1)/2) as A/(A+B) with A, B ~ χ²_{d-1}
        a = _randn((m, d - 1), generator, device, torch.float64).pow(2).sum(1)
        bb = _randn((m, d - 1), generator, device, torch.float64).pow(2).sum(1)
        z = a / (a + bb)
        w = (1.0 - (1.0 + b) * z) / (1.0 - (1.0 - b) * z)
        u = _rand(m, generator, device, torch.float64)
        ok = kappa * w + (d - 1.0) * torch.log1p(-x0 * w) - c >= torch.log(u)
        out[pending[ok]] = w[ok]
        pending = pending[~ok]
    return out.float()
