"""The InfoNCE family and supervised losses.

Every contrastive loss is called as ``loss(h1, h2, h_neg=None)`` with
``h1 = f(x)``, ``h2 = f(x~)`` for positive pairs and ``h_neg`` the negatives
(default: ``h1`` rolled by one, as the original code did). It returns a
:class:`LossOutput` with the mean loss, the per-item loss and named parts.

Pairwise distances are computed with ``torch.cdist`` or a matrix product:
never as a B×B×n difference tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "LossOutput", "pairwise_lp", "LpInfoNCE", "DotInfoNCE", "AlignmentLoss",
    "UniformityLoss", "BlockLoss", "mse_loss", "negative_r2_loss", "SUPERVISED_LOSSES",
]


@dataclass
class LossOutput:
    total: torch.Tensor
    per_item: torch.Tensor
    parts: dict = field(default_factory=dict)


def _negatives(h1: torch.Tensor, h_neg: torch.Tensor | None) -> torch.Tensor:
    return torch.roll(h1, 1, 0) if h_neg is None else h_neg


def pairwise_lp(a: torch.Tensor, b: torch.Tensor, p: float, pow: bool) -> torch.Tensor:
    """B×M matrix of |a_i - b_j|_p (or its p-th power when ``pow``), without a B×M×n tensor."""
    if p == 2 and pow:
        # |a|² + |b|² - 2 a·b: one matrix product, and no sqrt whose gradient blows up at 0
        sq = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1) - 2.0 * a @ b.T
        return sq.clamp_min(0)
    d = torch.cdist(a, b, p=p)
    return d.pow(p) if pow else d


def _lp(x: torch.Tensor, p: float, pow: bool) -> torch.Tensor:
    n = x.abs().pow(p).sum(-1)
    return n if pow else n.pow(1.0 / p)


def _logmeanexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


class LpInfoNCE:
    """InfoNCE with the similarity -|h - h'|_p^p / τ (Lp exponential model of the conditional).

    ``simclr_compatibility_mode`` includes the positive in the log-sum-exp over
    negatives (as SimCLR); otherwise the negative term is a log-mean-exp over
    the negatives alone. ``pow=False`` uses the norm instead of its p-th power.
    The loss is ``2·(α·pos + (1-α)·neg)``, so α = 0.5 gives the plain sum.
    """

    def __init__(self, p: float = 1.0, tau: float = 1.0, alpha: float = 0.5,
                 simclr_compatibility_mode: bool = True, pow: bool = True):
        if p <= 0:
            raise ValueError(f"p must be positive, got {p}")
        self.p, self.tau, self.alpha = float(p), float(tau), float(alpha)
        self.simclr_compatibility_mode, self.pow = simclr_compatibility_mode, pow

    def __call__(self, h1, h2, h_neg=None) -> LossOutput:
        neg = pairwise_lp(h1, _negatives(h1, h_neg), self.p, self.pow)
        pos = _lp(h1 - h2, self.p, self.pow)
        loss_pos = pos / self.tau
        if self.simclr_compatibility_mode:
            loss_neg = torch.logsumexp(torch.cat([-neg, -pos[:, None]], 1) / self.tau, dim=1)
        else:
            loss_neg = _logmeanexp(-neg / self.tau, dim=1)
        per_item = 2 * (self.alpha * loss_pos + (1 - self.alpha) * loss_neg)
        return LossOutput(per_item.mean(), per_item, {"pos": loss_pos.mean(), "neg": loss_neg.mean()})


class DotInfoNCE:
    """InfoNCE with the dot-product similarity h·h'/τ (SimCLR; the vMF model on the sphere).

    ``normalize`` projects the representations onto the unit sphere first.
    """

    def __init__(self, normalize: bool = False, tau: float = 1.0, alpha: float = 0.5):
        self.normalize, self.tau, self.alpha = normalize, float(tau), float(alpha)

    def __call__(self, h1, h2, h_neg=None) -> LossOutput:
        h_neg = _negatives(h1, h_neg)
        if self.normalize:
            h1, h2, h_neg = (F.normalize(t, dim=-1) for t in (h1, h2, h_neg))
        neg = h1 @ h_neg.T
        pos = (h1 * h2).sum(-1)
        loss_pos = -pos / self.tau
        loss_neg = torch.logsumexp(torch.cat([neg, pos[:, None]], 1) / self.tau, dim=1)
        per_item = 2 * (self.alpha * loss_pos + (1 - self.alpha) * loss_neg)
        return LossOutput(per_item.mean(), per_item, {"pos": loss_pos.mean(), "neg": loss_neg.mean()})


class AlignmentLoss:
    """Mean |h1 - h2|_p^p over positive pairs (Wang & Isola's alignment)."""

    def __init__(self, p: float = 2.0):
        self.p = float(p)

    def __call__(self, h1, h2, h_neg=None) -> LossOutput:
        per_item = _lp(h1 - h2, self.p, True)
        return LossOutput(per_item.mean(), per_item, {"alignment": per_item.mean()})


class UniformityLoss:
    """Mean over items of log-mean-exp(-|h1_i - h_neg_j|_p^p) (Wang & Isola's uniformity)."""

    def __init__(self, p: float = 2.0):
        self.p = float(p)

    def __call__(self, h1, h2=None, h_neg=None) -> LossOutput:
        per_item = _logmeanexp(-pairwise_lp(h1, _negatives(h1, h_neg), self.p, True), dim=1)
        return LossOutput(per_item.mean(), per_item, {"uniformity": per_item.mean()})


class BlockLoss:
    """Different losses on blocks of dimensions: ``[(loss, start, end), ...]``, weighted sum."""

    def __init__(self, blocks: Sequence[tuple], weights: Sequence[float] | None = None):
        self.blocks = list(blocks)
        self.weights = [1.0] * len(self.blocks) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.blocks):
            raise ValueError("one weight per block")

    def __call__(self, h1, h2, h_neg=None) -> LossOutput:
        h_neg = _negatives(h1, h_neg)
        total, per_item, parts = 0.0, 0.0, {}
        for k, ((loss, start, end), w) in enumerate(zip(self.blocks, self.weights)):
            out = loss(h1[:, start:end], h2[:, start:end], h_neg[:, start:end])
            total = total + w * out.total
            per_item = per_item + w * out.per_item
            parts[f"block{k}"] = out.total
        return LossOutput(total, per_item, parts)


def mse_loss(pred: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean squared error of predicted latents."""
    return F.mse_loss(pred, z)


def negative_r2_loss(pred: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Minus the R² of ``pred`` for ``z``, averaged over dimensions."""
    r2 = 1.0 - ((pred - z) ** 2).mean(0) / z.var(0, unbiased=False).clamp_min(1e-12)
    return -r2.mean()


SUPERVISED_LOSSES = {"mse": mse_loss, "r2": negative_r2_loss}
