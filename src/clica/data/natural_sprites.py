"""Natural Sprites (Klindt et al., ICLR 2021): sprites that move as objects in natural videos do.

The published file ``downscale_keepaspect.csv`` (Zenodo record 3948069) lists, per YouTube-VOS
video (row: ``id, category_id, frame, frame, ...``), each frame's objects as a Python literal list
of ``[y, x, area]`` (pixels of the 64-px downscaled frame; an empty entry for an absent object).
As the SlowVAE code builds the dataset:

- a pair is one object in two consecutive frames; pairs whose area in either frame lies outside
  that frame's 5 %–95 % quantiles are dropped;
- each pair is rendered as a white sprite on black (spriteworld's shapes and renderer: a polygon
  drawn at 5× size, Lanczos-resized to 64×64, flipped vertically): x = x/64, y = y/64, scale =
  √(area)/64 from the video, and a shape (square, triangle, star_4, spoke_4) and an angle (40
  values, 0°–351°) drawn uniformly per pair and shared by its two frames;
- ``natural_discrete``: x, y and area are each replaced by the nearest centre of a histogram of 32,
  32 and 6 bins over all their values.

The scored factors are x, y, scale, angle (degrees) and shape (categorical). Frames are virtual:
index ((pair · 2 + frame) · 4 + shape) · 40 + angle; the parsed file is read as data only
(:func:`ast.literal_eval` accepts literals, never code).
"""

from __future__ import annotations

import ast
import csv
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import ClicaError

__all__ = ["CSV_NAME", "URL", "NaturalSprites", "read_pairs", "resolve_csv_path", "sprite_vertices"]

CSV_NAME = "downscale_keepaspect.csv"
URL = "https://zenodo.org/record/3948069/files/downscale_keepaspect.csv"
DEFAULT_DIR = "data/natural_sprites"
SHAPES = ("square", "triangle", "star_4", "spoke_4")
ANGLES = np.linspace(0, 360, 40, endpoint=False).astype(int)
N_SHAPES, N_ANGLES = len(SHAPES), len(ANGLES)
AREA_FILTER = 0.1     # the fraction of area outliers dropped (half at each end), per frame
DISCRETE_BINS = (32, 32, 6)
ANTI_ALIASING = 5


def _polar(r, theta):
    return r * np.stack([np.cos(theta), np.sin(theta)], -1)


def _shape_paths() -> dict[str, np.ndarray]:
    """spriteworld's vertices for the four shapes, each of area 1."""
    def polygon(n, theta_0):
        t = 2 * np.pi / n
        return _polar(1.0, np.arange(n) * t + theta_0) / np.sqrt(n * np.sin(t / 2) * np.cos(t / 2))

    def star(n, theta_0, height=1.0):
        t = 2 * np.pi / n
        path = np.empty((2 * n, 2))
        path[0::2] = _polar(1.0, np.arange(n) * t + theta_0)
        path[1::2] = _polar(1 + height, (np.arange(n) + 0.5) * t + theta_0)
        return path / np.sqrt((1 + height) * n * np.sin(t / 2))

    def spokes(n, theta_0, height=1.0):
        t = 2 * np.pi / n
        vertex = _polar(1.0, np.arange(n) * t + theta_0)
        before = _polar(height, (np.arange(n) - 0.5) * t + theta_0)
        after = _polar(height, (np.arange(n) + 0.5) * t + theta_0)
        path = np.stack([before + vertex, vertex, after + vertex], 1).reshape(-1, 2)
        return path / np.sqrt(n * np.sin(t / 2) * (2 + np.cos(t / 2)))

    q = np.pi / 4
    return {"square": polygon(4, q), "triangle": polygon(3, np.pi / 2), "star_4": star(4, q), "spoke_4": spokes(4, q)}


PATHS = _shape_paths()


def sprite_vertices(shape: str, x: float, y: float, scale: float, angle: float) -> np.ndarray:
    """Vertices in the unit square (y up): the shape scaled, rotated by ``angle`` degrees, moved to (x, y)."""
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return PATHS[shape] * scale @ rot.T + np.array([x, y])


def render(shape: str, x: float, y: float, scale: float, angle: float) -> np.ndarray:
    """A 64×64 uint8 image of a white sprite on black, as spriteworld's PIL renderer draws it."""
    from PIL import Image, ImageDraw

    size = 64 * ANTI_ALIASING
    canvas = Image.new("L", (size, size))
    ImageDraw.Draw(canvas).polygon([tuple(v) for v in size * sprite_vertices(shape, x, y, scale, angle)], fill=255)
    return np.flipud(np.asarray(canvas.resize((64, 64), Image.LANCZOS)))


def resolve_csv_path(data_dir: str | os.PathLike | None = None) -> Path:
    """``DIR/downscale_keepaspect.csv`` (``data_dir`` may also name the file; None: ``$CLICA_DATA_DIR``, else
    ``data/natural_sprites``), or a one-line error naming the file and where it is published."""
    base = Path(data_dir) if data_dir else Path(os.environ.get("CLICA_DATA_DIR") or DEFAULT_DIR)
    path = base if base.is_file() else base / CSV_NAME
    if not path.is_file():
        raise ClicaError(f"Natural Sprites file not found: {path}; download {CSV_NAME} from {URL} and pass "
                         f"--data-dir DIR (or set CLICA_DATA_DIR=DIR)")
    return path


def read_pairs(path: Path) -> np.ndarray:
    """(n, 2, 3) float64: (y, x, area) of each object in two consecutive frames, as the SlowVAE code pairs them."""
    pairs = []
    with open(path, newline="") as fh:
        rows = csv.reader(fh)
        next(rows, None)
        for line, row in enumerate(rows, start=2):
            frames = []
            for cell in row[2:]:
                try:
                    objects = ast.literal_eval(cell) if cell else None
                except (ValueError, SyntaxError):
                    raise ClicaError(f"{path} line {line} is not Natural Sprites data as published ({URL}): "
                                     f"{cell[:40]!r} is not a list of [y, x, area]") from None
                frames.append(objects)
            for a, b in zip(frames, frames[1:]):
                if a and b:
                    pairs += [(u[:3], v[:3]) for u, v in zip(a, b) if u and v]
    out = np.asarray(pairs, dtype=np.float64) if pairs else np.zeros((0, 2, 3))
    if out.ndim != 3 or out.shape[1:] != (2, 3) or not np.isfinite(out).all():
        raise ClicaError(f"{path} is not Natural Sprites data as published ({URL}): objects must be [y, x, area]")
    if not len(out):
        raise ClicaError(f"{path} holds no object seen in two consecutive frames ({URL})")
    return out


class NaturalSprites:
    """Natural Sprites pairs rendered on the fly, with the interface of :class:`clica.data.kitti_masks.KittiMasks`."""

    title = "Natural Sprites"
    channels = 3
    factor_names = ("x", "y", "scale", "angle", "shape")
    categorical = (False, False, False, False, True)

    def __init__(self, pairs: np.ndarray, natural_discrete: bool = False, source: Path | None = None):
        self.source = source
        area = pairs[:, :, 2]
        lo, hi = np.quantile(area, AREA_FILTER / 2, axis=0), np.quantile(area, 1 - AREA_FILTER / 2, axis=0)
        pairs = pairs[((area >= lo) & (area <= hi)).all(1)]
        if natural_discrete:
            pairs = pairs.copy()
            for col, bins in zip((1, 0, 2), DISCRETE_BINS):  # x, y, area
                _, edges = np.histogram(pairs[:, :, col], bins=bins)
                centres = (edges[:-1] + edges[1:]) / 2
                pairs[:, :, col] = centres[np.abs(pairs[:, :, col, None] - centres).argmin(-1)]
        # per frame: x, y, scale in the unit square
        self.values = np.stack([pairs[:, :, 1] / 64, pairs[:, :, 0] / 64, np.sqrt(pairs[:, :, 2]) / 64], -1)
        self.factor_sizes = tuple(len(np.unique(self.values[:, :, j])) for j in range(3)) + (N_ANGLES, N_SHAPES)
        self.latents = _Latents(self)

    @classmethod
    def from_dir(cls, data_dir: str | os.PathLike | None = None, natural_discrete: bool = False) -> "NaturalSprites":
        path = resolve_csv_path(data_dir)
        try:
            pairs = read_pairs(path)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ClicaError(f"cannot read {path} as Natural Sprites (published at {URL}): {exc}") from None
        return cls(pairs, natural_discrete, path)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def n_frames(self) -> int:
        return len(self) * 2 * N_SHAPES * N_ANGLES

    def describe(self) -> str:
        return f"Natural Sprites: {len(self)} pairs, factors " + ", ".join(
            f"{n} {s}" for n, s in zip(self.factor_names, self.factor_sizes))

    @staticmethod
    def _split(frame_idx) -> tuple[np.ndarray, ...]:
        f = np.asarray(frame_idx.cpu() if torch.is_tensor(frame_idx) else frame_idx, dtype=np.int64)
        rest, angle = np.divmod(f, N_ANGLES)
        rest, shape = np.divmod(rest, N_SHAPES)
        pair, which = np.divmod(rest, 2)
        return pair, which, shape, angle

    def pair_indices(self, idx: torch.Tensor, generator: torch.Generator | None = None):
        """Frames (first, second) of pairs ``idx``, each pair with a shape and an angle drawn uniformly."""
        shape = torch.randint(N_SHAPES, idx.shape, generator=generator)
        angle = torch.randint(N_ANGLES, idx.shape, generator=generator)
        first = (idx * 2 * N_SHAPES + shape) * N_ANGLES + angle
        return first, first + N_SHAPES * N_ANGLES

    def images(self, frame_idx, device=None) -> torch.Tensor:
        """Float images (n, 3, 64, 64) in [0, 1], rendered."""
        pair, which, shape, angle = self._split(frame_idx)
        x, y, scale = self.values[pair, which].T
        out = np.stack([render(SHAPES[s], *v, ANGLES[a]) for s, a, v in zip(shape, angle, zip(x, y, scale))])
        x = torch.from_numpy(np.repeat(out[:, None], 3, 1).astype(np.float32) / 255)
        return x.to(device) if device is not None else x

    def sample_pairs(self, idx: torch.Tensor, generator: torch.Generator | None = None, device=None):
        first, second = self.pair_indices(idx, generator)
        return self.images(first, device), self.images(second, device), self.latents[first], self.latents[second]

    def eval_indices(self, n: int = 10_000, seed: int = 0) -> np.ndarray:
        """``n`` first frames of pairs drawn uniformly, each with a shape and an angle drawn uniformly."""
        rs = np.random.RandomState(seed)
        pair = rs.randint(0, len(self), size=n)
        return (pair * 2 * N_SHAPES + rs.randint(N_SHAPES, size=n)) * N_ANGLES + rs.randint(N_ANGLES, size=n)


class _Latents:
    """``dataset.latents[frames]``: (n, 5) float32 x, y, scale, angle (degrees), shape index, made on demand."""

    def __init__(self, dataset: NaturalSprites):
        self.dataset = dataset

    def __getitem__(self, frame_idx) -> torch.Tensor:
        pair, which, shape, angle = self.dataset._split(frame_idx)
        z = np.column_stack([self.dataset.values[pair, which], ANGLES[angle], shape])
        return torch.from_numpy(z.astype(np.float32))
