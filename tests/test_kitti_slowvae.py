"""SlowVAE loss terms against their formulas, and the conv models' shapes."""

import math

import torch
from torch.distributions import Laplace, Normal, kl_divergence

from clica.models.conv import ConvEncoderNet, ConvVAE
from clica.slowvae import (
    SlowVAELoss,
    bernoulli_reconstruction,
    cross_entropy_laplace,
    cross_entropy_normal,
    normal_entropy,
)

torch.manual_seed(0)
MU = torch.randn(6, 4, dtype=torch.float64)
LOGVAR = torch.randn(6, 4, dtype=torch.float64) - 1


def test_normal_terms():
    q = Normal(MU, torch.exp(0.5 * LOGVAR))
    torch.testing.assert_close(normal_entropy(LOGVAR), q.entropy())
    kl = cross_entropy_normal(MU, LOGVAR) - normal_entropy(LOGVAR)
    torch.testing.assert_close(kl, kl_divergence(q, Normal(torch.zeros_like(MU), torch.ones_like(MU))))


def test_laplace_cross_entropy_by_quadrature():
    rate = 6.0
    d = torch.tensor([-0.7, -0.05, 0.0, 0.2, 1.3], dtype=torch.float64)
    logvar = torch.tensor([-3.0, -1.0, 0.0, -2.0, 0.5], dtype=torch.float64)
    sigma = torch.exp(0.5 * logvar)
    # E_{z ~ N(d, σ²)}[-log Laplace(z; 0, 1/rate)] on a fine grid
    grid = torch.linspace(-12, 12, 400001, dtype=torch.float64)
    dens = torch.exp(Normal(d[:, None], sigma[:, None]).log_prob(grid))
    nll = -Laplace(torch.zeros(1, dtype=torch.float64), torch.tensor([1 / rate], dtype=torch.float64)).log_prob(grid)
    expected = torch.trapezoid(dens * nll, grid, dim=1)
    torch.testing.assert_close(cross_entropy_laplace(d, logvar, rate), expected, rtol=1e-6, atol=1e-6)


def test_bernoulli_reconstruction():
    x = (torch.rand(3, 1, 5, 5) > 0.5).float()
    logits = torch.randn(3, 1, 5, 5)
    p = torch.sigmoid(logits)
    expected = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).flatten(1).sum(1)
    torch.testing.assert_close(bernoulli_reconstruction(x, logits), expected, rtol=1e-5, atol=1e-5)


def test_total_is_the_originals_weighting():
    x = (torch.rand(6, 1, 8, 8) > 0.5).double()
    logits = torch.randn(6, 1, 8, 8, dtype=torch.float64)
    beta, gamma, rate = 2.0, 10.0, 6.0
    out = SlowVAELoss(beta, gamma, rate)(x, logits, MU, LOGVAR)
    recon = bernoulli_reconstruction(x, logits).mean()
    ent = normal_entropy(LOGVAR).sum(1).mean()
    ce_n = cross_entropy_normal(MU, LOGVAR).sum(1).mean()
    ce_l = (cross_entropy_laplace(MU[0::2] - MU[1::2], LOGVAR[0::2], rate)
            + cross_entropy_laplace(MU[1::2] - MU[0::2], LOGVAR[1::2], rate)).sum(1).mean()
    expected = 2 * recon + beta * (ce_n - ent) + gamma * (ce_l - ent)
    torch.testing.assert_close(out.total, expected)
    assert out.per_item.shape == (3,)
    # γ = 0 (--betavae) drops the transition prior
    beta_vae = SlowVAELoss(beta, 0.0, rate)(x, logits, MU, LOGVAR)
    torch.testing.assert_close(beta_vae.total, 2 * recon + beta * (ce_n - ent))
    assert math.isfinite(out.parts["kl_laplace"].item())


def test_conv_models_shapes_and_gradients():
    x = torch.rand(4, 1, 64, 64)
    enc = ConvEncoderNet(10)
    assert enc(x).shape == (4, 10)
    assert list(enc.state_dict())[0] == "encoder.0.weight"  # the original code's key names
    vae = ConvVAE(5)
    logits, mu, logvar = vae(x)
    assert logits.shape == x.shape and mu.shape == logvar.shape == (4, 5)
    SlowVAELoss()(x, logits, mu, logvar).total.backward()
    assert all(p.grad is not None for p in vae.parameters())
    vae.eval()
    torch.testing.assert_close(vae.encode(x), vae(x)[1])
