"""The SlowVAE benchmark datasets from their published files: dSprites, 3D Shapes, MPI3D, Cars3D, SmallNORB.

Each is a complete grid of discrete factors with one 64×64 image per grid point. A
:class:`FactorDataset` holds the images memory-mapped (see :mod:`clica.data.array_files`) and
each image's factor indices; a pair is an image and a second image whose factors follow a sparse
transition (:mod:`clica.data.factor_transitions`). It has the interface of
:class:`clica.data.kitti_masks.KittiMasks` that ``clica kitti`` uses (``len``, ``n_frames``,
``pair_indices``, ``sample_pairs``, ``images``, ``eval_indices``, ``latents``, ``factor_names``), so the same
loader, training loop and MCC evaluation run on every dataset.

Published files (``--data-dir DIR`` or ``$CLICA_DATA_DIR``; defaults as the SlowVAE code; their names,
addresses and factor grids are in :mod:`clica.data.registry`, with :func:`~clica.data.registry.locate`):

- dSprites: ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``, or ``dsprites.npz`` as the SlowVAE
  code renames it (``imgs``, ``latents_classes``;
  the colour factor, constant, is dropped; shape is categorical); binary images are cached
  bit-packed, 1 bit per pixel.
- 3D Shapes: ``3dshapes.h5`` (``images``, ``labels``; label values mapped to the published grid;
  shape is categorical); needs h5py, the ``[datasets]`` extra.
- MPI3D: ``mpi3d_real.npz`` (as the original), else ``mpi3d_realistic.npz`` or ``mpi3d_toy.npz``
  (``images``; the factors follow from the index order, sizes 6, 6, 2, 3, 3, 40, 40; object
  shape is categorical).
- Cars3D: a folder of ``*.mat`` files (``im``: 128×128×3×24×4, azimuth × elevation per car),
  resized to 64×64; the car is categorical.
- SmallNORB: the six ``smallnorb-5x…-{training,testing}-{dat,cat,info}.mat`` files (the NORB
  binary format), training and testing joined, left camera, resized 96→64. As the SlowVAE code,
  the instance is a factor of the grid kept fixed in pairs (categorical, with the category) and
  left out of the scored factors (category, elevation, azimuth, lighting).
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import ClicaError
from .array_files import cache_folder, cached_array, fingerprint, npz_header, npz_member, npz_small
from .factor_transitions import make_transition
from .registry import SHAPES3D_VALUES, SPECS, FactorSpec, resolve_data_path
from .registry import where as _where

__all__ = ["FactorSpec", "SPECS", "FactorDataset", "resolve_data_path", "load_factor_dataset"]

IMAGE_SIZE = 64
NORB_SPLITS = ("5x46789x9x18x6x2x96x96-training", "5x01235x9x18x6x2x96x96-testing")
NORB_TYPES = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32}  # the NORB binary format's byte and int matrices


# --------------------------------------------------------------------------- the dataset

class FactorDataset:
    """Images on a complete factor grid, memory-mapped, with batched sparse-transition pairs.

    ``images_array``: (N, 64, 64) or (N, 64, 64, C) uint8, or (N, 64, 8) bit-packed binary
    images (``packed``); ``classes``: (N, F) indices of each image's factors on the published
    grid. The rows may come in any order and the grid may be a sub-grid of the published one (a
    range or subset of values per factor), but every combination of the values present must
    occur exactly once. ``latents`` are the scored factors' indices (float32), ``factor_names``
    their names. ``distribution``, ``rate`` and ``k`` choose the transition
    (:func:`clica.data.factor_transitions.make_transition`).
    """

    def __init__(self, spec: FactorSpec, images_array: np.ndarray, classes: np.ndarray, source: Path,
                 packed: bool = False, binary: bool = False, distribution: str = "laplace",
                 rate: float = 1.0, k: int = -1):
        classes = np.asarray(classes)
        f = len(spec.factor_sizes)
        if classes.ndim != 2 or classes.shape[1] != f or len(classes) != len(images_array):
            raise ClicaError(f"{source}: {len(images_array)} images but factors of shape {classes.shape}, "
                             f"expected ({len(images_array)}, {f})")
        if ((classes < 0) | (classes >= np.array(spec.factor_sizes))).any():
            raise ClicaError(f"{source}: factor indices outside the published grid {spec.factor_sizes}")
        self.spec, self.source, self.packed = spec, source, packed
        self.divisor = 1.0 if binary else 255.0
        self._images = images_array
        values = [np.unique(classes[:, j]) for j in range(f)]
        self.grid_sizes = tuple(len(v) for v in values)
        codes = np.stack([np.searchsorted(v, classes[:, j]) for j, v in enumerate(values)], 1)
        strides = np.cumprod((1,) + self.grid_sizes[:0:-1])[::-1].copy()
        row_of = np.full(int(np.prod(self.grid_sizes)), -1, dtype=np.int64)
        row_of[codes @ strides] = np.arange(len(codes))
        if len(codes) != len(row_of) or (row_of < 0).any():
            raise ClicaError(f"{source}: the {len(codes)} images do not form a complete factor grid "
                             f"({' × '.join(map(str, self.grid_sizes))} combinations of the values present, "
                             f"each exactly once)")
        self.codes = torch.from_numpy(codes.astype(np.int16))
        self.row_of = torch.from_numpy(row_of)
        self.strides = torch.from_numpy(strides)
        self.transition = make_transition(distribution, self.grid_sizes, spec.categorical, rate, k)
        scored = self._scored = list(spec.scored or range(f))
        self.latents = torch.from_numpy(classes[:, scored].astype(np.float32))
        self.factor_names = tuple(spec.factor_names[j] for j in scored)
        self.factor_sizes = tuple(spec.factor_sizes[j] for j in scored)
        self.categorical = tuple(spec.categorical[j] for j in scored)
        self.channels, self.title = spec.channels, spec.title

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def n_frames(self) -> int:
        return len(self.codes)

    def describe(self) -> str:
        return (f"{self.title}: {len(self)} images, factors "
                + ", ".join(f"{n} {s}" for n, s in zip(self.spec.factor_names, self.grid_sizes)))

    def images(self, frame_idx, device=None) -> torch.Tensor:
        """Float images (n, C, 64, 64) in [0, 1] for image indices. On the CPU the conversion is numpy's
        (one thread: small batches made beside training gain nothing from torch's thread pool); on an
        accelerator the bytes are moved and converted there."""
        idx = np.asarray(frame_idx.cpu() if torch.is_tensor(frame_idx) else frame_idx, dtype=np.int64)
        raw = self._images[idx]
        if self.packed:
            raw = np.unpackbits(raw, axis=-1)
        raw = raw[:, None] if raw.ndim == 3 else raw.transpose(0, 3, 1, 2)
        if device is None or torch.device(device).type == "cpu":
            x = np.ascontiguousarray(raw, dtype=np.float32)
            if self.divisor != 1:
                x /= np.float32(self.divisor)
            return torch.from_numpy(x)
        x = torch.from_numpy(np.ascontiguousarray(raw)).to(device, non_blocking=True)
        return x.float().div_(self.divisor)

    def pair_indices(self, idx: torch.Tensor, generator: torch.Generator | None = None):
        """Image indices (first, second) of the pairs that start at image indices ``idx``: the second
        image's factors follow the transition from the first's."""
        codes = self.transition(self.codes[idx].long(), generator)
        return idx, self.row_of[(codes * self.strides).sum(1)]

    def sample_pairs(self, idx: torch.Tensor, generator: torch.Generator | None = None, device=None):
        """(x1, x2, z1, z2) for pairs starting at image indices ``idx``: images and scored factors."""
        first, second = self.pair_indices(idx, generator)
        return (self.images(first, device), self.images(second, device), self.latents[first], self.latents[second])

    def eval_indices(self, n: int = 10_000, seed: int = 0) -> np.ndarray:
        """Indices of ``n`` evaluation images, drawn uniformly."""
        return np.random.RandomState(seed).randint(0, len(self), size=n)

    # --- a ground-truth generator (clica.metrics.GroundTruthData) over the scored factors, for the
    # BetaVAE and FactorVAE scores; unscored factors (SmallNORB's instance) are drawn at random, as
    # disentanglement_lib does

    @property
    def num_factors(self) -> int:
        return len(self.factor_names)

    @property
    def factors_num_values(self) -> list[int]:
        return [self.grid_sizes[j] for j in self._scored]

    def sample_factors(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
        """(num, num_factors) grid indices of the scored factors, each uniform."""
        return np.stack([random_state.randint(n, size=num) for n in self.factors_num_values], 1)

    def sample_observations_from_factors(self, factors: np.ndarray, random_state: np.random.RandomState):
        """Images (n, C, 64, 64) float32 with the scored factors' grid indices ``factors``."""
        codes = np.empty((len(factors), len(self.grid_sizes)), dtype=np.int64)
        codes[:, self._scored] = factors
        for j in sorted(set(range(len(self.grid_sizes))) - set(self._scored)):
            codes[:, j] = random_state.randint(self.grid_sizes[j], size=len(factors))
        return self.images(self.row_of[torch.from_numpy(codes @ self.strides.numpy())]).numpy()


# --------------------------------------------------------------------------- files

@contextlib.contextmanager
def _reading(spec: FactorSpec, path: Path):
    """Turn a failure to parse ``path`` into one line naming the dataset and where it is published."""
    try:
        yield
    except ClicaError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile, NotImplementedError) as exc:
        lines = str(exc).strip().splitlines()
        raise ClicaError(f"cannot read {path} as {spec.title} (published at {spec.url}): "
                         f"{type(exc).__name__}: {lines[0] if lines else ''}") from None


def _expect(cond: bool, path: Path, spec: FactorSpec, what: str) -> None:
    if not cond:
        raise ClicaError(f"{path} is not a {spec.title} file as published ({spec.url}): {what}")


def _pack_binary(chunk: np.ndarray) -> np.ndarray:
    if chunk.max(initial=0) > 1:
        raise ClicaError("dSprites images must be binary (0 or 1)")
    return np.packbits(chunk, axis=-1)


def _dsprites(spec, path):
    classes = npz_small(path, "latents_classes")
    shape, dtype, stored = npz_header(path, "imgs")
    _expect(len(shape) == 3 and shape[1:] == (64, 64) and dtype == np.uint8, path, spec,
            f"imgs has shape {shape} and dtype {dtype}, expected (N, 64, 64) uint8")
    _expect(classes.ndim == 2 and classes.shape == (shape[0], 6) and np.issubdtype(classes.dtype, np.integer),
            path, spec, f"latents_classes has shape {classes.shape}, expected ({shape[0]}, 6) integers")
    if stored:
        return npz_member(path, "imgs"), classes[:, 1:], {"binary": True}
    images = npz_member(path, "imgs", convert=_pack_binary, converted=((shape[0], 64, 8), np.uint8), tag=".bits")
    return images, classes[:, 1:], {"binary": True, "packed": True}


def _shapes3d(spec, path):
    from ..extras import need

    h5py = need("h5py")
    with h5py.File(path, "r") as f:
        _expect("images" in f and "labels" in f, path, spec, f"datasets {sorted(f)}, expected images and labels")
        images, labels = f["images"], f["labels"][()]
        _expect(images.ndim == 4 and images.shape[1:] == (64, 64, 3) and images.dtype == np.uint8, path, spec,
                f"images has shape {images.shape} and dtype {images.dtype}, expected (N, 64, 64, 3) uint8")
        _expect(labels.shape == (len(images), 6), path, spec,
                f"labels has shape {labels.shape}, expected ({len(images)}, 6)")
        classes = np.stack([_grid_index(labels[:, j], v, path, spec, spec.factor_names[j])
                            for j, v in enumerate(SHAPES3D_VALUES)], 1)

        offset = images.id.get_offset() if images.chunks is None and not images.compression else None
        if offset is not None:  # stored contiguous and uncompressed (`clica data shapes3d --compression 0`)
            return np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=images.shape), classes, {}

        def fill(out):
            step = 8192
            for s in range(0, len(images), step):
                out[s:s + step] = images[s:s + step]

        target = cache_folder(path) / f"{path.stem}.images.{fingerprint([path])}.npy"
        return cached_array(target, images.shape, np.uint8, fill), classes, {}


def _grid_index(values: np.ndarray, grid: np.ndarray, path, spec, name: str) -> np.ndarray:
    """Indices of label ``values`` on the published ``grid``: their rank when all values occur, else the
    nearest grid value (within a quarter of its spacing)."""
    present = np.unique(values)
    if len(present) == len(grid):
        return np.searchsorted(present, values)
    idx = np.abs(values[:, None] - grid[None]).argmin(1)
    _expect(np.allclose(values, grid[idx], atol=(grid[1] - grid[0]) / 4), path, spec,
            f"{name} label values such as {present[:3]} are not on the published grid {np.round(grid, 3)}")
    return idx


def _mpi3d(spec, path, sizes=None):
    sizes = tuple(sizes or spec.factor_sizes)
    shape, dtype, _ = npz_header(path, "images")
    n = int(np.prod(sizes))
    _expect(len(shape) == 4 and shape[1:] == (64, 64, 3) and dtype == np.uint8, path, spec,
            f"images has shape {shape} and dtype {dtype}, expected (N, 64, 64, 3) uint8")
    _expect(shape[0] == n, path, spec, f"{shape[0]} images, expected {n} ({' × '.join(map(str, sizes))})")
    classes = np.stack(np.unravel_index(np.arange(n), sizes), 1)
    return npz_member(path, "images"), classes, {}


def _cars3d(spec, folder):
    from PIL import Image
    from scipy.io import loadmat

    files = sorted(folder.glob("*.mat"))
    _expect(bool(files), folder, spec, "the folder holds no .mat files")
    _expect(len(files) <= spec.factor_sizes[2], folder, spec, f"{len(files)} .mat files, more than 183 cars")
    n_cars = len(files)

    def fill(out):
        for car, file in enumerate(files):
            with _reading(spec, file):
                im = loadmat(file)["im"]
            _expect(im.ndim == 5 and im.shape[2:] == (3, 24, 4) and im.dtype == np.uint8, file, spec,
                    f"im has shape {im.shape} and dtype {im.dtype}, expected (H, W, 3, 24, 4) uint8")
            for elevation in range(4):
                for azimuth in range(24):
                    pic = Image.fromarray(np.ascontiguousarray(im[:, :, :, azimuth, elevation]))
                    row = (elevation * 24 + azimuth) * n_cars + car
                    out[row] = np.asarray(pic.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS))

    target = cache_folder(folder) / f"cars3d.images.{fingerprint(files)}.npy"
    images = cached_array(target, (4 * 24 * n_cars, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8, fill)
    classes = np.stack(np.unravel_index(np.arange(len(images)), (4, 24, n_cars)), 1)
    return images, classes, {}


def _norb_matrix(path: Path, spec) -> np.ndarray:
    """A NORB binary matrix file memory-mapped: magic, rank, max(rank, 3) dimensions, then the data."""
    with open(path, "rb") as fh:
        head = np.frombuffer(fh.read(8), dtype="<i4")
        _expect(len(head) == 2 and int(head[0]) & 0xFFFFFFFF in NORB_TYPES and 1 <= head[1] <= 8, path, spec,
                "no NORB binary matrix header (a byte or int32 matrix)")
        dims = np.frombuffer(fh.read(4 * max(int(head[1]), 3)), dtype="<i4")[:int(head[1])]
        dtype = np.dtype(NORB_TYPES[int(head[0]) & 0xFFFFFFFF]).newbyteorder("<")
        offset = fh.tell()
    need = offset + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    _expect(os.path.getsize(path) >= need, path, spec, f"truncated: {os.path.getsize(path)} bytes, need {need}")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(int(d) for d in dims))


def _smallnorb(spec, folder):
    from PIL import Image

    splits = [{kind: folder / f"smallnorb-{split}-{kind}.mat" for kind in ("dat", "cat", "info")}
              for split in NORB_SPLITS]
    for p in (p for paths in splits for p in paths.values()):
        if not p.is_file():
            raise ClicaError(f"SmallNORB file not found: {p}; {_where(spec, 'the six files (then gunzip them)')}")
    parts = []
    for paths in splits:
        with _reading(spec, paths["dat"]):
            dat, cat, info = (_norb_matrix(paths[k], spec) for k in ("dat", "cat", "info"))
        n = len(cat)
        _expect(dat.ndim == 4 and dat.shape[:2] == (n, 2) and dat.dtype == np.uint8, paths["dat"], spec,
                f"images of shape {dat.shape}, expected ({n}, 2, 96, 96) bytes")
        _expect(cat.ndim == 1 and info.shape == (n, 4) and info.dtype == np.int32, paths["info"], spec,
                f"info of shape {info.shape}, expected ({n}, 4) int32")
        _expect(bool((info[:, 2] % 2 == 0).all()), paths["info"], spec, "azimuths must be even (0, 2, ..., 34)")
        classes = np.column_stack([cat, info[:, 0], info[:, 1], info[:, 2] // 2, info[:, 3]])
        parts.append((dat, classes))

    def fill(out):
        row = 0
        for dat, _ in parts:
            for i in range(len(dat)):
                out[row] = np.asarray(Image.fromarray(np.asarray(dat[i, 0])).resize((IMAGE_SIZE, IMAGE_SIZE),
                                                                                    Image.BILINEAR))
                row += 1

    files = [folder / f"smallnorb-{split}-dat.mat" for split in NORB_SPLITS]
    target = cache_folder(folder) / f"smallnorb.images.{fingerprint(files)}.npy"
    n = sum(len(d) for d, _ in parts)
    images = cached_array(target, (n, IMAGE_SIZE, IMAGE_SIZE), np.uint8, fill)
    return images, np.concatenate([c for _, c in parts]).astype(np.int64), {}


LOADERS = {"dsprites": _dsprites, "shapes3d": _shapes3d, "mpi3d": _mpi3d, "cars3d": _cars3d,
           "smallnorb": _smallnorb}


def load_factor_dataset(name: str, data_dir: str | os.PathLike | None = None, distribution: str = "laplace",
                        rate: float = 1.0, k: int = -1, **loader_options) -> FactorDataset:
    """Dataset ``name`` (a key of :data:`SPECS`) from its published file(s), with the transition given by
    ``distribution``, ``rate`` and ``k``. ``loader_options``: ``sizes`` for MPI3D, the factor grid
    that a cut-down file follows (default: the published one)."""
    spec = SPECS[name]
    path = resolve_data_path(name, data_dir)
    with _reading(spec, path):
        images, classes, flags = LOADERS[name](spec, path, **loader_options)
    return FactorDataset(spec, images, classes, path, distribution=distribution, rate=rate, k=k, **flags)
