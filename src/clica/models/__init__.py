"""Encoders f and their output normalisations.

``mlp_encoder`` is the original MLP encoder; ``models.conv`` (KITTI) and
``models.resnet`` (3DIdent) hold the image encoders.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import ClicaError

__all__ = ["SphereNorm", "BoxNorm", "OUTPUT_NORMS", "norm_layer", "mlp_encoder", "to_device"]


class SphereNorm(nn.Module):
    """Project onto the sphere of radius r (r fixed or learnable)."""

    def __init__(self, r: float = 1.0, learnable: bool = False):
        super().__init__()
        r = torch.tensor([float(r)])
        if learnable:
            self.r = nn.Parameter(r)
        else:
            self.register_buffer("r", r)

    def forward(self, x):
        return self.r * x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class BoxNorm(nn.Module):
    """Squash into the box [low, low + width]^n with a sigmoid (width fixed or learnable per dimension)."""

    def __init__(self, n: int, low: float = 0.0, high: float = 1.0, learnable: bool = False):
        super().__init__()
        self.low = float(low)
        width = torch.full((n,), float(high) - float(low))
        if learnable:
            self.width = nn.Parameter(width)
        else:
            self.register_buffer("width", width)

    def forward(self, x):
        return self.low + torch.sigmoid(x) * self.width


# the kinds of output normalisation (an encoder's last layer), by name
OUTPUT_NORMS = (None, "fixed_box", "learnable_box", "fixed_sphere", "learnable_sphere")


def norm_layer(kind: str | None, n: int, r: float = 1.0, low: float = 0.0, high: float = 1.0) -> nn.Module:
    """The output-normalisation layer of ``kind`` (one of ``OUTPUT_NORMS``; ``None`` gives the identity)
    for ``n`` outputs: a sphere of radius ``r`` or the box [low, high]^n."""
    if kind is None:
        return nn.Identity()
    if kind in ("fixed_box", "learnable_box"):
        return BoxNorm(n, low, high, learnable=kind == "learnable_box")
    if kind in ("fixed_sphere", "learnable_sphere"):
        return SphereNorm(r, learnable=kind == "learnable_sphere")
    raise ClicaError(f"unknown output normalisation '{kind}'; choose one of {OUTPUT_NORMS}")


def mlp_encoder(n_in: int, n_out: int, hidden: Sequence[int], output_norm: str | None = None,
                layer_norm: bool = False, **norm_kwargs) -> nn.Sequential:
    """Linear layers of widths ``hidden`` with LeakyReLU between them, then the output normalisation
    of kind ``output_norm`` (:func:`norm_layer`, with ``norm_kwargs``).

    ``layer_norm`` adds a LayerNorm after each hidden linear layer (not in the original; it
    speeds up training several-fold).
    """
    widths = [n_in, *hidden, n_out]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            if layer_norm:
                layers.append(nn.LayerNorm(b))
            layers.append(nn.LeakyReLU())
    layers.append(norm_layer(output_norm, n_out, **norm_kwargs))
    return nn.Sequential(*layers)


def to_device(model: nn.Module, device) -> nn.Module:
    """Move ``model`` to ``device``; on the CPU also into the channels-last layout.

    oneDNN runs convolutions faster on channels-last weights (and then keeps the
    activations channels-last): a KITTI encoder step is ~1.2× faster, ``clica kitti``
    ~1.5× end to end; ResNet-18 gains up to ~1.1× (``benchmarks/conv_layout.py``).
    Only 4-D weights change layout; values and state dicts are the same.
    """
    device = torch.device(device)
    model = model.to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return model
