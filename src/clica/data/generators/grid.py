"""Factor grids of the benchmark datasets, and the sub-grids a ``--factor NAME=SEL`` option picks.

A published benchmark file holds every combination of its factors' values once, row-major in the
published factor order (the last factor varies fastest). A sub-grid keeps that layout over a subset of
each factor's values: the rows are still row-major over the product of the kept values, and each row's
class indices and values are the published ones (a kept orientation 8 is class 8, not 1), so a loader
that reads each factor's size from the distinct classes in the file indexes it as it indexes the full one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import ClicaError


@dataclass(frozen=True)
class FactorGrid:
    """A published factor grid: factor names and each factor's values, in the published order."""

    dataset: str
    names: tuple[str, ...]
    values: tuple[np.ndarray, ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.values)

    def select(self, specs: list[str] | None = None) -> "SubGrid":
        """The sub-grid that ``NAME=SEL`` specs keep (every value of a factor not named).

        ``SEL`` is a slice of class indices, ``START:STOP[:STEP]`` (Python's slice rules, ends optional),
        or a comma list ``I,J,K``. Bad names or selections are a one-line :class:`ClicaError`.
        """
        kept = [np.arange(n) for n in self.sizes]
        for spec in specs or []:
            name, sep, sel = spec.partition("=")
            key = _key(name)
            index = next((i for i, n in enumerate(self.names) if _key(n) == key), None)
            if not sep or index is None:
                raise ClicaError(f"--factor {spec!r}: expected NAME=SEL with NAME one of {', '.join(self.names)} "
                                 f"(the {self.dataset} factors)")
            kept[index] = _parse_selection(sel, self.sizes[index], f"--factor {spec!r}")
        return SubGrid(self, tuple(kept))


@dataclass(frozen=True)
class SubGrid:
    """The kept class indices of each factor of ``grid``; its rows are row-major over their product."""

    grid: FactorGrid
    kept: tuple[np.ndarray, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(k) for k in self.kept)

    def __len__(self) -> int:
        return int(np.prod(self.shape))

    def classes(self) -> np.ndarray:
        """``(N, n_factors)`` int64: each row's published class index of every factor, row-major."""
        mesh = np.meshgrid(*self.kept, indexing="ij")
        return np.stack([m.ravel() for m in mesh], 1).astype(np.int64)

    def values(self) -> np.ndarray:
        """``(N, n_factors)`` float64: each row's published factor values."""
        c = self.classes()
        return np.stack([v[c[:, i]] for i, v in enumerate(self.grid.values)], 1).astype(np.float64)

    def describe(self) -> str:
        """``shape 3 × scale 6 × ... = N images`` (the factors with one value are left out)."""
        parts = [f"{n} {k}" for n, k, full in zip(self.grid.names, self.shape, self.grid.sizes) if full > 1]
        return f"{' × '.join(parts)} = {len(self):,} images"


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "")


def _parse_selection(sel: str, size: int, where: str) -> np.ndarray:
    sel = sel.strip()
    try:
        if ":" in sel:
            parts = [int(p) if p.strip() else None for p in sel.split(":")]
            if len(parts) > 3 or parts[2:] == [0]:
                raise ValueError
            picked = np.arange(size)[slice(*parts)]
        else:
            picked = np.array([int(p) for p in sel.split(",")], dtype=np.int64)
    except ValueError:
        raise ClicaError(f"{where}: SEL must be START:STOP[:STEP] or I,J,K of whole numbers") from None
    if picked.size == 0:
        raise ClicaError(f"{where} keeps no value")
    if picked.min() < 0 or picked.max() >= size:
        raise ClicaError(f"{where}: class indices run from 0 to {size - 1}")
    if np.any(np.diff(picked) <= 0):
        raise ClicaError(f"{where}: list the class indices once each, in increasing order")
    return picked.astype(np.int64)
