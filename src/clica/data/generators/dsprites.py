"""Procedural dSprites on the published factor grid, written as a dSprites-format ``.npz``.

These follow the published factor grid and file layout but are not the published images: the sprites
are drawn here (a square, an ellipse and a heart as implicit shapes, binary, 64 × 64), so sizes, outlines
and the position range differ from DeepMind's release.

Layout, as published: ``imgs`` uint8 ``(N, 64, 64)`` of 0/1, ``latents_classes`` int64 ``(N, 6)`` and
``latents_values`` float64 ``(N, 6)`` over (color, shape, scale, orientation, posX, posY), row-major
(posY fastest). Values: color 1; shape 1, 2, 3 (square, ellipse, heart); scale linspace(0.5, 1, 6);
orientation linspace(0, 2π, 40) (so its first and last values draw the same sprite, as in the release);
posX, posY linspace(0, 1, 32). The release's pickled ``metadata`` dict is not written: a loader takes
the factor sizes from ``latents_classes``.

Drawing is vectorised: a sprite's centre moves 1.25 px per position step, so its sub-pixel phase takes
4 values per axis; each (shape, scale, orientation) is rasterised once per phase pair as a small patch,
and all 32 × 32 positions are gathered from sliding windows over the padded patches in one indexing step.
"""

from __future__ import annotations

import math
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...runs import atomic_path
from ..registry import SPECS
from .grid import FactorGrid, SubGrid

FILE_NAME = SPECS["dsprites"].files[0]   # the published name, as the loader looks for it
SHAPES = ("square", "ellipse", "heart")
GRID = FactorGrid("dSprites", ("color", "shape", "scale", "orientation", "posX", "posY"), (
    np.array([1.0]), np.array([1.0, 2.0, 3.0]), np.linspace(0.5, 1.0, 6), np.linspace(0.0, 2 * np.pi, 40),
    np.linspace(0.0, 1.0, 32), np.linspace(0.0, 1.0, 32)))
SIZE = 64
RADIUS = 12.0                    # px: the farthest outline point from the centre at scale 1
CENTRE_RANGE = (12.625, 51.375)  # px: the centre at position 0 and 1 (pixel i spans [i, i + 1]); 1.25 px a step
_HALF = math.ceil(RADIUS) + 1    # a patch spans the centre's pixel ± _HALF


@lru_cache(maxsize=None)
def _heart_frame() -> tuple[float, float]:
    """(centre y, 1 / radius) that put the heart curve's bounding-box centre at 0 and its outline within 1."""
    x, y = np.meshgrid(np.linspace(-1.5, 1.5, 1201), np.linspace(-1.5, 1.5, 1201))
    inside = _heart(x, y)
    ys, xs = y[inside], x[inside]
    cy = (ys.min() + ys.max()) / 2
    return float(cy), float(1.0 / np.sqrt(xs**2 + (ys - cy) ** 2).max())


def _heart(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The classic heart curve (x² + y² − 1)³ ≤ x² y³: lobes up, tip down."""
    return (x**2 + y**2 - 1) ** 3 <= x**2 * y**3


def inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether sprite-frame points (``u`` right, ``v`` up, in units of the sprite's radius) are inside."""
    if shape == 0:                                   # square, corners on the unit circle
        return np.maximum(np.abs(u), np.abs(v)) <= 1 / math.sqrt(2)
    if shape == 1:                                   # ellipse, 2 : 1
        return u**2 + (2 * v) ** 2 <= 1
    cy, k = _heart_frame()
    return _heart(u / k, v / k + cy)


def _centres(kept: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For kept position classes: the top-left pixel of each patch, the phase index, the phases."""
    lo, hi = CENTRE_RANGE
    centre = lo + (hi - lo) * GRID.values[4][kept]     # posX and posY share one grid
    base = np.floor(centre)
    phases, which = np.unique(np.round(centre - base, 6), return_inverse=True)
    return base.astype(np.int64) - _HALF, which, phases


def _patches(shape: int, scale: float, angle: float, phase_y: np.ndarray, phase_x: np.ndarray) -> np.ndarray:
    """Binary patches ``(len(phase_y), len(phase_x), P, P)`` of one sprite at each sub-pixel phase pair."""
    offsets = np.arange(2 * _HALF) - _HALF + 0.5          # pixel centres relative to the centre's pixel
    dy = (offsets[None, :] - phase_y[:, None])[:, None, :, None]   # rows: image y grows downwards
    dx = (offsets[None, :] - phase_x[:, None])[None, :, None, :]
    c, s = math.cos(angle), math.sin(angle)
    up = -dy
    u, v = dx * c + up * s, -dx * s + up * c               # rotate the image frame by −angle
    r = RADIUS * scale
    return inside(shape, u / r, v / r)


def sprite_block(shape: int, scale: float, angle: float, x: tuple, y: tuple) -> np.ndarray:
    """Every (posX, posY) image of one sprite ``(nX, nY, 64, 64)``; ``x``, ``y`` from :func:`_centres`."""
    (tx, wx, px), (ty, wy, py) = x, y
    patches = _patches(shape, scale, angle, py, px)
    p = patches.shape[-1]
    padded = np.zeros(patches.shape[:2] + (p + 2 * SIZE, p + 2 * SIZE), dtype=np.uint8)
    padded[..., SIZE:SIZE + p, SIZE:SIZE + p] = patches
    windows = np.lib.stride_tricks.sliding_window_view(padded, (SIZE, SIZE), axis=(2, 3))
    # the image with its patch at top-left (ty, tx) is the window starting at (SIZE − ty, SIZE − tx)
    return windows[wy[None, :], wx[:, None], (SIZE - ty)[None, :], (SIZE - tx)[:, None]]


def blocks(sub: SubGrid):
    """The images of ``sub`` in row-major order, one ``(nX * nY, 64, 64)`` block per (shape, scale, orientation)."""
    kc, ks, kz, ko, kx, ky = sub.kept
    x, y = _centres(kx), _centres(ky)
    for _ in kc:
        for shape in ks:
            for scale in GRID.values[2][kz]:
                for angle in GRID.values[3][ko]:
                    yield sprite_block(int(shape), float(scale), float(angle), x, y).reshape(-1, SIZE, SIZE)


def write_npz(path: str | Path, sub: SubGrid, progress=None) -> None:
    """Write ``sub`` as a dSprites-format ``.npz`` (deflated, as published), streaming, atomically."""
    n = len(sub)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
              "shape": (n, SIZE, SIZE)}
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        with zf.open("imgs.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_2_0(fh, header)
            for block in blocks(sub):
                fh.write(np.ascontiguousarray(block).tobytes())
                if progress is not None:
                    progress.update(len(block))
        for name, array in (("latents_classes", sub.classes()), ("latents_values", sub.values())):
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, array, allow_pickle=False)
