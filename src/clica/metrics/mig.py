"""MIG, the mutual information gap (Chen et al., 2018), as disentanglement_lib's ``mig.py``."""

from __future__ import annotations

import numpy as np

from ._arrays import paired, require_varying
from .discrete import discrete_factors, entropy, histogram_discretize, mutual_information

__all__ = ["mig"]


def mig(codes, factors, num_bins: int = 20) -> float:
    """Mean over factors of the gap between the two codes most informative about it, over its entropy.

    The codes are binned by a ``num_bins``-bin histogram per dimension; factors with more distinct
    values than ``num_bins`` are binned the same way (see :func:`~clica.metrics.discrete.discrete_factors`).

    Parameters
    ----------
    codes : (N, m) array
        The representation, samples × dimensions (m ≥ 2).
    factors : (N, k) array
        The ground-truth factors, samples × dimensions.
    num_bins : int

    Returns
    -------
    float: mean_j (I(c_(1); y_j) − I(c_(2); y_j)) / H(y_j), 1 when each factor is in one code only.
    """
    codes, factors = paired(codes, factors)
    if codes.shape[1] < 2:
        raise ValueError("codes needs at least 2 dimensions: MIG is a gap between the two most informative")
    factors, _ = discrete_factors(factors, num_bins=num_bins)
    require_varying("factors", factors)
    m = np.sort(mutual_information(histogram_discretize(codes, num_bins), factors), axis=0)
    return float(np.mean((m[-1] - m[-2]) / entropy(factors)))
