"""The FactorVAE score (Kim and Mnih, 2018), as disentanglement_lib's ``factor_vae.py``."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .ground_truth import GroundTruthData, Representation, random_state, representations

__all__ = ["FactorVAEScore", "factor_vae_score"]


class FactorVAEScore(NamedTuple):
    train_accuracy: float
    eval_accuracy: float
    num_active_dims: int   # dimensions whose standard deviation reaches the pruning threshold


def _votes(data: GroundTruthData, representation: Representation, batch_size: int, num_points: int,
           rs: np.random.RandomState, global_variances: np.ndarray, active: np.ndarray) -> np.ndarray:
    """(factors, active dimensions) counts: for each of ``num_points`` batches with one factor held fixed,
    the active dimension of least variance relative to its global variance."""
    fixed = np.zeros(num_points, dtype=np.int64)

    def batches():
        for i in range(num_points):
            fixed[i] = rs.randint(data.num_factors)
            factors = data.sample_factors(batch_size, rs)
            factors[:, fixed[i]] = factors[0, fixed[i]]
            yield data.sample_observations_from_factors(factors, rs)

    local = np.stack([np.var(r, axis=0, ddof=1) for r in representations(representation, batches())])
    argmin = np.argmin(local[:, active] / global_variances[active], axis=1)
    votes = np.zeros((data.num_factors, int(active.sum())), dtype=np.int64)
    np.add.at(votes, (fixed, argmin), 1)
    return votes


def factor_vae_score(data: GroundTruthData, representation: Representation, seed=0, batch_size: int = 64,
                     num_train: int = 10_000, num_eval: int = 5_000, num_variance_estimate: int = 10_000,
                     prune_threshold: float = 0.05) -> FactorVAEScore:
    """Accuracy of the majority-vote classifier that tells, from the dimension of least normalised
    variance in a batch with one factor fixed, which factor was fixed.

    Parameters
    ----------
    data : GroundTruthData
    representation : callable
        Observations (n, ...) → representation (n, d).
    seed : int or numpy RandomState
        Every draw comes from one ``RandomState``, in disentanglement_lib's order (its study uses 0).
    batch_size, num_train, num_eval, num_variance_estimate : int
        disentanglement_lib's study settings by default (64, 10,000, 5,000, 10,000).
    prune_threshold : float
        Dimensions whose global standard deviation is below it (collapsed ones) take no part
        (the study's ``prune_dims.threshold``, 0.05).

    Returns
    -------
    FactorVAEScore(train_accuracy, eval_accuracy, num_active_dims); the accuracies are 0 when no
    dimension is active.
    """
    rs = random_state(seed)
    factors = data.sample_factors(num_variance_estimate, rs)
    observations = data.sample_observations_from_factors(factors, rs)
    global_variances = np.var(next(representations(representation, iter([observations]))), axis=0, ddof=1)
    active = np.sqrt(global_variances) >= prune_threshold
    if not active.any():
        return FactorVAEScore(0.0, 0.0, 0)
    train = _votes(data, representation, batch_size, num_train, rs, global_variances, active)
    classifier = np.argmax(train, axis=0)

    def accuracy(votes):
        return float(votes[classifier, np.arange(votes.shape[1])].sum() / votes.sum())

    evaluation = _votes(data, representation, batch_size, num_eval, rs, global_variances, active)
    return FactorVAEScore(accuracy(train), accuracy(evaluation), int(active.sum()))
