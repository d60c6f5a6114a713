"""The BetaVAE score (Higgins et al., 2017), as disentanglement_lib's ``beta_vae.py`` (``beta_vae_sklearn``)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .ground_truth import GroundTruthData, Representation, random_state, representations

__all__ = ["BetaVAEScore", "beta_vae_score"]


class BetaVAEScore(NamedTuple):
    train_accuracy: float
    eval_accuracy: float


def _points(data: GroundTruthData, representation: Representation, batch_size: int, num_points: int,
            rs: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """``num_points`` (feature, label) pairs: a factor drawn at random is shared by two batches of
    ``batch_size`` draws; the feature is the mean |difference| of their representations."""
    labels = np.zeros(num_points, dtype=np.int64)

    def batches():
        for i in range(num_points):
            labels[i] = rs.randint(data.num_factors)
            factors1 = data.sample_factors(batch_size, rs)
            factors2 = data.sample_factors(batch_size, rs)
            factors2[:, labels[i]] = factors1[:, labels[i]]
            yield data.sample_observations_from_factors(factors1, rs)
            yield data.sample_observations_from_factors(factors2, rs)

    reps = iter(representations(representation, batches()))
    points = np.stack([np.abs(r1 - next(reps)).mean(axis=0) for r1 in reps])
    return points, labels


def beta_vae_score(data: GroundTruthData, representation: Representation, seed=0, batch_size: int = 64,
                   num_train: int = 10_000, num_eval: int = 5_000) -> BetaVAEScore:
    """Accuracy of a logistic regression that tells, from the mean |difference| of the representations
    of two batches, which factor the batches share.

    Parameters
    ----------
    data : GroundTruthData
        Draws factors, and observations from factors.
    representation : callable
        Observations (n, ...) → representation (n, d).
    seed : int or numpy RandomState
        Every draw comes from one ``RandomState``, in disentanglement_lib's order (its study uses 0).
    batch_size, num_train, num_eval : int
        disentanglement_lib's study settings by default (64, 10,000, 5,000).

    Returns
    -------
    BetaVAEScore(train_accuracy, eval_accuracy): 1 when the shared factor is always recognised,
    1 / num_factors by chance.
    """
    from sklearn.linear_model import LogisticRegression

    rs = random_state(seed)
    train_points, train_labels = _points(data, representation, batch_size, num_train, rs)
    model = LogisticRegression(random_state=rs).fit(train_points, train_labels)
    eval_points, eval_labels = _points(data, representation, batch_size, num_eval, rs)
    return BetaVAEScore(float(np.mean(model.predict(train_points) == train_labels)),
                        float(model.score(eval_points, eval_labels)))
