"""Latent spaces with a marginal p(z) and a conditional p(z~ | z), and products of them.

A :class:`LatentSpace` pairs a :mod:`~clica.spaces` space with two distributions;
the distributions are small value objects, so a latent space is fully described
by (space, marginal, conditional) and can be written to a run's config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import ClicaError
from .spaces import Box, Space, Sphere

__all__ = [
    "Uniform", "Normal", "Laplace", "GeneralizedNormal", "VonMisesFisher",
    "marginal_from_p", "conditional_from_p", "LatentSpace", "ProductLatentSpace",
]


@dataclass(frozen=True)
class Uniform:
    """Uniform on the space (ignores any mean)."""

    def sample(self, space: Space, mean, size, generator=None, device=None):
        return space.uniform(size, generator=generator, device=device)


@dataclass(frozen=True)
class Normal:
    std: float

    def sample(self, space, mean, size, generator=None, device=None):
        return space.normal(mean, self.std, size, generator=generator, device=device)


@dataclass(frozen=True)
class Laplace:
    scale: float

    def sample(self, space, mean, size, generator=None, device=None):
        return space.laplace(mean, self.scale, size, generator=generator, device=device)


@dataclass(frozen=True)
class GeneralizedNormal:
    scale: float
    p: float

    def sample(self, space, mean, size, generator=None, device=None):
        return space.generalized_normal(mean, self.scale, self.p, size, generator=generator, device=device)


@dataclass(frozen=True)
class VonMisesFisher:
    kappa: float

    def sample(self, space, mean, size, generator=None, device=None):
        return space.von_mises_fisher(mean, self.kappa, size, generator=generator, device=device)


def _lp_family(p: float, param: float):
    if p == 1:
        return Laplace(param)
    if p == 2:
        return Normal(param)
    return GeneralizedNormal(param, p)


def marginal_from_p(p: float, param: float = 1.0):
    """The original's ``--m-p`` code: 0 uniform, 1 Laplace, 2 normal, else generalised normal."""
    if p < 0:
        raise ClicaError(f"--m-p must be ≥ 0, got {p}")
    if p != 0 and not param > 0:
        raise ClicaError(f"the marginal's scale (--m-param) must be positive, got {param}")
    return Uniform() if p == 0 else _lp_family(p, param)


def conditional_from_p(p: float, param: float = 0.05):
    """The original's ``--c-p`` code: 0 vMF (κ = param), 1 Laplace, 2 normal, else generalised normal
    (:func:`clica.conditionals.by_code`)."""
    from .conditionals import by_code  # the table of conditionals is built on this module
    if p < 0:
        raise ClicaError(f"--c-p must be ≥ 0, got {p}")
    if not param > 0:
        raise ClicaError(f"the conditional's parameter (--c-param) must be positive, got {param}")
    return by_code(p).distribution(param)


def _marginal_centre(space: Space) -> torch.Tensor:
    """Centre of a non-uniform marginal: the origin, or r·e1 on a sphere (as the original)."""
    eta = torch.zeros(space.dim)
    if isinstance(space, Sphere):
        eta[0] = space.r
    return eta


class LatentSpace:
    """A space with a marginal p(z) and a conditional p(z~ | z)."""

    def __init__(self, space: Space, marginal=Uniform(), conditional=Normal(0.05)):
        if isinstance(conditional, VonMisesFisher) and not isinstance(space, Sphere):
            raise ClicaError(
                f"the von Mises–Fisher conditional lives on the sphere, not on {space.describe()}; "
                "use --space-type sphere or an Lp conditional (--c-p 1, 2, …)"
            )
        if isinstance(marginal, VonMisesFisher) and not isinstance(space, Sphere):
            raise ClicaError(f"a von Mises–Fisher marginal lives on the sphere, not on {space.describe()}")
        if isinstance(marginal, Uniform) and not isinstance(space, (Box, Sphere)):
            raise ClicaError(f"there is no uniform marginal on {space.describe()}; "
                             "use a non-uniform marginal (--m-p 1, 2, …) or a bounded space")
        self.space, self.marginal, self.conditional = space, marginal, conditional

    @property
    def dim(self) -> int:
        return self.space.dim

    def sample_marginal(self, size: int, generator=None, device=None) -> torch.Tensor:
        centre = _marginal_centre(self.space).to(device or "cpu")
        return self.marginal.sample(self.space, centre, size, generator=generator, device=device)

    def sample_conditional(self, z: torch.Tensor, generator=None) -> torch.Tensor:
        return self.conditional.sample(self.space, z, len(z), generator=generator, device=z.device)

    def sample_pair(self, size: int, generator=None, device=None):
        z = self.sample_marginal(size, generator=generator, device=device)
        return z, self.sample_conditional(z, generator=generator)

    def __repr__(self) -> str:
        return f"LatentSpace({self.space.describe()}, marginal={self.marginal}, conditional={self.conditional})"


class ProductLatentSpace:
    """Independent latent spaces side by side; samples are concatenated along the last axis."""

    def __init__(self, parts: Sequence[LatentSpace]):
        if not parts:
            raise ClicaError("a product latent space needs at least one part")
        self.parts = list(parts)

    @property
    def dim(self) -> int:
        return sum(p.dim for p in self.parts)

    def slices(self) -> list[slice]:
        out, start = [], 0
        for p in self.parts:
            out.append(slice(start, start + p.dim))
            start += p.dim
        return out

    def sample_marginal(self, size, generator=None, device=None):
        return torch.cat([p.sample_marginal(size, generator, device) for p in self.parts], dim=-1)

    def sample_conditional(self, z, generator=None):
        return torch.cat([p.sample_conditional(z[:, s], generator) for p, s in zip(self.parts, self.slices())], -1)

    def sample_pair(self, size, generator=None, device=None):
        z = self.sample_marginal(size, generator=generator, device=device)
        return z, self.sample_conditional(z, generator=generator)

    def __repr__(self) -> str:
        return f"ProductLatentSpace({self.parts})"
