"""SAP, the separated attribute predictability score (Kumar et al., 2018), as disentanglement_lib's
``sap_score.py``."""

from __future__ import annotations

import numpy as np

from ._arrays import paired, require_varying
from .discrete import discrete_factors

__all__ = ["sap_matrix", "sap"]


def sap_matrix(codes_train, factors_train, codes_test, factors_test, continuous_factors: bool = False,
               seed=None) -> np.ndarray:
    """(codes, factors) predictability of each factor from each single code.

    Discrete factors (the default): the test accuracy of ``LinearSVC(C=0.01, class_weight="balanced")``
    fitted on the train split, one per (code, factor) pair. Continuous factors: the squared
    correlation on the train split (0 for a code of variance ≤ 1e-12); the test split is unused.

    Parameters
    ----------
    codes_train, factors_train : (N, m) and (N, k) arrays
        Checked arrays (see :func:`sap`); discrete factors unless ``continuous_factors``.
    codes_test, factors_test : (M, m) and (M, k) arrays
    continuous_factors : bool
    seed : int, numpy RandomState or None
        The classifiers' ``random_state``.

    Returns
    -------
    (m, k) array of scores in [0, 1].
    """
    if continuous_factors:
        c = codes_train - codes_train.mean(axis=0)
        y = factors_train - factors_train.mean(axis=0)
        n = len(c) - 1
        var_c, var_y = (c ** 2).sum(axis=0) / n, (y ** 2).sum(axis=0) / n
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = (c.T @ y / n) ** 2 / (var_c[:, None] * var_y[None, :])
        return np.where(var_c[:, None] > 1e-12, r2, 0.0)
    from sklearn.svm import LinearSVC

    scores = np.zeros((codes_train.shape[1], factors_train.shape[1]))
    for i in range(scores.shape[0]):
        for j in range(scores.shape[1]):
            clf = LinearSVC(C=0.01, class_weight="balanced", random_state=seed)
            clf.fit(codes_train[:, i:i + 1], factors_train[:, j])
            scores[i, j] = np.mean(clf.predict(codes_test[:, i:i + 1]) == factors_test[:, j])
    return scores


def sap(codes_train, factors_train, codes_test, factors_test, continuous_factors: bool = False, seed=None,
        num_bins: int = 20) -> float:
    """Mean over factors of the gap between the two codes that predict it best, one code at a time.

    Parameters
    ----------
    codes_train, factors_train : (N, m) and (N, k) arrays, samples × dimensions (m ≥ 2)
    codes_test, factors_test : (M, m) and (M, k) arrays
    continuous_factors : bool
        Score by squared correlation instead of classification (disentanglement_lib's default: False).
    seed : int, numpy RandomState or None
        The classifiers' ``random_state`` (disentanglement_lib leaves it ``None``).
    num_bins : int
        For discrete scoring, factors with more distinct values are binned (edges from the train split).

    Returns
    -------
    float: mean_j (s_(1)j − s_(2)j) over the sorted column j of :func:`sap_matrix`.
    """
    codes_train, factors_train = paired(codes_train, factors_train, "codes_train", "factors_train")
    codes_test, factors_test = paired(codes_test, factors_test, "codes_test", "factors_test")
    if codes_train.shape[1] < 2:
        raise ValueError("codes needs at least 2 dimensions: SAP is a gap between the two best codes")
    if not continuous_factors:
        factors_train, factors_test = discrete_factors(factors_train, factors_test, num_bins)
    require_varying("factors_train", factors_train)
    s = np.sort(sap_matrix(codes_train, factors_train, codes_test, factors_test, continuous_factors, seed), axis=0)
    return float(np.mean(s[-1] - s[-2]))
