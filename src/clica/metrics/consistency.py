"""Identifiability without ground truth: do independent fits agree with each other?

The theory says encoders trained on the same data recover the same sources up to
the conditional's indeterminacy: permutation, sign and scale (Laplace: pairwise
MCC ≈ 1) or an orthogonal map (normal, vMF: pairwise linear R² ≈ 1, MCC may be
lower). Pairwise agreement of several seeds is therefore a check a user without
true sources can run (as CEBRA's ``consistency_score`` does across runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._arrays import to_numpy
from .mcc import mcc
from .r2 import linear_r2

__all__ = ["Consistency", "consistency"]


@dataclass(frozen=True)
class Consistency:
    """Pairwise agreement of m runs' outputs.

    ``mcc[i, j]``: MCC between run i's and run j's outputs (symmetric, 1 on the
    diagonal); ``r2[i, j]``: linear R² of predicting run i's output from run j's
    by an affine map. ``mean_mcc``/``mean_r2``: their means off the diagonal.
    """

    mcc: np.ndarray
    r2: np.ndarray

    @property
    def mean_mcc(self) -> float:
        return _off_diagonal_mean(self.mcc)

    @property
    def mean_r2(self) -> float:
        return _off_diagonal_mean(self.r2)

    def __repr__(self) -> str:
        return f"Consistency({len(self.mcc)} runs: mean MCC {self.mean_mcc:.4f}, mean linear R² {self.mean_r2:.4f})"


def _off_diagonal_mean(a: np.ndarray) -> float:
    return float(a[~np.eye(len(a), dtype=bool)].mean())


def _output(run, X) -> np.ndarray:
    if hasattr(run, "transform"):
        if X is None:
            raise ValueError("consistency of fitted models needs X, the data to transform")
        h = run.transform(X)
        h = np.concatenate([to_numpy(p) for p in h]) if isinstance(h, list) else h
    else:
        h = run
    h = np.asarray(to_numpy(h), dtype=np.float64)
    if h.ndim != 2:
        raise ValueError(f"an output has shape {h.shape}: give samples × components arrays")
    return h


def consistency(runs: Sequence, X=None) -> Consistency:
    """Pairwise MCC and linear R² between several runs' outputs on the same samples.

    Parameters
    ----------
    runs : sequence of fitted estimators (anything with ``transform``) or of arrays
        At least two. Arrays are outputs (samples × components), each row the
        same sample in every run; estimators are applied to ``X``.
    X : array, optional
        The data the estimators transform (needed only for estimators).

    Returns
    -------
    Consistency
        ``mcc`` and ``r2`` matrices (m × m) and their off-diagonal means.
    """
    outs = [_output(r, X) for r in runs]
    if len(outs) < 2:
        raise ValueError(f"consistency compares runs: give at least 2, got {len(outs)}")
    shapes = {h.shape for h in outs}
    if len(shapes) > 1:
        raise ValueError(f"the runs' outputs have different shapes {sorted(shapes)}: give outputs of the same "
                         "samples with the same number of components")
    m = len(outs)
    c, r2 = np.eye(m), np.eye(m)
    for i in range(m):
        for j in range(m):
            if i < j:
                c[i, j] = c[j, i] = mcc(outs[i], outs[j]).score
            if i != j:
                r2[i, j] = linear_r2(outs[i], outs[j])
    return Consistency(c, r2)
