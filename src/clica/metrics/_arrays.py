"""Input checks shared by the metrics: samples × dimensions arrays, finite, paired."""

from __future__ import annotations

import numpy as np


def to_numpy(x) -> np.ndarray:
    """A float64 (N, d) numpy array from a tensor or array (a 1-D input is one column).

    Parameters
    ----------
    x : array-like or torch tensor
        Samples × dimensions, or one dimension of samples. A tensor is detached and copied to the CPU
        (torch is not imported for it).

    Returns
    -------
    (N, d) float64 array.
    """
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    return x[:, None] if x.ndim == 1 else x


def checked(name: str, x, n_samples: int | None = None, other: str | None = None) -> np.ndarray:
    """``x`` as a finite float64 samples × dimensions array, or a one-line ``ValueError`` naming ``name``.

    With ``n_samples`` (the sample count of the array called ``other``) a different number of rows
    is refused, and a transposed array is named as such.
    """
    x = to_numpy(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a samples × dimensions array, got shape {x.shape}")
    if x.size and not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x).all(axis=0))
        raise ValueError(f"{name} holds NaN or infinite values (column(s) {bad.tolist()[:5]})")
    if n_samples is not None and len(x) != n_samples:
        hint = (f": {name} looks transposed (dimensions × samples); transpose it"
                if x.shape[1] == n_samples else "")
        raise ValueError(f"{name} has {len(x)} samples but {other} has {n_samples}{hint}")
    return x


def _not_wide(name: str, x: np.ndarray) -> np.ndarray:
    if len(x) < x.shape[1]:
        raise ValueError(f"{name} has {len(x)} samples of {x.shape[1]} dimensions: it looks transposed "
                         f"(dimensions × samples); transpose it")
    return x


def paired(codes, factors, codes_name: str = "codes", factors_name: str = "factors") -> tuple[np.ndarray, np.ndarray]:
    """Checked (codes, factors) with the same number of samples, each with at least as many samples as
    dimensions (fewer reads as a transposed array)."""
    factors = _not_wide(factors_name, checked(factors_name, factors))
    return _not_wide(codes_name, checked(codes_name, codes, len(factors), factors_name)), factors


def constant_columns(z) -> list[int]:
    """Indices of the columns of ``z`` that take a single value (no variance to explain).

    Parameters
    ----------
    z : (N, d) array-like

    Returns
    -------
    list of int: the constant columns, in order (none for an array without rows).
    """
    z = to_numpy(z)
    return [int(i) for i in np.flatnonzero(np.ptp(z, axis=0) == 0)] if len(z) else []


def require_varying(name: str, factors: np.ndarray) -> None:
    """Refuse factor columns that take one value: they have no entropy, no classes to predict."""
    constant = constant_columns(factors)
    if constant:
        raise ValueError(f"{name} column(s) {constant} take a single value: the metric is undefined for them")
