"""Sparse transitions on a discrete factor grid: how the second image of a pair is chosen.

These are the SlowVAE benchmark's transitions (Klindt et al., ICLR 2021), batched: a batch
of first-image factor indices (B, F) maps to second-image indices with whole-batch tensor
operations, never a Python loop per pair.

- :class:`LaplaceTransition` (``--data-distribution laplace``): every free factor j moves to
  a value drawn from the Laplace pmf over its grid ``0..n_j-1`` centred at its current index
  with scale ``log(n_j) / rate`` (normalised over the grid, so the step is truncated at the
  edges rather than clipped); ``rate=-1`` draws a rate uniform in [1, 10) per pair. When no
  factor moved, one free factor chosen uniformly is redrawn from its pmf without the current
  value, so every pair changes.
- :class:`UniformTransition` (``--data-distribution uniform``): ``k`` distinct free factors
  (``k=-1``: uniform in 1..number of free factors, per pair) each move to another value,
  uniform over the rest of their grid.

Free factors are the non-categorical factors with at least two values; categorical factors
(e.g. shape) always keep their value. The original's uniform transition could also change
categorical factors; here they are fixed in both transitions.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import ClicaError

__all__ = ["laplace_pmf", "LaplaceTransition", "UniformTransition", "make_transition"]

RANDOM_RATE = (1.0, 10.0)  # rate=-1: uniform in this range, per pair (the original)


def laplace_pmf(start: torch.Tensor, size: int, rate: torch.Tensor | float) -> torch.Tensor:
    """(B, size) probabilities of the next index on a grid of ``size`` values, for current indices
    ``start`` (B,): ∝ exp(-|x - start| · rate / log(size)), normalised over the grid. (numpy's exp:
    torch's float64 exp stalls on a busy machine with more than one thread.)"""
    x = np.arange(size, dtype=np.float64)
    rate = np.asarray(rate, dtype=np.float64).reshape(-1, 1)
    w = np.exp(-np.abs(x - start.numpy().astype(np.float64).reshape(-1, 1)) * rate / math.log(size))
    return torch.from_numpy(w / w.sum(1, keepdims=True))


class _Transition:
    def __init__(self, sizes, categorical):
        self.sizes = torch.as_tensor(list(sizes), dtype=torch.long)
        self.free = ~torch.as_tensor(list(categorical), dtype=torch.bool) & (self.sizes > 1)
        if not self.free.any():
            raise ClicaError("no factor can change: every factor is categorical or has a single value")
        self.free_idx = self.free.nonzero().flatten()


class LaplaceTransition(_Transition):
    """Each free factor takes a truncated discrete Laplace step (see the module docstring)."""

    def __init__(self, sizes, categorical, rate: float = 1.0):
        super().__init__(sizes, categorical)
        if not (rate == -1 or rate > 0):
            raise ClicaError(f"--rate-data must be positive or -1 (a random rate per pair), got {rate}")
        self.rate = rate

    def _rates(self, b: int, generator) -> torch.Tensor:
        if self.rate != -1:
            return torch.full((b,), float(self.rate), dtype=torch.float64)
        lo, hi = RANDOM_RATE
        return lo + (hi - lo) * torch.rand(b, generator=generator, dtype=torch.float64)

    def __call__(self, codes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b = len(codes)
        rates = self._rates(b, generator)
        out = codes.clone()
        free = self.free_idx.tolist()
        pmfs = {j: laplace_pmf(codes[:, j], int(self.sizes[j]), rates) for j in free}
        for j in free:  # a loop over factors (≤ 7), each a whole batch
            out[:, j] = torch.multinomial(pmfs[j], 1, generator=generator).flatten()
        same = (out == codes).all(1)
        if same.any():
            rows = same.nonzero().flatten()
            pick = self.free_idx[torch.randint(len(free), (len(rows),), generator=generator)]
            for j in free:
                sel = rows[pick == j]
                if len(sel):
                    p = pmfs[j][sel].clone()
                    p[torch.arange(len(sel)), codes[sel, j]] = 0
                    out[sel, j] = torch.multinomial(p, 1, generator=generator).flatten()
        return out


class UniformTransition(_Transition):
    """``k`` free factors move to another value, uniform over their grid (see the module docstring)."""

    def __init__(self, sizes, categorical, k: int = -1):
        super().__init__(sizes, categorical)
        n_free = len(self.free_idx)
        if not (k == -1 or 1 <= k <= n_free):
            raise ClicaError(f"--data-k must be -1 (random) or 1..{n_free} (the factors that can change), got {k}")
        self.k = k

    def __call__(self, codes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, f = codes.shape
        n_free = len(self.free_idx)
        k = (torch.randint(1, n_free + 1, (b, 1), generator=generator) if self.k == -1
             else torch.full((b, 1), self.k))
        keys = torch.rand(b, f, generator=generator).masked_fill(~self.free, 2.0)
        rank = keys.argsort(1).argsort(1)  # each free factor's position in a random order per pair
        change = rank < k
        sizes = self.sizes.expand(b, f)
        step = 1 + torch.minimum((torch.rand(b, f, generator=generator) * (sizes - 1)).long(), sizes - 2)
        return torch.where(change, (codes + step) % sizes, codes)


def make_transition(distribution: str, sizes, categorical, rate: float = 1.0, k: int = -1) -> _Transition:
    """The transition that ``--data-distribution`` names."""
    if distribution == "laplace":
        return LaplaceTransition(sizes, categorical, rate)
    if distribution == "uniform":
        return UniformTransition(sizes, categorical, k)
    raise ClicaError(f"--data-distribution must be laplace or uniform, got {distribution!r}")
