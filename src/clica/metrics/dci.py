"""DCI: disentanglement, completeness and informativeness (Eastwood and Williams, 2018), as
disentanglement_lib's ``dci.py`` (gradient-boosted trees, one classifier per factor)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._arrays import paired, require_varying
from .discrete import discrete_factors

__all__ = ["DCIResult", "dci", "importance_matrix", "disentanglement", "completeness", "ESTIMATORS"]

ESTIMATORS = ("gbt", "hist")


class DCIResult(NamedTuple):
    disentanglement: float
    completeness: float
    informativeness_train: float   # mean over factors of the classifier's accuracy on the train split
    informativeness_test: float    # the same on the test split
    importance: np.ndarray         # (codes, factors) feature importances


def _hist_importances(model, n_features: int) -> np.ndarray:
    """Split gains per feature, summed over every tree of a fitted HistGradientBoostingClassifier and
    normalised to sum 1 (it has no ``feature_importances_``)."""
    gains = np.zeros(n_features)
    for nodes in (p.nodes for stage in model._predictors for p in stage):
        split = ~nodes["is_leaf"].astype(bool)
        np.add.at(gains, nodes["feature_idx"][split], nodes["gain"][split])
    return gains / gains.sum() if gains.sum() > 0 else gains


def _classifier(estimator: str, seed):
    if estimator == "gbt":
        from sklearn.ensemble import GradientBoostingClassifier

        return GradientBoostingClassifier(random_state=seed)
    if estimator == "hist":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(early_stopping=False, random_state=seed)
    raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")


def importance_matrix(codes_train, factors_train, codes_test, factors_test, estimator: str = "gbt",
                      seed=None) -> tuple[np.ndarray, float, float]:
    """Fit one classifier per factor on all codes and read off how much each code matters for it.

    Parameters
    ----------
    codes_train, factors_train : (N, m) and (N, k) arrays
        Checked arrays with discrete factors (see :func:`dci`); the classifiers are fitted on them.
    codes_test, factors_test : (M, m) and (M, k) arrays
    estimator : {"gbt", "hist"}
        See :func:`dci`.
    seed : int, numpy RandomState or None
        The classifiers' ``random_state``.

    Returns
    -------
    (importance, train_accuracy, test_accuracy)
        The (m, k) absolute feature importances and the accuracies averaged over factors.
    """
    importance = np.zeros((codes_train.shape[1], factors_train.shape[1]))
    accuracy = np.zeros((factors_train.shape[1], 2))
    for j in range(factors_train.shape[1]):
        model = _classifier(estimator, seed).fit(codes_train, factors_train[:, j])
        importance[:, j] = np.abs(model.feature_importances_ if estimator == "gbt"
                                  else _hist_importances(model, codes_train.shape[1]))
        accuracy[j] = (np.mean(model.predict(codes_train) == factors_train[:, j]),
                       np.mean(model.predict(codes_test) == factors_test[:, j]))
    return importance, float(accuracy[:, 0].mean()), float(accuracy[:, 1].mean())


def _weighted_one_minus_entropy(importance: np.ndarray) -> float:
    """Σ_i ρ_i (1 − H_K(P_i)) over the rows i of ``importance``: P_i its row normalised (plus 1e-11 per
    entry, as disentanglement_lib), H_K the entropy in base K = the number of columns, ρ_i the row's share
    of the total importance (equal shares when all importances are 0)."""
    p = importance + 1e-11
    p = p / p.sum(axis=1, keepdims=True)
    h = -(p * np.log(p)).sum(axis=1) / np.log(importance.shape[1])
    total = importance if importance.sum() > 0 else np.ones_like(importance)
    return float(np.sum((1.0 - h) * total.sum(axis=1) / total.sum()))


def disentanglement(importance: np.ndarray) -> float:
    """DCI disentanglement: does each code matter for one factor only?

    Parameters
    ----------
    importance : (m, k) array
        Importance of each code (row) for each factor (column), from :func:`importance_matrix`.

    Returns
    -------
    float in [0, 1]: 1 − the entropy of each code's importances over factors, weighted by the code's share.
    """
    return _weighted_one_minus_entropy(importance)


def completeness(importance: np.ndarray) -> float:
    """DCI completeness: is each factor captured by one code only?

    Parameters
    ----------
    importance : (m, k) array
        As :func:`disentanglement`.

    Returns
    -------
    float in [0, 1]: 1 − the entropy of each factor's importances over codes, weighted by the factor's share.
    """
    return _weighted_one_minus_entropy(importance.T)


def dci(codes_train, factors_train, codes_test, factors_test, estimator: str = "gbt", seed=None,
        num_bins: int = 20) -> DCIResult:
    """DCI scores of a representation against ground-truth factors.

    One classifier per factor predicts it from all codes; its feature importances (rows: codes,
    columns: factors) give disentanglement and completeness, its accuracies the informativeness.

    Parameters
    ----------
    codes_train, factors_train : (N, m) and (N, k) arrays, samples × dimensions
        The split the classifiers are fitted on.
    codes_test, factors_test : (M, m) and (M, k) arrays
        The split the test informativeness is scored on.
    estimator : {"gbt", "hist"}
        ``"gbt"``: ``GradientBoostingClassifier()`` with scikit-learn's defaults (disentanglement_lib's
        choice; slow). ``"hist"``: ``HistGradientBoostingClassifier`` with summed split gains as the
        importances: much faster, not the reference's numbers (see docs/metrics.md).
    seed : int, numpy RandomState or None
        The classifiers' ``random_state`` (disentanglement_lib leaves it ``None``).
    num_bins : int
        Factors with more distinct values than this are binned by a histogram (edges from the train split).

    Returns
    -------
    DCIResult
    """
    codes_train, factors_train = paired(codes_train, factors_train, "codes_train", "factors_train")
    codes_test, factors_test = paired(codes_test, factors_test, "codes_test", "factors_test")
    if codes_test.shape[1] != codes_train.shape[1] or factors_test.shape[1] != factors_train.shape[1]:
        raise ValueError("the train and test splits need the same dimensions")
    if min(codes_train.shape[1], factors_train.shape[1]) < 2:
        raise ValueError("DCI needs at least 2 codes and 2 factors (its entropies are in base codes and factors)")
    factors_train, factors_test = discrete_factors(factors_train, factors_test, num_bins)
    require_varying("factors_train", factors_train)
    importance, train, test = importance_matrix(codes_train, factors_train, codes_test, factors_test,
                                                estimator, seed)
    return DCIResult(disentanglement(importance), completeness(importance), train, test, importance)
