"""Disentanglement metrics: linear R² (identifiability up to affine maps) and MCC
(up to permutation, sign and per-dimension rescaling).

Inputs may be numpy arrays or torch tensors of shape (N, k) for the true
latents ``z`` and (N, m) for the recovered ``hz``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["to_numpy", "constant_columns", "LinearFit", "linear_fit", "linear_r2", "correlation_matrix", "MCCResult",
           "mcc"]


def to_numpy(x) -> np.ndarray:
    """A float64 (N, d) numpy array from a tensor or array."""
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    return x[:, None] if x.ndim == 1 else x


def _r2_per_dim(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    ss_res = ((y - pred) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    return 1.0 - ss_res / ss_tot


def constant_columns(z) -> list[int]:
    """Indices of the columns of ``z`` that take a single value (no variance to explain)."""
    z = to_numpy(z)
    return [int(i) for i in np.flatnonzero(np.ptp(z, axis=0) == 0)] if len(z) else []


@dataclass
class LinearFit:
    r2: float                 # mean over dimensions of z
    r2_per_dim: np.ndarray
    z_true: np.ndarray        # the evaluated z (the test half with a split)
    z_pred: np.ndarray        # the affine prediction of z from hz
    mse_per_dim: np.ndarray


def linear_fit(z, hz, train_test_split: bool = False) -> LinearFit:
    """Fit z ≈ A·hz + b by least squares and score it with R² (averaged over z's dimensions).

    With ``train_test_split`` the map is fitted on the first half and scored on the second.
    """
    z, hz = to_numpy(z), to_numpy(hz)
    if len(z) != len(hz):
        raise ValueError(f"z and hz need the same number of samples, got {len(z)} and {len(hz)}")
    constant = constant_columns(z)
    if constant:
        # R² of a constant column is 0/0: sklearn's r2_score (the original's) returns 1, 0 or
        # a huge negative number depending on rounding, and skipping it would average over
        # fewer columns than asked; so it is refused
        raise ValueError(f"true latent column(s) {constant} are constant: R² is undefined for them")
    if train_test_split:
        k = len(z) // 2
        fit_z, fit_h, test_z, test_h = z[:k], hz[:k], z[k:], hz[k:]
    else:
        fit_z, fit_h, test_z, test_h = z, hz, z, hz
    design = np.hstack([fit_h, np.ones((len(fit_h), 1))])
    coef, *_ = np.linalg.lstsq(design, fit_z, rcond=None)
    pred = np.hstack([test_h, np.ones((len(test_h), 1))]) @ coef
    per_dim = _r2_per_dim(test_z, pred)
    return LinearFit(float(np.mean(per_dim)), per_dim, test_z, pred, ((test_z - pred) ** 2).mean(0))


def linear_r2(z, hz, train_test_split: bool = False) -> float:
    """R² of the best affine map from hz to z."""
    return linear_fit(z, hz, train_test_split).r2


def correlation_matrix(z, hz, method: str = "pearson") -> np.ndarray:
    """k×m matrix of Pearson or Spearman correlations between columns of z and hz (0 for constant columns)."""
    z, hz = to_numpy(z), to_numpy(hz)
    if method == "spearman":
        from scipy.stats import rankdata  # ~0.8 s to import: only when asked for

        z, hz = rankdata(z, axis=0), rankdata(hz, axis=0)
    elif method != "pearson":
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")

    def standardise(a):
        a = a - a.mean(0)
        s = a.std(0)
        return a / np.where(s > 0, s, np.inf)

    return standardise(z).T @ standardise(hz) / len(z)


@dataclass
class MCCResult:
    score: float              # mean |corr| over the matched true factors
    corr: np.ndarray          # k×k correlations of z with its matched columns of hz (signed)
    assignment: np.ndarray    # assignment[i]: the column of hz matched to factor i of z
    per_factor: np.ndarray    # |corr| per true factor


def mcc(z, hz, method: str = "pearson") -> MCCResult:
    """Mean correlation coefficient after the best one-to-one matching of factors (Hungarian).

    ``hz`` may have more columns than ``z``: each true factor is matched to a
    distinct column and the score averages over the true factors.
    """
    corr = correlation_matrix(z, hz, method)
    k, m = corr.shape
    if m < k:
        raise ValueError(f"hz needs at least as many columns as z ({k}), got {m}")
    from scipy.optimize import linear_sum_assignment  # ~0.5 s to import: at the first score, not at start-up

    rows, cols = linear_sum_assignment(-np.abs(corr))
    assignment = cols[np.argsort(rows)]
    matched = corr[:, assignment]
    per_factor = np.abs(np.diag(matched))
    return MCCResult(float(per_factor.mean()), matched, assignment, per_factor)
