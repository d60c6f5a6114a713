"""Linear R²: how well an affine map of the representation recovers the true latents (identifiability
up to affine maps)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._arrays import checked, constant_columns, to_numpy

__all__ = ["LinearFit", "linear_fit", "linear_r2"]


def _r2_per_dim(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    ss_res = ((y - pred) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    return 1.0 - ss_res / ss_tot


@dataclass
class LinearFit:
    r2: float                 # mean over dimensions of z
    r2_per_dim: np.ndarray
    z_true: np.ndarray        # the evaluated z (the test half with a split)
    z_pred: np.ndarray        # the affine prediction of z from hz
    mse_per_dim: np.ndarray


def linear_fit(z, hz, train_test_split: bool = False, n_train: int | None = None) -> LinearFit:
    """Fit z ≈ A·hz + b by least squares and score it with R² (averaged over z's dimensions).

    Parameters
    ----------
    z : (N, k) array
        The true latents; a constant column is refused (its R² is undefined).
    hz : (N, m) array
        The representation, on the same samples.
    train_test_split : bool
        Fit the map on the first half of the rows and score it on the second (else fit and score on all).
    n_train : int, optional
        Fit on the first ``n_train`` rows and score on the rest.

    Returns
    -------
    LinearFit
        The mean and per-dimension R², the scored z and its prediction, and the per-dimension error.
    """
    z = to_numpy(z)
    hz = checked("hz", hz, len(z), "z")
    constant = constant_columns(z)
    if constant:
        # R² of a constant column is 0/0: sklearn's r2_score (the original's) returns 1, 0 or
        # a huge negative number depending on rounding, and skipping it would average over
        # fewer columns than asked; so it is refused
        raise ValueError(f"true latent column(s) {constant} are constant: R² is undefined for them")
    k = len(z) // 2 if train_test_split else n_train
    if k is not None:
        if not 0 < k < len(z):
            raise ValueError(f"n_train must leave rows to fit and to score, got {k} of {len(z)}")
        fit_z, fit_h, test_z, test_h = z[:k], hz[:k], z[k:], hz[k:]
    else:
        fit_z, fit_h, test_z, test_h = z, hz, z, hz
    design = np.hstack([fit_h, np.ones((len(fit_h), 1))])
    coef, *_ = np.linalg.lstsq(design, fit_z, rcond=None)
    pred = np.hstack([test_h, np.ones((len(test_h), 1))]) @ coef
    per_dim = _r2_per_dim(test_z, pred)
    return LinearFit(float(np.mean(per_dim)), per_dim, test_z, pred, ((test_z - pred) ** 2).mean(0))


def linear_r2(z, hz, train_test_split: bool = False) -> float:
    """R² of the best affine map from hz to z: 1 when hz recovers z up to an affine map.

    Parameters
    ----------
    z, hz, train_test_split
        As :func:`linear_fit`.

    Returns
    -------
    float: the R² averaged over z's dimensions.
    """
    return linear_fit(z, hz, train_test_split).r2
