"""The BetaVAE_H-style convolutional encoder/decoder for 64×64 images (KITTI Masks).

Architecture (Higgins et al., 2017, as used by the original KITTI code):
four stride-2 4×4 convolutions (32, 32, 64, 64 channels), a 4×4 convolution
to 256 channels (1×1 spatial), ReLU after each, then a linear layer to the
output. Kaiming-normal initialisation of every Conv2d/Linear, zero biases.
The decoder mirrors it with transposed convolutions and outputs logits.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["kaiming_init", "conv_encoder", "ConvEncoderNet", "ConvDecoder", "ConvVAE"]


def kaiming_init(module: nn.Module) -> None:
    """Kaiming-normal weights and zero biases for every Conv2d and Linear in ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _conv_trunk(nc: int) -> list[nn.Module]:
    return [
        nn.Conv2d(nc, 32, 4, 2, 1), nn.ReLU(True),    # 32 x 32 x 32
        nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(True),    # 32 x 16 x 16
        nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(True),    # 64 x 8 x 8
        nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(True),    # 64 x 4 x 4
        nn.Conv2d(64, 256, 4, 1), nn.ReLU(True),      # 256 x 1 x 1
        nn.Flatten(),
    ]


def conv_encoder(n_out: int, nc: int = 1, output_layer: nn.Module | None = None) -> nn.Sequential:
    """Encoder (B, nc, 64, 64) → (B, n_out), optionally followed by ``output_layer`` (a normalisation).

    For the contrastive model ``n_out = z_dim`` and the normalisation is the
    learnable box (``clica.models.norm_layer("learnable_box", z_dim)``)
    under ``--box-norm``; for the VAE ``n_out = 2 · z_dim`` (mean, log-variance).
    """
    layers = _conv_trunk(nc) + [nn.Linear(256, n_out)]
    if output_layer is not None:
        layers.append(output_layer)
    net = nn.Sequential(*layers)
    kaiming_init(net)
    return net


class ConvEncoderNet(nn.Module):
    """The contrastive model: ``encoder`` (B, nc, 64, 64) → (B, z_dim); ``encode`` is ``forward``.

    Its state-dict keys (``encoder.0.weight`` ... ``encoder.11.bias``) are the
    original code's, so its checkpoints load after renaming the box layer's
    ``max_abs_bound`` to ``width``.
    """

    def __init__(self, z_dim: int = 10, nc: int = 1, output_layer: nn.Module | None = None):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = conv_encoder(z_dim, nc, output_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    encode = forward


class ConvDecoder(nn.Sequential):
    """Decoder (B, z_dim) → logits (B, nc, 64, 64), the encoder's mirror image."""

    def __init__(self, z_dim: int, nc: int = 1):
        super().__init__(
            nn.Linear(z_dim, 256), nn.Unflatten(1, (256, 1, 1)), nn.ReLU(True),
            nn.ConvTranspose2d(256, 64, 4), nn.ReLU(True),         # 64 x 4 x 4
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(True),    # 64 x 8 x 8
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(True),    # 32 x 16 x 16
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(True),    # 32 x 32 x 32
            nn.ConvTranspose2d(32, nc, 4, 2, 1),                   # nc x 64 x 64
        )
        kaiming_init(self)


class ConvVAE(nn.Module):
    """Encoder to (mean, log-variance) of a diagonal Gaussian posterior, and the decoder.

    ``forward(x) -> (x_logits, mu, logvar)`` with a reparametrised sample
    (the posterior mean in eval mode); ``encode(x) -> mu`` is the
    representation scored by MCC.
    """

    def __init__(self, z_dim: int = 10, nc: int = 1):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = conv_encoder(2 * z_dim, nc)
        self.decoder = ConvDecoder(z_dim, nc)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h[:, : self.z_dim], h[:, self.z_dim:]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def forward(self, x: torch.Tensor):
        mu, logvar = self.posterior(x)
        if self.training:
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        else:
            z = mu
        return self.decoder(z), mu, logvar
