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
from .params import Interval, ParameterError, check, literal
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
    """The marginal p(z) of the original's ``m_p`` code.

    Parameters
    ----------
    p : float
        0 uniform, 1 Laplace, 2 normal, any other p ≥ 0 a generalised normal of exponent p.
    param : float, default=1.0
        The scale of a non-uniform marginal (positive; unused for the uniform one).

    Returns
    -------
    Uniform, Laplace, Normal or GeneralizedNormal
        The distribution; :class:`LatentSpace` centres it on its space.

    Raises
    ------
    ParameterError
        A ``ValueError`` naming ``m_p`` or ``m_param``.
    """
    check("m_p", p, Interval(float, 0))
    if p != 0 and not param > 0:
        raise ParameterError(f"the marginal's scale ({{}}) must be positive, got {param}", "m_param")
    return Uniform() if p == 0 else _lp_family(p, param)


def conditional_from_p(p: float, param: float = 0.05):
    """The conditional p(z~ | z) of the original's ``c_p`` code.

    Parameters
    ----------
    p : float
        0 von Mises–Fisher (sphere only), 1 Laplace, 2 normal, any other p ≥ 0 a generalised normal.
    param : float, default=0.05
        The scale of an Lp conditional, or the concentration κ of the vMF one (positive).

    Returns
    -------
    VonMisesFisher, Laplace, Normal or GeneralizedNormal
        The distribution of a positive around its anchor z.

    Raises
    ------
    ParameterError
        A ``ValueError`` naming ``c_p`` or ``c_param``.
    """
    from .conditionals import by_code  # the table of conditionals is built on this module
    check("c_p", p, Interval(float, 0))
    if not param > 0:
        raise ParameterError(f"the conditional's parameter ({{}}) must be positive, got {param}", "c_param")
    return by_code(p).distribution(param)


def _marginal_centre(space: Space) -> torch.Tensor:
    """Centre of a non-uniform marginal: the origin, or r·e1 on a sphere (as the original)."""
    eta = torch.zeros(space.dim)
    if isinstance(space, Sphere):
        eta[0] = space.r
    return eta


class LatentSpace:
    """A space with a marginal p(z) and a conditional p(z~ | z).

    Parameters
    ----------
    space : Space
        A :mod:`~clica.spaces` space: a box, a sphere or R^n.
    marginal : distribution, default=Uniform()
        p(z); a uniform one needs a bounded space, a vMF one the sphere.
    conditional : distribution, default=Normal(0.05)
        p(z~ | z); a vMF one needs the sphere.

    Raises
    ------
    ParameterError
        A ``ValueError`` naming ``space_type``, ``c_p`` or ``m_p`` when space and distributions do not fit.
    """

    def __init__(self, space: Space, marginal=Uniform(), conditional=Normal(0.05)):
        if isinstance(conditional, VonMisesFisher) and not isinstance(space, Sphere):
            raise ParameterError(
                f"the von Mises–Fisher conditional lives on the sphere, not on {literal(space.describe())}; "
                "use {} sphere or an Lp conditional ({} 1, 2, …)", "space_type", "c_p")
        if isinstance(marginal, VonMisesFisher) and not isinstance(space, Sphere):
            raise ClicaError(f"a von Mises–Fisher marginal lives on the sphere, not on {space.describe()}")
        if isinstance(marginal, Uniform) and not isinstance(space, (Box, Sphere)):
            raise ParameterError(f"there is no uniform marginal on {literal(space.describe())}; "
                                 "use a non-uniform marginal ({} 1, 2, …) or a bounded space", "m_p")
        self.space, self.marginal, self.conditional = space, marginal, conditional

    @property
    def dim(self) -> int:
        return self.space.dim

    def sample_marginal(self, size: int, generator=None, device=None) -> torch.Tensor:
        """Latents z ~ p(z).

        Parameters
        ----------
        size : int
            Number of samples.
        generator : torch.Generator, optional
            The source of randomness (torch's global one if None).
        device : torch.device or str, optional
            Where the samples are made (the CPU if None).

        Returns
        -------
        torch.Tensor
            ``size`` × ``dim`` latents.
        """
        centre = _marginal_centre(self.space).to(device or "cpu")
        return self.marginal.sample(self.space, centre, size, generator=generator, device=device)

    def sample_conditional(self, z: torch.Tensor, generator=None) -> torch.Tensor:
        """Positives z~ ~ p(z~ | z), one per row of ``z``.

        Parameters
        ----------
        z : torch.Tensor
            N × ``dim`` anchors; the positives are made on its device.
        generator : torch.Generator, optional
            The source of randomness.

        Returns
        -------
        torch.Tensor
            N × ``dim`` positives.
        """
        return self.conditional.sample(self.space, z, len(z), generator=generator, device=z.device)

    def sample_pair(self, size: int, generator=None, device=None):
        """Anchors and their positives: :meth:`sample_marginal`, then :meth:`sample_conditional`.

        Parameters
        ----------
        size, generator, device
            As for :meth:`sample_marginal`.

        Returns
        -------
        tuple of torch.Tensor
            (z, z~), each ``size`` × ``dim``.
        """
        z = self.sample_marginal(size, generator=generator, device=device)
        return z, self.sample_conditional(z, generator=generator)

    def __repr__(self) -> str:
        return f"LatentSpace({self.space.describe()}, marginal={self.marginal}, conditional={self.conditional})"


class ProductLatentSpace:
    """Independent latent spaces side by side; samples are concatenated along the last axis.

    Parameters
    ----------
    parts : sequence of LatentSpace
        At least one; ``sample_marginal``, ``sample_conditional`` and ``sample_pair`` take and
        return what :class:`LatentSpace`'s do, with the parts' columns side by side.
    """

    def __init__(self, parts: Sequence[LatentSpace]):
        if not parts:
            raise ClicaError("a product latent space needs at least one part")
        self.parts = list(parts)

    @property
    def dim(self) -> int:
        return sum(p.dim for p in self.parts)

    def slices(self) -> list[slice]:
        """The columns of each part, in order.

        Returns
        -------
        list of slice
            One per part.
        """
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
