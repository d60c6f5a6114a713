"""Discretisation and discrete information, as disentanglement_lib's ``evaluation/metrics/utils.py``.

Continuous columns are binned by a per-column histogram of ``num_bins`` equal-width bins over the
column's range (labels 1..num_bins, numpy's ``histogram`` edges and ``digitize``); mutual
information and entropy are in nats from the empirical joint frequencies.
"""

from __future__ import annotations

import numpy as np

__all__ = ["histogram_discretize", "discrete_factors", "mutual_information", "entropy"]


def _edges(column: np.ndarray, num_bins: int) -> np.ndarray:
    return np.histogram_bin_edges(column, num_bins)[:-1]


def histogram_discretize(x: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Bin each column of a samples × dimensions array into ``num_bins`` equal-width bins.

    Parameters
    ----------
    x : (N, d) array
    num_bins : int
        Bins per column, spanning the column's minimum to maximum.

    Returns
    -------
    (N, d) int array of bin labels in 1..num_bins.
    """
    if num_bins < 1:
        raise ValueError(f"num_bins must be at least 1, got {num_bins}")
    return np.stack([np.digitize(c, _edges(c, num_bins)) for c in x.T], axis=1)


def discrete_factors(train: np.ndarray, test: np.ndarray | None = None,
                     num_bins: int = 20) -> tuple[np.ndarray, np.ndarray | None]:
    """Factors as class labels: a column with more than ``num_bins`` distinct values is binned.

    Columns with at most ``num_bins`` distinct values (in ``train``) are kept as they are, as
    disentanglement_lib expects discrete factors; the others are binned by the histogram of the
    ``train`` column, and ``test`` by the same edges (values beyond them fall in the end bins).

    Parameters
    ----------
    train, test : (N, k) and (M, k) arrays, or ``test=None``
    num_bins : int

    Returns
    -------
    (train, test) with continuous columns replaced by bin labels 1..num_bins.
    """
    train = train.copy()
    test = None if test is None else test.copy()
    for j, column in enumerate(train.T):
        if len(np.unique(column)) <= num_bins:
            continue
        edges = _edges(column, num_bins)
        train[:, j] = np.digitize(column, edges)
        if test is not None:
            test[:, j] = np.clip(np.digitize(test[:, j], edges), 1, num_bins)
    return train, test


def _labels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's values as 0..L-1, and each column's L."""
    coded = [np.unique(c, return_inverse=True) for c in x.T]
    return np.stack([inv.ravel() for _, inv in coded], axis=1), np.array([len(u) for u, _ in coded])


def _plogp_sum(counts: np.ndarray, n: int) -> float:
    p = counts[counts > 0] / n
    return float((p * np.log(p)).sum())


def mutual_information(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Mutual information (nats) between every discrete code column and every discrete factor column.

    Parameters
    ----------
    codes : (N, m) array of discrete values (say, from :func:`histogram_discretize`)
    factors : (N, k) array of discrete values

    Returns
    -------
    (m, k) array: I(code_i; factor_j), as ``sklearn.metrics.mutual_info_score``.
    """
    a, la = _labels(codes)
    b, lb = _labels(factors)
    n = len(a)
    h_a = np.array([-_plogp_sum(np.bincount(a[:, i], minlength=la[i]), n) for i in range(a.shape[1])])
    h_b = entropy(factors)
    joint = np.array([[-_plogp_sum(np.bincount(a[:, i] * lb[j] + b[:, j]), n) for j in range(b.shape[1])]
                      for i in range(a.shape[1])]).reshape(a.shape[1], b.shape[1])
    return np.clip(h_a[:, None] + h_b[None, :] - joint, 0.0, None)


def entropy(factors: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each discrete column of a samples × dimensions array.

    Parameters
    ----------
    factors : (N, k) array of discrete values

    Returns
    -------
    (k,) array: H(factor_j) from the empirical frequencies.
    """
    b, _ = _labels(factors)
    return np.array([-_plogp_sum(np.bincount(c), len(b)) for c in b.T])
