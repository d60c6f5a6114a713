"""What the BetaVAE and FactorVAE scores need: a ground-truth data generator, as disentanglement_lib's
``GroundTruthData``, and a representation function."""

from __future__ import annotations

from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from ._arrays import to_numpy

__all__ = ["GroundTruthData", "Representation", "random_state", "representations"]

# observations (n, ...) -> representation (n, d)
Representation = Callable[[np.ndarray], np.ndarray]


class GroundTruthData(Protocol):
    """A dataset whose observations can be drawn for chosen factors.

    ``sample_factors(n, rs)`` returns an (n, num_factors) array of factor values (indices in
    ``range(factors_num_values[j])`` for discrete factors); ``sample_observations_from_factors(factors,
    rs)`` returns observations (n, ...) with those factors. Both draw from the numpy ``RandomState``.
    """

    num_factors: int
    factors_num_values: Sequence[int]

    def sample_factors(self, num: int, random_state: np.random.RandomState) -> np.ndarray: ...

    def sample_observations_from_factors(self, factors: np.ndarray,
                                         random_state: np.random.RandomState) -> np.ndarray: ...


def random_state(seed) -> np.random.RandomState:
    """A ``RandomState`` from a seed, or the one given (drawn from in disentanglement_lib's order).

    Parameters
    ----------
    seed : int, numpy RandomState or None

    Returns
    -------
    numpy RandomState: ``seed`` itself when it is one, else a new one seeded with it.
    """
    return seed if isinstance(seed, np.random.RandomState) else np.random.RandomState(seed)


def representations(representation: Representation, batches: Iterator[np.ndarray],
                    chunk: int = 32) -> Iterator[np.ndarray]:
    """Each batch of observations encoded, calling ``representation`` on up to ``chunk`` batches at once.

    The batches are drawn first, so the random draws keep their order while the encoder sees larger inputs.

    Parameters
    ----------
    representation : callable
        Observations (n, ...) → representation (n, d).
    batches : iterator of arrays
        Observations, one (batch, ...) array at a time.
    chunk : int
        How many batches are encoded in one call.

    Returns
    -------
    iterator of (batch, d) arrays, one per batch, in order.
    """
    pending: list[np.ndarray] = []

    def flush():
        sizes = np.cumsum([len(b) for b in pending])[:-1]
        out = np.split(to_numpy(representation(np.concatenate(pending))), sizes)
        pending.clear()
        return out

    for batch in batches:
        pending.append(batch)
        if len(pending) == chunk:
            yield from flush()
    if pending:
        yield from flush()
