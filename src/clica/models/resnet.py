"""ResNet encoders for 3DIdent and the original's output rescaling.

The encoder is a randomly initialised torchvision ResNet whose classifier emits
10·n features, then LeakyReLU and a linear layer to the n latents, then the
rescaling head: the periodic (angular) latents are projected on a sphere of
learnable radius; the non-periodic ones pass through a box (sigmoid × bound,
fixed or learnable), a sphere (fixed or learnable radius) or nothing.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..extras import need

__all__ = ["ENCODERS", "resolve_encoder_name", "RescalingHead", "resnet_encoder", "output_kind"]

#: ``--encoder`` names → torchvision constructors (``rn151`` is the original's typo for rn152).
ENCODERS = {"rn18": "resnet18", "rn50": "resnet50", "rn101": "resnet101", "rn152": "resnet152"}


def resolve_encoder_name(name: str) -> str:
    """Canonical encoder name; ``rn151`` (printed by the original's ``--help``) means ResNet-152."""
    if name == "rn151":
        warnings.warn("--encoder rn151 is taken as ResNet-152 (the original's help listed rn151 "
                      "but only built rn152)", stacklevel=2)
        return "rn152"
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS) + ['rn151']}")
    return name


def output_kind(constraint: str | None, shape: str) -> str | None:
    """``--box-constraint``/``--sphere-constraint`` value → an output-normalisation kind (``OUTPUT_NORMS``)."""
    if constraint in (None, "None"):
        return None
    return f"{'fixed' if constraint == 'fix' else 'learnable'}_{shape}"


class RescalingHead(nn.Module):
    """Applies the non-periodic normalisation to the first ``n_non_angular`` outputs
    and a learnable-radius sphere to the remaining ``n_angular`` ones."""

    def __init__(self, n_non_angular: int, n_angular: int, box_constraint: str | None = None,
                 sphere_constraint: str | None = None):
        super().__init__()
        from . import norm_layer

        if box_constraint not in (None, "None") and sphere_constraint not in (None, "None"):
            raise ValueError("box and sphere constraints are mutually exclusive")
        self.n_non_angular, self.n_angular = n_non_angular, n_angular
        kind = output_kind(box_constraint, "box") or output_kind(sphere_constraint, "sphere")
        self.non_periodic = norm_layer(kind, n_non_angular) if n_non_angular else None
        self.periodic = norm_layer("learnable_sphere", n_angular) if n_angular else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        k = self.n_non_angular
        parts = []
        if self.n_non_angular:
            a = h[:, :k]
            parts.append(a if self.non_periodic is None else self.non_periodic(a))
        if self.n_angular:
            parts.append(self.periodic(h[:, k:]))
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


def resnet_encoder(name: str, n_latents: int, head: nn.Module | None = None) -> nn.Sequential:
    """ResNet (random init) → LeakyReLU → Linear(10·n, n) → ``head`` (identity if ``None``)."""
    torchvision = need("torchvision")
    name = resolve_encoder_name(name)
    backbone = getattr(torchvision.models, ENCODERS[name])(weights=None, num_classes=10 * n_latents)
    return nn.Sequential(backbone, nn.LeakyReLU(), nn.Linear(10 * n_latents, n_latents),
                         head if head is not None else nn.Identity())
