"""The InfoNCE family and supervised losses.

Every contrastive loss is a :class:`ContrastiveLoss`, called as
``loss(h1, h2, h_neg=None, *, batch=None)`` with ``h1 = f(x)``, ``h2 = f(x~)`` for positive pairs
and ``h_neg`` the negatives (InfoNCE default: the other anchors, plus the anchor itself with weight
``self_weight``; weight 1 is the original code's ``h1`` rolled by one). It returns a
:class:`LossOutput` with the mean loss, the per-item loss and named parts.

``batch=(H1, k)``: the pairs are rows k … k+len(h1) of a larger batch whose anchors are ``H1``, and
the negatives are H1's other rows; each row's loss is then exactly its term in the loss of the whole
batch. Under torchrun each process computes its own rows this way (:func:`clica.distributed.global_loss`).

Pairwise distances are computed with ``torch.cdist`` or a matrix product:
never as a B×B×n difference tensor.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ClicaError

__all__ = [
    "LossOutput", "ContrastiveLoss", "pairwise_lp", "negative_logsumexp", "LpInfoNCE", "DotInfoNCE",
    "AlignmentLoss", "UniformityLoss", "BlockLoss", "mse_loss", "negative_r2_loss", "SUPERVISED_LOSSES",
]


@dataclass
class LossOutput:
    """What a contrastive loss returns.

    Parameters
    ----------
    total : torch.Tensor
        The loss to minimise: the mean of ``per_item``.
    per_item : torch.Tensor
        One loss per positive pair.
    parts : dict
        Named scalar parts of ``total`` (for logs).
    """

    total: torch.Tensor
    per_item: torch.Tensor
    parts: dict = field(default_factory=dict)


class ContrastiveLoss(ABC):
    """A contrastive loss: ``loss(h1, h2, h_neg=None, *, batch=None) -> LossOutput``.

    Subclasses implement :meth:`forward`. A loss whose rows' terms cannot be computed from a larger
    batch sets ``takes_batch = False``; it is then refused under torchrun.

    Parameters
    ----------
    h1, h2 : torch.Tensor
        B × n embeddings of the anchors f(x) and of their positives f(x~).
    h_neg : torch.Tensor or None
        M × n explicit negatives; None: the loss's default (the other anchors).
    batch : tuple (torch.Tensor, int) or None
        ``(H1, k)``: ``h1`` are rows k … k+B of the larger batch of anchors ``H1``, whose other rows
        are the negatives (as :func:`clica.distributed.global_loss` passes it).

    Returns
    -------
    LossOutput
    """

    takes_batch = True

    def __call__(self, h1, h2, h_neg=None, *, batch=None) -> LossOutput:
        if batch is not None and not self.takes_batch:
            raise ClicaError(f"{type(self).__name__} cannot train under torchrun: its terms are not per pair of "
                             "the global batch; run it in one process")
        return self.forward(h1, h2, h_neg, batch)

    @abstractmethod
    def forward(self, h1, h2, h_neg, batch) -> LossOutput:
        """The loss; the arguments are :meth:`__call__`'s."""


def _negatives(h1: torch.Tensor, h_neg: torch.Tensor | None) -> torch.Tensor:
    return torch.roll(h1, 1, 0) if h_neg is None else h_neg


def pairwise_lp(a: torch.Tensor, b: torch.Tensor, p: float, pow: bool) -> torch.Tensor:
    """B×M matrix of |a_i - b_j|_p (or its p-th power when ``pow``), without a B×M×n tensor.

    Parameters
    ----------
    a, b : torch.Tensor
        B × n and M × n points.
    p : float
        The exponent of the norm.
    pow : bool
        Return |a_i - b_j|_p^p instead of the norm.

    Returns
    -------
    torch.Tensor
        The B × M distances.
    """
    if p == 2 and pow:
        # |a|² + |b|² - 2 a·b: one matrix product, and no sqrt whose gradient blows up at 0
        sq = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1) - 2.0 * a @ b.T
        return sq.clamp_min(0)
    d = torch.cdist(a, b, p=p)
    return d.pow(p) if pow else d


def _pairwise_grads(a, b, G, p: float, pow: bool):
    """Gradients of sum_ij G_ij·D_ij w.r.t. a and b, D = pairwise_lp(a, b, p, pow)."""
    if p == 2 and pow:
        return 2.0 * (a * G.sum(1, keepdim=True) - G @ b), 2.0 * (b * G.sum(0)[:, None] - G.T @ a)
    d = torch.cdist(a, b, p=p)
    if pow and p != 1:
        G = G * (p * d.pow(p - 1)).masked_fill(d == 0, 0.0)
    grad_a = torch.ops.aten._cdist_backward(G.contiguous(), a, b, p, d)
    grad_b = torch.ops.aten._cdist_backward(G.T.contiguous(), b, a, p, d.T.contiguous())
    if p < 1:  # |x|^p has no finite slope at x = 0: such coordinates get zero gradient
        grad_a, grad_b = grad_a.nan_to_num(0.0, 0.0, 0.0), grad_b.nan_to_num(0.0, 0.0, 0.0)
    return grad_a, grad_b


def _logits(a, b, s, chunk, p, pow, tau, diag):
    """-D/τ for rows s … s+chunk of a against b, with -inf at each row's own column (j = i + diag) if
    ``diag`` is not None."""
    logits = pairwise_lp(a[s:s + chunk], b, p, pow).mul_(-1.0 / tau)
    if diag is not None:
        logits.diagonal(offset=s + diag).fill_(float("-inf"))
    return logits


class _NegativeLogSumExp(torch.autograd.Function):
    """lse_i = log(Σ_j exp(-D_ij/τ) [+ exp(extra_i)]) for D = pairwise_lp(a, b), in row chunks.

    Only a chunk of D lives at a time, in the forward and (recomputed) in the
    backward pass, so memory stays O(chunk·M) instead of several B×M matrices.
    """

    @staticmethod
    def forward(ctx, a, b, extra, p, pow, tau, chunk, diag):
        out = torch.empty(a.shape[0], dtype=a.dtype, device=a.device)
        for s in range(0, a.shape[0], chunk):
            logits = _logits(a, b, s, chunk, p, pow, tau, diag)
            lse = torch.logsumexp(logits, dim=1)
            out[s:s + chunk] = lse if extra is None else torch.logaddexp(lse, extra[s:s + chunk])
        ctx.save_for_backward(a, b, extra, out)
        ctx.cfg = (p, pow, tau, chunk, diag)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        a, b, extra, out = ctx.saved_tensors
        p, pow, tau, chunk, diag = ctx.cfg
        grad_a, grad_b = torch.empty_like(a), torch.zeros_like(b)
        for s in range(0, a.shape[0], chunk):
            logits = _logits(a, b, s, chunk, p, pow, tau, diag)
            # d lse_i / d D_ij = -softmax_ij / τ
            G = logits.sub_(out[s:s + chunk, None]).exp_().mul_(grad_out[s:s + chunk, None] * (-1.0 / tau))
            ga, gb = _pairwise_grads(a[s:s + chunk], b, G, p, pow)
            grad_a[s:s + chunk] = ga
            grad_b += gb
        grad_extra = None if extra is None else grad_out * torch.exp(extra - out)
        return grad_a, grad_b, grad_extra, None, None, None, None, None


def _kernel_threads() -> None:
    """Run numba's kernels on as many threads as torch uses, so pinning torch's threads pins them too."""
    import numba

    threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    if torch.get_num_threads() != threads:  # starting numba's OpenMP pool resets torch's count to the pool's
        torch.set_num_threads(threads)


class _NegativeLogSumExpCPU(torch.autograd.Function):
    """The same quantity through fused numba kernels (no B×M×n tensor, one B×M float32 matrix)."""

    @staticmethod
    def forward(ctx, a, b, p, pow, tau, diag):
        from . import _lp_kernels as K

        _kernel_threads()
        a_np = a.detach().contiguous().numpy()
        bT = np.ascontiguousarray(b.detach().numpy().T)
        lse, W = K.lse_forward(a_np, bT, p, pow, tau, -1 if diag is None else diag)
        ctx.save_for_backward(a, b)
        ctx.stash = (W, bT, p, pow, tau)
        return torch.from_numpy(lse)

    @staticmethod
    def backward(ctx, grad_out):
        from . import _lp_kernels as K

        _kernel_threads()
        a, _ = ctx.saved_tensors
        W, bT, p, pow, tau = ctx.stash
        del ctx.stash
        grad_a, grad_bT = K.lse_backward(a.detach().contiguous().numpy(), bT, W,
                                         grad_out.float().contiguous().numpy(), p, pow, tau)
        return (torch.from_numpy(grad_a), torch.from_numpy(np.ascontiguousarray(grad_bT.T)),
                None, None, None, None)


def _use_kernels(a: torch.Tensor, b: torch.Tensor, p: float, pow: bool) -> bool:
    # measured (benchmarks/lse_paths.py): the kernels are faster than the torch path from 64×64 pairs up,
    # for p = 2 too (1024×1024, one thread: 15 ms against 71 ms for the matrix-product path)
    return (a.device.type == "cpu" and a.dtype == torch.float32 and _KERNELS_OK
            and a.shape[0] * b.shape[0] >= 1 << 12)


def negative_logsumexp(a, b, p: float, pow: bool, tau: float, extra=None, chunk: int = 1024,
                       exclude_diagonal: bool = False, diagonal_offset: int = 0):
    """log Σ_j exp(-|a_i - b_j|_p^(p)/τ) [+ exp(extra_i)] per row i, fused and memory-light.

    On the CPU (float32) it runs fused numba kernels;
    elsewhere chunked torch operations (cdist / matrix products).

    Parameters
    ----------
    a, b : torch.Tensor
        B × n rows and M × n points.
    p : float
        The exponent of the norm.
    pow : bool
        Use |a_i - b_j|_p^p instead of the norm.
    tau : float
        The temperature τ.
    extra : torch.Tensor or None
        B extra log-terms, one per row, added inside the log-sum-exp.
    chunk : int
        Rows per chunk of the torch path.
    exclude_diagonal : bool
        Leave out each row's own entry j = i + ``diagonal_offset`` (as when a is b, or rows
        ``diagonal_offset`` … of b).
    diagonal_offset : int
        The row of b that row 0 of a is.

    Returns
    -------
    torch.Tensor
        The B log-sum-exps, differentiable in a, b and ``extra``.
    """
    diag = int(diagonal_offset) if exclude_diagonal else None
    if diag is not None and not 0 <= diag <= b.shape[0] - a.shape[0]:
        raise ValueError(f"rows {diag}…{diag + a.shape[0] - 1} of a {b.shape[0]}-row b do not exist")
    if _use_kernels(a, b, p, pow):
        lse = _NegativeLogSumExpCPU.apply(a, b, float(p), bool(pow), float(tau), diag)
        return lse if extra is None else torch.logaddexp(lse, extra)
    return _NegativeLogSumExp.apply(a, b, extra, float(p), pow, float(tau), chunk, diag)


# numba's OpenMP pool spins between kernels: sized to torch's threads (OMP_NUM_THREADS=1 gives a
# one-thread pool), several pinned runs on one machine do not slow each other down five-fold
os.environ.setdefault("NUMBA_NUM_THREADS", str(torch.get_num_threads()))
try:  # numba is a hard dependency, but keep the torch path usable without it
    import numba  # noqa: F401

    _KERNELS_OK = True
except ImportError:  # pragma: no cover
    _KERNELS_OK = False


def _log_weight(w: float) -> float:
    return math.log(w) if w > 0 else -math.inf


def _lp(x: torch.Tensor, p: float, pow: bool) -> torch.Tensor:
    n = x.abs().pow(p).sum(-1)
    return n if pow else n.pow(1.0 / p)


class LpInfoNCE(ContrastiveLoss):
    """InfoNCE with the similarity -|h - h'|_p^p / τ (Lp exponential model of the conditional).

    ``simclr_compatibility_mode`` includes the positive in the log-sum-exp over
    negatives (as SimCLR); otherwise the negative term is a log-mean-exp over
    the negatives alone. ``pow=False`` uses the norm instead of its p-th power.
    The loss is ``2·(α·pos + (1-α)·neg)``, so α = 0.5 gives the plain sum.

    Without explicit negatives, the negatives of anchor i are the other anchors
    h1_j, j ≠ i, and the anchor itself enters the log-sum-exp as a constant term
    of weight ``self_weight``. The original rolled h1 by one, which contains the
    anchor at distance 0: that is ``self_weight = 1``. This constant sets the
    scale the encoder settles at; with few negatives per anchor a weight of 1
    compresses the recovered latents near the faces of a box, a small weight
    (e.g. 0.01) does not.

    Parameters
    ----------
    p : float
        The exponent (> 0).
    tau : float
        The temperature τ.
    alpha : float
        The weight of the positive term.
    simclr_compatibility_mode : bool
        The positive joins the log-sum-exp over the negatives.
    pow : bool
        Use |h - h'|_p^p; False: the norm.
    self_weight : float
        The weight (≥ 0) of the anchor's own term among the default negatives.
    """

    def __init__(self, p: float = 1.0, tau: float = 1.0, alpha: float = 0.5,
                 simclr_compatibility_mode: bool = True, pow: bool = True, self_weight: float = 1.0):
        if p <= 0:
            raise ValueError(f"p must be positive, got {p}")
        if self_weight < 0:
            raise ValueError(f"self_weight must be ≥ 0, got {self_weight}")
        self.p, self.tau, self.alpha = float(p), float(tau), float(alpha)
        self.simclr_compatibility_mode, self.pow = simclr_compatibility_mode, pow
        self.self_weight = float(self_weight)

    def forward(self, h1, h2, h_neg, batch) -> LossOutput:
        pos = _lp(h1 - h2, self.p, self.pow)
        loss_pos = pos / self.tau
        offset = 0
        if h_neg is None:  # the other anchors, and the anchor itself with weight self_weight
            h_neg, offset = (h1, 0) if batch is None else batch
            n_neg, exclude = h_neg.shape[0] - 1 + self.self_weight, True
            extra = torch.full_like(loss_pos, _log_weight(self.self_weight))
        else:
            n_neg, exclude, extra = h_neg.shape[0], False, None
        if self.simclr_compatibility_mode:  # the positive joins the log-sum-exp
            extra = -loss_pos if extra is None else torch.logaddexp(extra, -loss_pos)
        loss_neg = negative_logsumexp(h1, h_neg, self.p, self.pow, self.tau, extra=extra, exclude_diagonal=exclude,
                                      diagonal_offset=offset)
        if not self.simclr_compatibility_mode:
            loss_neg = loss_neg - math.log(n_neg)
        per_item = 2 * (self.alpha * loss_pos + (1 - self.alpha) * loss_neg)
        return LossOutput(per_item.mean(), per_item, {"pos": loss_pos.mean(), "neg": loss_neg.mean()})


class DotInfoNCE(ContrastiveLoss):
    """InfoNCE with the dot-product similarity h·h'/τ (SimCLR; the vMF model on the sphere).

    Without explicit negatives, the negatives are the other anchors and the
    anchor's own similarity enters with weight ``self_weight`` (1: the
    original's rolled negatives, which contain the anchor), as in :class:`LpInfoNCE`.

    Parameters
    ----------
    normalize : bool
        Project the representations onto the unit sphere first.
    tau : float
        The temperature τ.
    alpha : float
        The weight of the positive term.
    self_weight : float
        The weight (≥ 0) of the anchor's own term among the default negatives.
    """

    def __init__(self, normalize: bool = False, tau: float = 1.0, alpha: float = 0.5, self_weight: float = 1.0):
        if self_weight < 0:
            raise ValueError(f"self_weight must be ≥ 0, got {self_weight}")
        self.normalize, self.tau, self.alpha = normalize, float(tau), float(alpha)
        self.self_weight = float(self_weight)

    def forward(self, h1, h2, h_neg, batch) -> LossOutput:
        if self.normalize:
            h1, h2 = F.normalize(h1, dim=-1), F.normalize(h2, dim=-1)
        if h_neg is None:
            anchors, offset = (h1, 0) if batch is None else batch
            if self.normalize and batch is not None:
                anchors = F.normalize(anchors, dim=-1)
            neg = h1 @ anchors.T
            if self.self_weight != 1.0:  # in place: no second B×B matrix (mm's backward needs only its inputs)
                neg.diagonal(offset).add_(_log_weight(self.self_weight) * self.tau)
        else:
            neg = h1 @ (F.normalize(h_neg, dim=-1) if self.normalize else h_neg).T
        pos = (h1 * h2).sum(-1)
        loss_pos = -pos / self.tau
        logits = torch.cat([neg, pos[:, None]], 1) / self.tau
        # a term 80 below its row's largest adds nothing in float32; raised to that floor, exp never
        # takes its slow underflow path (a third of a step's time at τ = 0.01 on the sphere)
        floor = logits.detach().amax(1, keepdim=True) - 80.0
        loss_neg = torch.logsumexp(torch.maximum(logits, floor), dim=1)
        per_item = 2 * (self.alpha * loss_pos + (1 - self.alpha) * loss_neg)
        return LossOutput(per_item.mean(), per_item, {"pos": loss_pos.mean(), "neg": loss_neg.mean()})


class AlignmentLoss(ContrastiveLoss):
    """Mean |h1 - h2|_p^p over positive pairs (Wang & Isola's alignment); negatives play no part.

    Parameters
    ----------
    p : float
        The exponent.
    """

    def __init__(self, p: float = 2.0):
        self.p = float(p)

    def forward(self, h1, h2, h_neg, batch) -> LossOutput:
        per_item = _lp(h1 - h2, self.p, True)
        return LossOutput(per_item.mean(), per_item, {"alignment": per_item.mean()})


class UniformityLoss(ContrastiveLoss):
    """Mean over items of log-mean-exp(-|h1_i - h_neg_j|_p^p) (Wang & Isola's uniformity).

    ``h2`` plays no part; the default negatives are the anchors rolled by one (under ``batch``, the
    whole batch's).

    Parameters
    ----------
    p : float
        The exponent.
    """

    def __init__(self, p: float = 2.0):
        self.p = float(p)

    def forward(self, h1, h2, h_neg, batch) -> LossOutput:
        h_neg = _negatives(h1 if batch is None else batch[0], h_neg)
        per_item = negative_logsumexp(h1, h_neg, self.p, True, 1.0) - math.log(h_neg.shape[0])
        return LossOutput(per_item.mean(), per_item, {"uniformity": per_item.mean()})


class BlockLoss(ContrastiveLoss):
    """Different losses on blocks of dimensions, weighted sum.

    Parameters
    ----------
    blocks : sequence of (ContrastiveLoss, int, int)
        ``(loss, start, end)``: ``loss`` on dimensions start … end-1.
    weights : sequence of float or None
        One weight per block (None: all 1).
    """

    def __init__(self, blocks: Sequence[tuple], weights: Sequence[float] | None = None):
        self.blocks = list(blocks)
        self.weights = [1.0] * len(self.blocks) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.blocks):
            raise ValueError("one weight per block")

    def forward(self, h1, h2, h_neg, batch) -> LossOutput:
        # without explicit negatives each block uses its own default (the other anchors and the
        # anchor itself with the block loss's self weight), so ``self_weight`` acts per block
        total, per_item, parts = 0.0, 0.0, {}
        for k, ((loss, start, end), w) in enumerate(zip(self.blocks, self.weights)):
            neg = None if h_neg is None else h_neg[:, start:end]
            rows = None if batch is None else (batch[0][:, start:end], batch[1])
            out = loss(h1[:, start:end], h2[:, start:end], neg, batch=rows)
            total = total + w * out.total
            per_item = per_item + w * out.per_item
            parts[f"block{k}"] = out.total
        return LossOutput(total, per_item, parts)


def mse_loss(pred: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean squared error of predicted latents.

    Parameters
    ----------
    pred, z : torch.Tensor
        B × n predicted and true latents.

    Returns
    -------
    torch.Tensor
        The scalar loss.
    """
    return F.mse_loss(pred, z)


def negative_r2_loss(pred: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Minus the R² of ``pred`` for ``z``, averaged over dimensions.

    Parameters
    ----------
    pred, z : torch.Tensor
        B × n predicted and true latents.

    Returns
    -------
    torch.Tensor
        The scalar loss (-1 for a perfect prediction).
    """
    r2 = 1.0 - ((pred - z) ** 2).mean(0) / z.var(0, unbiased=False).clamp_min(1e-12)
    return -r2.mean()


SUPERVISED_LOSSES = {"mse": mse_loss, "r2": negative_r2_loss}
