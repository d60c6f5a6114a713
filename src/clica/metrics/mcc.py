"""MCC: the mean correlation of each true latent with the representation's dimension matched to it
(identifiability up to permutation, sign and per-dimension rescaling)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._arrays import checked, to_numpy

__all__ = ["correlation_matrix", "MCCResult", "mcc"]


def correlation_matrix(z, hz, method: str = "pearson") -> np.ndarray:
    """Correlations between every column of ``z`` and every column of ``hz``.

    Parameters
    ----------
    z : (N, k) array
        The true latents.
    hz : (N, m) array
        The representation, on the same samples.
    method : {"pearson", "spearman"}
        Linear correlation, or correlation of ranks (monotone relations score 1 too).

    Returns
    -------
    (k, m) array of correlations in [-1, 1]; 0 for a constant column.
    """
    z = to_numpy(z)
    hz = checked("hz", hz, len(z), "z")
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

    Parameters
    ----------
    z : (N, k) array
        The true latents.
    hz : (N, m) array, m ≥ k
        The representation, on the same samples.
    method : {"pearson", "spearman"}
        See :func:`correlation_matrix`.

    Returns
    -------
    MCCResult
        The score (1 when each true latent is recovered up to permutation, sign and scale), the matched
        correlations, the assignment and the |correlation| per true latent.
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
