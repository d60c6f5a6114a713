"""The latent space of a layout: the marginal and the conditional that training pairs are drawn from."""

from __future__ import annotations

from ...errors import ClicaError
from .layout import LatentLayout


def latent_space_for(layout: LatentLayout, conditional: str = "l2", sigma: float = 0.1):
    """The latent space of a layout: uniform marginals; box parts get the
    ``conditional`` (``l1`` Laplace, ``l2`` normal, ``l3`` generalized normal with
    p = 3) with scale ``sigma``; sphere parts a von Mises–Fisher with κ = 1/σ."""
    from ... import latents, spaces

    if not sigma > 0:
        raise ClicaError(f"--sigma must be positive, got {sigma}")
    if conditional == "l1":
        box_conditional = latents.Laplace(sigma)
    elif conditional == "l2":
        box_conditional = latents.Normal(sigma)
    elif conditional == "l3":
        box_conditional = latents.GeneralizedNormal(sigma, 3.0)
    else:
        raise ClicaError(f"unknown non-periodical conditional {conditional!r} (choose l1, l2 or l3)")
    parts = []
    for kind, size in layout.parts:
        if kind == "box":
            parts.append(latents.LatentSpace(spaces.Box(size, -1.0, 1.0), latents.Uniform(), box_conditional))
        else:
            parts.append(latents.LatentSpace(spaces.Sphere(size), latents.Uniform(),
                                             latents.VonMisesFisher(1.0 / sigma)))
    return parts[0] if len(parts) == 1 else latents.ProductLatentSpace(parts)
