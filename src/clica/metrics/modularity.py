"""Modularity and Explicitness (Ridgeway and Mozer, 2018), as disentanglement_lib's
``modularity_explicitness.py``."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._arrays import paired, require_varying
from .discrete import discrete_factors, histogram_discretize, mutual_information

__all__ = ["modularity", "Explicitness", "explicitness"]


def modularity(codes, factors, num_bins: int = 20) -> float:
    """How much each code depends on one factor only: 1 − (its squared MI with the other factors) over
    (k − 1) × its largest squared MI, averaged over codes (a code with no information scores 0).

    Parameters
    ----------
    codes : (N, m) array
        The representation, samples × dimensions, binned by a ``num_bins``-bin histogram.
    factors : (N, k) array
        The ground-truth factors (k ≥ 2); columns with more than ``num_bins`` values are binned.
    num_bins : int

    Returns
    -------
    float in [0, 1].
    """
    codes, factors = paired(codes, factors)
    factors, _ = discrete_factors(factors, num_bins=num_bins)
    require_varying("factors", factors)
    if factors.shape[1] < 2:
        raise ValueError("factors needs at least 2 dimensions: modularity compares a code's information "
                         "about one factor with that about the others")
    squared = mutual_information(histogram_discretize(codes, num_bins), factors) ** 2
    top = squared.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 1.0 - (squared.sum(axis=1) - top) / (top * (squared.shape[1] - 1.0))
    return float(np.mean(np.where(top == 0.0, 0.0, score)))


class Explicitness(NamedTuple):
    train: float   # mean over factors of the one-vs-rest ROC AUC on the train split
    test: float    # the same on the test split


def explicitness(codes_train, factors_train, codes_test, factors_test, num_bins: int = 20) -> Explicitness:
    """How well a logistic regression on all codes predicts each factor: the mean over factors of the
    macro one-vs-rest ROC AUC of its class probabilities.

    The codes are standardised by the train split's mean and standard deviation; one
    ``LogisticRegression()`` (scikit-learn's defaults) per factor is fitted on the train split.
    Classes absent from a split (or the only class in it) have no AUC there and are left out of
    its mean, where disentanglement_lib stops with an error.

    Parameters
    ----------
    codes_train, factors_train : (N, m) and (N, k) arrays
    codes_test, factors_test : (M, m) and (M, k) arrays
    num_bins : int
        Factors with more distinct values are binned (edges from the train split).

    Returns
    -------
    Explicitness(train, test), each in [0, 1] (0.5 for codes that carry nothing).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    codes_train, factors_train = paired(codes_train, factors_train, "codes_train", "factors_train")
    codes_test, factors_test = paired(codes_test, factors_test, "codes_test", "factors_test")
    factors_train, factors_test = discrete_factors(factors_train, factors_test, num_bins)
    require_varying("factors_train", factors_train)
    mean, std = codes_train.mean(axis=0), codes_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)   # a constant code: disentanglement_lib divides by 0 (NaN)

    def auc(clf, x, y):
        truth = (y[:, None] == clf.classes_[None, :]).astype(int)
        present = (truth.min(axis=0) == 0) & (truth.max(axis=0) == 1)
        return roc_auc_score(truth[:, present], clf.predict_proba(x)[:, present])

    x_train, x_test = (codes_train - mean) / std, (codes_test - mean) / std
    scores = []
    for y_train, y_test in zip(factors_train.T, factors_test.T):
        clf = LogisticRegression().fit(x_train, y_train)
        scores.append((auc(clf, x_train, y_train), auc(clf, x_test, y_test)))
    train, test = np.mean(scores, axis=0)
    return Explicitness(float(train), float(test))
