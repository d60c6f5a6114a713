"""SlowVAE (Klindt et al., ICLR 2021): the baseline the paper compares against on KITTI Masks.

A VAE with a diagonal Gaussian posterior q(z|x) = N(μ, σ²), a Bernoulli
decoder, a standard-normal prior on each frame and a sparse Laplace
*transition* prior between the two frames of a pair,
p(z_t | z_{t-1}) = (λ/2)·exp(-λ |z_t - z_{t-1}|), λ = ``rate_prior``.

Per dimension, with H(q) = ½(log σ² + log 2πe) the posterior entropy:

* cross-entropy to N(0, 1):  E_q[-log N(z; 0, 1)] = ½(μ² + σ²) + ½ log 2π,
  so KL(q‖N(0,1)) = ½(μ² + σ² - log σ² - 1);
* cross-entropy to the Laplace transition centred at the other frame's mean,
  with d = μ_t - μ_{t-1}:  E_q[-log p] = -log(λ/2) + λ·E|d + σε|, where
  E|d + σε| = σ·√(2/π)·exp(-d²/2σ²) + d·(1 - 2Φ(-d/σ))  (ε ~ N(0, 1));
  it is applied both ways (frame 0 given frame 1 and frame 1 given frame 0).

The loss follows the original SlowVAE code's weighting: with recon the
Bernoulli negative log-likelihood summed over pixels and averaged over the
images, CE_N and H summed over dimensions and averaged over the images, and
CE_L (both directions) summed over dimensions and averaged over the pairs,

    loss = 2·recon + β·(CE_N - H) + γ·(CE_L - H).

γ = 0 (``--betavae``) gives a β-VAE. Batches hold pairs interleaved: items
0, 2, 4, ... are first frames and 1, 3, 5, ... their partners.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .losses import LossOutput

__all__ = [
    "bernoulli_reconstruction",
    "normal_entropy",
    "cross_entropy_normal",
    "cross_entropy_laplace",
    "SlowVAELoss",
]

_LOG_2PI = math.log(2 * math.pi)


def bernoulli_reconstruction(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-image Bernoulli negative log-likelihood: BCE with logits summed over pixels, shape (B,)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def normal_entropy(logvar: torch.Tensor) -> torch.Tensor:
    """Entropy of N(μ, exp(logvar)) per dimension: ½(logvar + log 2πe)."""
    return 0.5 * (logvar + _LOG_2PI + 1.0)


def cross_entropy_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """E_{N(μ, σ²)}[-log N(z; 0, 1)] per dimension: ½(μ² + σ²) + ½ log 2π."""
    return 0.5 * (mu ** 2 + logvar.exp()) + 0.5 * _LOG_2PI


def cross_entropy_laplace(diff: torch.Tensor, logvar: torch.Tensor, rate: float | torch.Tensor) -> torch.Tensor:
    """E_{z ~ N(m + d, σ²)}[-log Laplace(z; m, 1/rate)] per dimension, with d = ``diff``.

    = -log(rate/2) + rate·(σ√(2/π)·exp(-d²/2σ²) + d·(1 - 2Φ(-d/σ))).
    """
    rate = torch.as_tensor(rate, dtype=diff.dtype, device=diff.device)
    sigma = torch.exp(0.5 * logvar)
    folded_mean = (sigma * math.sqrt(2 / math.pi) * torch.exp(-diff ** 2 / (2 * sigma ** 2))
                   + diff * torch.erf(diff / (sigma * math.sqrt(2))))
    return -torch.log(rate / 2) + rate * folded_mean


class SlowVAELoss:
    """``loss(x, x_logits, mu, logvar) -> LossOutput`` for an interleaved batch of pairs.

    ``parts``: ``recon`` (per image), ``kl_normal`` (CE_N - H), ``kl_laplace``
    (CE_L - H), ``entropy``, ``cross_ent_normal``, ``cross_ent_laplace``.
    ``per_item`` is per pair.
    """

    def __init__(self, beta: float = 1.0, gamma: float = 10.0, rate_prior: float = 6.0):
        if rate_prior <= 0:
            raise ValueError(f"rate_prior must be positive, got {rate_prior}")
        self.beta, self.gamma, self.rate_prior = float(beta), float(gamma), float(rate_prior)

    def __call__(self, x, x_logits, mu, logvar) -> LossOutput:
        recon = bernoulli_reconstruction(x, x_logits)                       # (2B,)
        ent = normal_entropy(logvar).sum(1)                                 # (2B,)
        ce_n = cross_entropy_normal(mu, logvar).sum(1)                      # (2B,)
        mu0, mu1, lv0, lv1 = mu[0::2], mu[1::2], logvar[0::2], logvar[1::2]
        ce_l = (cross_entropy_laplace(mu0 - mu1, lv0, self.rate_prior)
                + cross_entropy_laplace(mu1 - mu0, lv1, self.rate_prior)).sum(1)   # (B,)
        # per pair, with the original's weighting (see the module docstring)
        pair = lambda v: 0.5 * (v[0::2] + v[1::2])  # noqa: E731
        per_item = (2 * pair(recon) + self.beta * (pair(ce_n) - pair(ent))
                    + self.gamma * (ce_l - pair(ent)))
        parts = {
            "recon": recon.mean(), "entropy": ent.mean(), "cross_ent_normal": ce_n.mean(),
            "cross_ent_laplace": ce_l.mean(), "kl_normal": (ce_n - ent).mean(),
            "kl_laplace": ce_l.mean() - ent.mean(),
        }
        return LossOutput(per_item.mean(), per_item, parts)
