"""Every generator-free metric of a representation against factors at once, on a train/test split of
the rows (what ``clica score`` and ``clica kitti --evaluate`` report)."""

from __future__ import annotations

import math

from ._arrays import paired
from .dci import dci
from .mcc import mcc
from .mig import mig
from .modularity import explicitness, modularity
from .r2 import linear_fit
from .sap import sap

__all__ = ["GENERATOR_FREE", "KEYS", "split", "score"]

GENERATOR_FREE = ("mcc", "r2", "mig", "dci", "sap", "modularity")
# the keys each metric adds to the result
KEYS = {
    "mcc": ("mcc",),
    "r2": ("r2",),
    "mig": ("mig",),
    "dci": ("dci_disentanglement", "dci_completeness", "dci_informativeness_train", "dci_informativeness_test"),
    "sap": ("sap",),
    "modularity": ("modularity", "explicitness_train", "explicitness_test"),
}


def split(n: int, train_fraction: float) -> int:
    """Rows in the train split, as disentanglement_lib's ``split_train_test``.

    Parameters
    ----------
    n : int
        Rows in all.
    train_fraction : float in (0, 1)

    Returns
    -------
    int: ⌈n · train_fraction⌉, refused unless both splits keep rows (at least 2 to train on).
    """
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be between 0 and 1, got {train_fraction}")
    n_train = math.ceil(n * train_fraction)
    if n_train < 2 or n_train >= n:
        raise ValueError(f"{n} samples with train fraction {train_fraction} leave {n_train} for training "
                         f"and {n - n_train} for testing: both splits need samples")
    return n_train


def score(codes, factors, metrics=GENERATOR_FREE, train_fraction: float = 0.8, num_bins: int = 20, seed=0,
          dci_estimator: str = "gbt") -> dict:
    """Score a representation against ground-truth factors by the chosen metrics.

    The first ⌈N · train_fraction⌉ rows are the train split, the rest the test split. MIG and
    Modularity use the train split; DCI, SAP and Explicitness fit on the train split and score on
    both (as disentanglement_lib); linear R² fits its affine map on the train split and scores the
    test split; MCC (nothing fitted) uses all rows.

    Parameters
    ----------
    codes : (N, m) array
        The representation, samples × dimensions.
    factors : (N, k) array
        The ground-truth factors; for MIG, DCI, SAP and Modularity/Explicitness a column with more
        than ``num_bins`` distinct values is binned by a histogram.
    metrics : iterable of str
        Names from :data:`GENERATOR_FREE`.
    train_fraction : float
    num_bins : int
    seed : int or None
        ``random_state`` of the DCI and SAP classifiers.
    dci_estimator : {"gbt", "hist"}
        See :func:`clica.metrics.dci`.

    Returns
    -------
    dict with the :data:`KEYS` of the chosen metrics (floats), ``n_train`` and ``n_test``.
    """
    unknown = [m for m in metrics if m not in GENERATOR_FREE]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(GENERATOR_FREE)}")
    codes, factors = paired(codes, factors)
    n_train = split(len(codes), train_fraction)
    train, test = (codes[:n_train], factors[:n_train]), (codes[n_train:], factors[n_train:])
    out = {}
    if "mcc" in metrics:
        if codes.shape[1] < factors.shape[1]:
            raise ValueError(f"MCC matches each factor to its own code: it needs at least as many codes as "
                             f"factors ({factors.shape[1]}), got {codes.shape[1]}")
        out["mcc"] = mcc(factors, codes).score
    if "r2" in metrics:
        out["r2"] = linear_fit(factors, codes, n_train=n_train).r2
    if "mig" in metrics:
        out["mig"] = mig(*train, num_bins=num_bins)
    if "dci" in metrics:
        d = dci(*train, *test, estimator=dci_estimator, seed=seed, num_bins=num_bins)
        out.update(zip(KEYS["dci"], d[:4]))
    if "sap" in metrics:
        out["sap"] = sap(*train, *test, seed=seed, num_bins=num_bins)
    if "modularity" in metrics:
        out["modularity"] = modularity(*train, num_bins=num_bins)
        out["explicitness_train"], out["explicitness_test"] = explicitness(*train, *test, num_bins=num_bins)
    out = {k: float(v) for k, v in out.items()}
    out.update(n_train=n_train, n_test=len(codes) - n_train)
    return out
