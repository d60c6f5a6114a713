"""3DIdent datasets: folder validation, latent layouts, nearest-neighbour pair matching,
image loading (PNG or a memory-mapped uint8 cache) and normalisation.

A 3DIdent folder (the published release and ``clica render`` output alike) holds
``raw_latents.npy`` (N×D, the latents in the sampling space), ``latents.npy``
(N×10 render parameters) and ``images/{i}.png`` with ``i`` zero-padded to
``ceil(log10(N))`` digits.

Training pairs are made as in the paper: sample z from the marginal and z~ from
the conditional of a latent space, then replace each by its nearest rendered
latent. Unlike the original (two faiss searches per item), a whole batch of z
and z~ is matched in a single search call (exact kd-tree by default, faiss
brute force or faiss's approximate IVF/HNSW index on request), and z~ never
lands on the image of z.

Everything here is usable from Python without the command line::

    from clica.data.threedident import ThreeDIdentFolder, ThreeDIdentPairs, latent_layout, latent_space_for
    layout = latent_layout(non_periodic_rotation_and_color=True)
    pairs = ThreeDIdentPairs("data/3dident64", latent_space_for(layout, "l2", 0.1), layout=layout)
    (z, z_tilde), (x, x_tilde) = pairs.sample(256, seed=0)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import ClicaError
from ..extras import need
from ..progress import Progress
from ..runs import write_error

__all__ = [
    "LATENT_NAMES",
    "PUBLISHED_MEAN",
    "PUBLISHED_STD",
    "STATS_FILES",
    "image_name_width",
    "image_path",
    "ThreeDIdentFolder",
    "LatentLayout",
    "latent_layout",
    "latent_space_for",
    "faiss_threads",
    "LatentMatcher",
    "cache_file",
    "build_image_cache",
    "open_image_cache",
    "load_normalization",
    "ImageLoader",
    "ThreeDIdentPairs",
    "ThreeDIdentSequential",
]

#: The 10 render parameters of ``latents.npy`` (and of ``raw_latents.npy`` in the
#: non-periodic variant), in the published order.
LATENT_NAMES = (
    "pos_x", "pos_y", "pos_z",
    "rot_alpha", "rot_beta", "rot_gamma",
    "spotlight_angle", "object_hue", "spotlight_hue", "background_hue",
)

#: Per-channel statistics of the published 224×224 release (the original's constants).
PUBLISHED_MEAN = (0.3292, 0.3278, 0.3215)
PUBLISHED_STD = (0.0778, 0.0776, 0.0771)

#: Files in a dataset folder that may hold its image statistics, tried in order.
#: Each is JSON with ``mean`` and ``std`` lists of 3 floats (in [0, 1] pixel units).
STATS_FILES = ("stats.json", "image_stats.json", "mean_std.json", "normalization.json")


# ---------------------------------------------------------------------------
# folder
# ---------------------------------------------------------------------------

def image_name_width(n: int) -> int:
    """Digits in the image file names of an N-image folder: ``ceil(log10(N))``."""
    return int(math.ceil(math.log10(n))) if n > 1 else 0


def image_path(root: str | os.PathLike, index: int, n: int) -> Path:
    """``root/images/{index}.png`` with the published zero padding for N images."""
    return Path(root) / "images" / f"{str(index).zfill(image_name_width(n))}.png"


def _load_array(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise ClicaError(
            f"{path.parent} is not a 3DIdent dataset folder: {path.name} is missing "
            f"(expected raw_latents.npy, latents.npy and images/)")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # truncated, pickled object, not an .npy at all
        raise ClicaError(f"cannot read {path} ({what}): {str(exc).splitlines()[0]}") from None
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise ClicaError(f"{path} ({what}) must be a 2-D numeric array N×D, found shape "
                         f"{tuple(arr.shape)} and dtype {arr.dtype}")
    return arr


@dataclass
class ThreeDIdentFolder:
    """A validated 3DIdent dataset folder.

    ``open`` checks the layout and raises a one-line :class:`ClicaError` naming
    the problem: a missing folder or file, an unreadable or mis-shaped array,
    mismatched lengths, non-finite latents, missing or wrongly padded images.
    """

    root: Path
    raw_latents: np.ndarray  # float32 N×D, in memory
    n_render_latents: int
    has_images: bool
    _image_shape: tuple | None = field(default=None, repr=False)

    @classmethod
    def open(cls, root: str | os.PathLike, require_images: bool = True) -> "ThreeDIdentFolder":
        root = Path(root)
        if not root.exists():
            raise ClicaError(f"dataset folder {root} does not exist")
        if not root.is_dir():
            raise ClicaError(f"dataset path {root} is not a folder")
        raw = _load_array(root / "raw_latents.npy", "sampling-space latents")
        render = _load_array(root / "latents.npy", "render parameters")
        n = raw.shape[0]
        if n < 2:
            raise ClicaError(f"{root}/raw_latents.npy holds {n} latent(s); at least 2 are needed to make pairs")
        if render.shape[0] != n:
            raise ClicaError(f"{root}: raw_latents.npy has {n} rows but latents.npy has "
                             f"{render.shape[0]}; the folder is incomplete or mixed up")
        raw = np.ascontiguousarray(raw, dtype=np.float32)
        if not np.isfinite(raw).all():
            raise ClicaError(f"{root}/raw_latents.npy contains NaN or infinite values")
        images = root / "images"
        has_images = images.is_dir()
        folder = cls(root, raw, int(render.shape[1]), has_images)
        if require_images:
            folder.check_images()
        return folder

    def __len__(self) -> int:
        return self.raw_latents.shape[0]

    @property
    def n(self) -> int:
        return self.raw_latents.shape[0]

    @property
    def dim(self) -> int:
        return self.raw_latents.shape[1]

    def image_path(self, index: int) -> Path:
        return image_path(self.root, index, self.n)

    def check_images(self) -> None:
        """The images folder exists and the first and last images have the published names."""
        images = self.root / "images"
        if not images.is_dir():
            raise ClicaError(f"{self.root} is not a 3DIdent dataset folder: images/ is missing")
        for i in (0, self.n - 1):
            p = self.image_path(i)
            if not p.is_file():
                hint = ""
                if (images / f"{i}.png").is_file() and image_name_width(self.n) > len(str(i)):
                    hint = f" (found {i}.png: names must be zero-padded to {image_name_width(self.n)} digits)"
                raise ClicaError(f"{self.root}: image {p.name} is missing for {self.n} latents{hint}")
        extra = self.image_path(self.n)
        if extra.is_file():
            raise ClicaError(f"{self.root}: images/ holds more images than the {self.n} rows of raw_latents.npy "
                             f"(found {extra.name}); the latent files are incomplete or belong to other images")

    def image_shape(self) -> tuple[int, int]:
        """(height, width) of the images, read from the first one."""
        if self._image_shape is None:
            self._image_shape = decode_png(self.image_path(0)).shape[:2]
        return self._image_shape

    def render_latents(self) -> np.ndarray:
        return np.load(self.root / "latents.npy", mmap_mode="r")


_CONVERTED_MODES: set = set()  # image modes already reported as converted to RGB (said once per process)


def decode_png(path: Path, size: tuple[int, int] | None = None,
               native: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one image to an H×W×3 uint8 array, optionally resized to ``size`` = (H, W).

    ``native`` is the folder's image size: an image of another size is refused (a folder
    holds one size; resizing it silently would mix scales). Greyscale or palette images
    are converted to RGB, said once per mode.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            if native is not None and im.size != (native[1], native[0]):
                raise ClicaError(f"image {path} is {im.size[0]}x{im.size[1]} but the folder's images are "
                                 f"{native[1]}x{native[0]}: a dataset folder holds one image size")
            if im.mode != "RGB" and im.mode not in _CONVERTED_MODES:
                _CONVERTED_MODES.add(im.mode)
                print(f"note: {path} is a {im.mode} image; images of mode {im.mode} are converted to RGB")
            im = im.convert("RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except ClicaError:
        raise
    except FileNotFoundError:
        raise ClicaError(f"image {path} is missing") from None
    except Exception as exc:
        raise ClicaError(f"cannot decode image {path}: {exc}") from None


# ---------------------------------------------------------------------------
# latent layouts: which columns of raw_latents, which spaces (the original's table)
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class LatentLayout:
    """Which latents a run uses and in which spaces they live.

    ``dimensions``: the columns of ``raw_latents.npy`` used (``None``: all of them,
    and then the folder must have exactly ``dim`` columns). ``parts``: the latent
    space as (kind, size) blocks, kind ``"box"`` ([-1, 1]^size) or ``"sphere"``
    (unit sphere in R^size), in column order. The first ``n_non_angular``
    latents are non-periodic (box), the remaining ``n_angular`` periodic (sphere).
    ``n_columns``: the column count a folder must have when ``dimensions`` is set
    (``None``: any that holds those columns). The non-periodic layouts need the
    10-column release: columns 3–9 of an 11-column periodic render are sphere
    coordinates, not angles, so picking them by index would score the wrong targets.
    """

    dimensions: tuple[int, ...] | None
    parts: tuple[tuple[str, int], ...]
    names: tuple[str, ...]
    n_columns: int | None = None

    @property
    def dim(self) -> int:
        return sum(size for _, size in self.parts)

    @property
    def n_non_angular(self) -> int:
        return sum(size for kind, size in self.parts if kind == "box")

    @property
    def n_angular(self) -> int:
        return sum(size for kind, size in self.parts if kind == "sphere")

    def select(self, raw_latents: np.ndarray, root="dataset") -> np.ndarray:
        """The used columns of ``raw_latents`` (checked against the layout), contiguous float32."""
        d = raw_latents.shape[1]
        if self.dimensions is None:
            if d != self.dim:
                raise ClicaError(
                    f"{root}/raw_latents.npy has {d} columns but the chosen latent space has {self.dim} "
                    f"({self.describe()}); "
                    + ("a 10-column release is non-periodic: pass --non-periodic-rotation-and-color"
                       if d == 10 and self.n_angular else "render the dataset with the matching flags"))
            return np.ascontiguousarray(raw_latents, dtype=np.float32)
        if self.n_columns is not None and d != self.n_columns:
            raise ClicaError(
                f"{root}/raw_latents.npy has {d} columns but --non-periodic-rotation-and-color needs the "
                f"{self.n_columns}-column non-periodic release; "
                + ("this looks like a periodic render: drop the flag or render with it"
                   if d == 11 else "render the dataset with --non-periodic-rotation-and-color"))
        if max(self.dimensions) >= d:
            raise ClicaError(f"{root}/raw_latents.npy has {d} columns but the chosen latents need "
                             f"columns {list(self.dimensions)}")
        return np.ascontiguousarray(raw_latents[:, list(self.dimensions)], dtype=np.float32)

    def describe(self) -> str:
        return " + ".join(f"{kind}({size})" for kind, size in self.parts)


def latent_layout(
    *,
    position_only: bool = False,
    rotation_and_color_only: bool = False,
    rotation_only: bool = False,
    color_only: bool = False,
    no_spotlight_position: bool = False,
    no_spotlight_color: bool = False,
    no_spotlight: bool = False,
    non_periodic_rotation_and_color: bool = False,
) -> LatentLayout:
    """The latent dimensions and spaces for a flag combination, by the original's rules.

    Contradictory combinations (which the original asserted on or crashed with)
    raise a :class:`ClicaError` that says which flags clash.
    """
    if no_spotlight:
        no_spotlight_position = no_spotlight_color = True
    only = [name for name, on in (("--position-only", position_only),
                                  ("--rotation-and-color-only", rotation_and_color_only),
                                  ("--rotation-only", rotation_only),
                                  ("--color-only", color_only)) if on]
    if len(only) > 1:
        raise ClicaError(f"{' and '.join(only)} contradict each other: choose at most one")
    if position_only and (non_periodic_rotation_and_color or no_spotlight_color or no_spotlight_position):
        clash = [n for n, on in (("--non-periodic-rotation-and-color", non_periodic_rotation_and_color),
                                 ("--no-spotlight-position/--no-spotlight", no_spotlight_position),
                                 ("--no-spotlight-color/--no-spotlight", no_spotlight_color)) if on]
        raise ClicaError(f"--position-only uses no rotation or colour latents, so it cannot be "
                         f"combined with {', '.join(clash)}")
    spot_pos = 0 if no_spotlight_position else 1
    spot_col = 0 if no_spotlight_color else 1

    if non_periodic_rotation_and_color:
        if rotation_and_color_only:
            dims = [3, 4, 5, 6, 7, 8, 9]
            parts = [("box", 4 + spot_col + spot_pos + 1)]
        elif rotation_only:
            dims = [3, 4, 5, 6]
            parts = [("box", 3 + spot_pos)]
        elif color_only:
            dims = [7, 8, 9]
            parts = [("box", 1 + spot_col + 1)]
        else:
            dims = list(range(10))
            parts = [("box", 3), ("box", 4 + spot_col + spot_pos + 1)]
        if no_spotlight_position:
            dims = [d for d in dims if d != 6]
        if no_spotlight_color:
            dims = [d for d in dims if d != 8]
        names = tuple(LATENT_NAMES[d] for d in dims)
        parts = [("box", sum(s for _, s in parts))]
        assert len(dims) == parts[0][1]
        return LatentLayout(tuple(dims), tuple(parts), names, n_columns=len(LATENT_NAMES))

    if no_spotlight_position or no_spotlight_color:
        flag = "--no-spotlight-position" if no_spotlight_position else "--no-spotlight-color"
        if no_spotlight_position and no_spotlight_color:
            flag = "--no-spotlight"
        raise ClicaError(f"{flag} is only supported with --non-periodic-rotation-and-color "
                         "(the periodic latents are embedded jointly on a sphere)")
    n_rot_col = 4 + spot_col + spot_pos + 1  # 7 angles: rotation 3, spotlight, 3 hues
    if position_only:
        return LatentLayout((0, 1, 2), (("box", 3),), LATENT_NAMES[:3])
    if rotation_and_color_only:
        dims = tuple(range(3, 3 + n_rot_col + 1))
        return LatentLayout(dims, (("sphere", n_rot_col + 1),),
                            tuple(f"sphere_{i}" for i in range(n_rot_col + 1)))
    if rotation_only:  # the original selects no columns: the folder must hold exactly these
        return LatentLayout(None, (("sphere", 3 + 1),), tuple(f"sphere_{i}" for i in range(4)))
    if color_only:
        return LatentLayout(None, (("sphere", 3 + 1 + 1),), tuple(f"sphere_{i}" for i in range(5)))
    return LatentLayout(None, (("box", 3), ("sphere", n_rot_col + 1)),
                        LATENT_NAMES[:3] + tuple(f"sphere_{i}" for i in range(n_rot_col + 1)))


def latent_space_for(layout: LatentLayout, conditional: str = "l2", sigma: float = 0.1):
    """The latent space of a layout: uniform marginals; box parts get the
    ``conditional`` (``l1`` Laplace, ``l2`` normal, ``l3`` generalized normal with
    p = 3) with scale ``sigma``; sphere parts a von Mises–Fisher with κ = 1/σ."""
    from .. import latents, spaces
    from ..conditionals import CONDITIONALS, by_name

    if not sigma > 0:
        raise ClicaError(f"--sigma must be positive, got {sigma}")
    if conditional not in ("l1", "l2", "l3"):
        raise ClicaError(f"unknown non-periodical conditional {conditional!r} (choose l1, l2 or l3)")
    box_conditional = by_name(conditional).distribution(sigma)
    parts = []
    for kind, size in layout.parts:
        if kind == "box":
            parts.append(latents.LatentSpace(spaces.Box(size, -1.0, 1.0), latents.Uniform(), box_conditional))
        else:
            parts.append(latents.LatentSpace(spaces.Sphere(size), latents.Uniform(),
                                             CONDITIONALS["vmf"].distribution(1.0 / sigma)))
    return parts[0] if len(parts) == 1 else latents.ProductLatentSpace(parts)


# ---------------------------------------------------------------------------
# nearest-neighbour matching
# ---------------------------------------------------------------------------

@contextmanager
def faiss_threads(n: int):
    """Run faiss calls with ``n`` OpenMP threads, then give torch its own count back.

    faiss and torch share one OpenMP runtime, so a global
    ``faiss.omp_set_num_threads`` also sets torch's threads: ``--faiss-omp-threads 1``
    made training single-threaded, the default 16 oversubscribed small machines.
    """
    faiss = need("faiss")
    own = torch.get_num_threads()
    faiss.omp_set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(own)


class LatentMatcher:
    """Nearest rendered latent for many query latents at once.

    Exact search by default, with one of two backends:

    * ``"kdtree"`` (default for exact search): scipy's cKDTree. Exact Euclidean
      nearest neighbours, and on these low-dimensional latents (3–11 columns)
      25–50× faster than a brute-force ``faiss.IndexFlatL2`` (measured in
      ``benchmarks/threedident_pipeline.py``: ~11k vs ~2k queries/s over 40k
      latents on one core).
    * ``"faiss"``: ``faiss.IndexFlatL2`` brute force, as the original.

    ``approximate=True`` builds the original's faiss IVF index with an HNSW
    coarse quantiser (``IVF{nlist}_HNSW32,Flat``, nprobe 10), ``nlist`` = 1024 for
    large folders and smaller for small ones (≥ 39 training points per list).
    ``threads`` (``--faiss-omp-threads``): kd-tree query workers, or faiss's
    OpenMP threads during its calls only (see :func:`faiss_threads`).
    """

    BACKENDS = ("kdtree", "faiss")

    def __init__(self, latents: np.ndarray, approximate: bool = False, backend: str = "kdtree",
                 threads: int = 1):
        self.latents = np.ascontiguousarray(latents, dtype=np.float32)
        n, d = self.latents.shape
        self.approximate = approximate
        if backend not in self.BACKENDS:
            raise ClicaError(f"unknown nearest-neighbour backend {backend!r}; choose one of {self.BACKENDS}")
        self.backend = "faiss" if approximate else backend
        self.threads = max(1, min(int(threads or 1), os.cpu_count() or 1))
        self.index = None
        self.tree = None
        if self.backend == "kdtree":
            from scipy.spatial import cKDTree

            self.tree = cKDTree(self.latents)
            return
        faiss = need("faiss")
        with faiss_threads(self.threads):
            if approximate:
                nlist = int(min(1024, max(1, n // 39)))
                index = faiss.index_factory(d, f"IVF{nlist}_HNSW32,Flat")
                index.train(self.latents)
                index.nprobe = min(10, nlist)
            else:
                index = faiss.IndexFlatL2(d)
            index.add(self.latents)
        self.index = index

    def search(self, queries: np.ndarray | torch.Tensor, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(squared distances, indices), each queries×k, in one search call."""
        if torch.is_tensor(queries):
            queries = queries.detach().cpu().numpy()
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if self.tree is not None:
            dist, idx = self.tree.query(q, k, workers=self.threads)
            dist, idx = np.asarray(dist).reshape(len(q), k), np.asarray(idx).reshape(len(q), k)
            return (dist ** 2).astype(np.float32), idx.astype(np.int64)
        with faiss_threads(self.threads):
            dist, idx = self.index.search(q, k)
        if self.approximate and (idx < 0).any():  # too few points in the probed lists
            rows = np.nonzero((idx < 0).any(1))[0]
            d2 = ((q[rows, None, :] - self.latents[None]) ** 2).sum(-1)
            order = np.argsort(d2, axis=1)[:, :k]
            idx[rows] = order
            dist[rows] = np.take_along_axis(d2, order, 1)
        return dist, idx

    def match_pairs(self, z, z_tilde) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the nearest rendered latents of ``z`` and ``z_tilde`` (both B×d).

        One search call for the whole batch (z and z~ stacked, k = 2); z~ takes
        its second-nearest neighbour whenever its nearest is the image of z, so a
        pair never shows the same image twice.
        """
        if torch.is_tensor(z):
            z = z.detach().cpu().numpy()
        if torch.is_tensor(z_tilde):
            z_tilde = z_tilde.detach().cpu().numpy()
        b = len(z)
        _, idx = self.search(np.concatenate([z, z_tilde], 0), 2)
        index_z = idx[:b, 0]
        cand = idx[b:]
        index_t = np.where(cand[:, 0] != index_z, cand[:, 0], cand[:, 1])
        return index_z.astype(np.int64), index_t.astype(np.int64)


# ---------------------------------------------------------------------------
# image cache and loading
# ---------------------------------------------------------------------------

def content_key(folder: ThreeDIdentFolder) -> str:
    """A short hash of what the folder's images depend on: both latent files and, when there is one,
    ``render_config.json``. A re-render with other latents or settings changes it, so an image cache
    keyed by it is never reused for images it does not hold."""
    h = hashlib.sha1()
    for name in ("raw_latents.npy", "latents.npy", "render_config.json"):
        path = folder.root / name
        if path.is_file():
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
    return h.hexdigest()[:12]


def cache_file(folder: ThreeDIdentFolder, size: tuple[int, int], cache_dir=None) -> Path:
    """Where the uint8 cache of ``folder``'s images at ``size`` lives (default: ``<folder>/cache``),
    named by the folder's :func:`content_key`."""
    base = Path(cache_dir) if cache_dir else folder.root / "cache"
    return base / f"images_{size[0]}x{size[1]}_n{folder.n}_{content_key(folder)}.u8.npy"


def _decode_chunk(args):
    paths, size, native = args
    return np.stack([decode_png(Path(p), size, native).transpose(2, 0, 1) for p in paths])


def build_image_cache(folder: ThreeDIdentFolder, size: tuple[int, int] | None = None, cache_dir=None,
                      workers: int = 1, progress: bool = True, chunk: int = 256) -> Path:
    """Decode every image once into one N×3×H×W uint8 ``.npy`` file (memory-mappable).

    Built under a temporary name and renamed at the end, so an interrupted build
    leaves no half cache. Returns the cache path (existing caches are reused).
    """
    folder.check_images()
    size = tuple(size) if size else folder.image_shape()
    path = cache_file(folder, size, cache_dir)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if cache_dir is None:  # the folder's own cache folder: caches of its earlier contents are stale
        for old in path.parent.glob(f"images_{size[0]}x{size[1]}_n*.u8.npy"):
            print(f"note: removing {old}, the image cache of other latents or render settings")
            old.unlink()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(folder.n, 3, *size))
        # reserve the disk space now: writing a memory map past a full disk kills the process (SIGBUS)
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.path.getsize(tmp))
        finally:
            os.close(fd)
    except OSError as exc:
        if tmp.exists():
            tmp.unlink()
        raise write_error(tmp, exc) from None
    jobs = [([folder.image_path(i) for i in range(s, min(s + chunk, folder.n))], size, folder.image_shape())
            for s in range(0, folder.n, chunk)]
    try:
        with Progress(folder.n, desc=f"caching images {size[0]}x{size[1]}", unit="img",
                      enabled=progress) as bar:
            if workers > 1:
                from concurrent.futures import ProcessPoolExecutor

                with ProcessPoolExecutor(workers) as pool:
                    results = pool.map(_decode_chunk, jobs)
                    for j, arr in enumerate(results):
                        out[j * chunk: j * chunk + len(arr)] = arr
                        bar.update(len(arr))
            else:
                for j, job in enumerate(jobs):
                    arr = _decode_chunk(job)
                    out[j * chunk: j * chunk + len(arr)] = arr
                    bar.update(len(arr))
        out.flush()
        del out
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path


def open_image_cache(folder: ThreeDIdentFolder, size: tuple[int, int] | None = None,
                     cache_dir=None) -> np.ndarray | None:
    """The memory-mapped cache of ``folder`` at ``size``, or ``None`` when none was built."""
    size = tuple(size) if size else folder.image_shape()
    path = cache_file(folder, size, cache_dir)
    if not path.is_file():
        return None
    try:
        arr = np.load(path, mmap_mode="r")
    except Exception as exc:
        raise ClicaError(f"image cache {path} is corrupt ({exc}); delete it to rebuild") from None
    if arr.shape != (folder.n, 3, *size) or arr.dtype != np.uint8:
        raise ClicaError(f"image cache {path} has shape {arr.shape}, expected {(folder.n, 3, *size)}; "
                         "delete it to rebuild")
    return arr


def load_normalization(root: str | os.PathLike) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    """(mean, std, source): the folder's stored image statistics, else the published constants."""
    root = Path(root)
    for name in STATS_FILES:
        p = root / name
        if p.is_file():
            try:
                data = json.loads(p.read_text())
                mean = tuple(float(v) for v in data["mean"])
                std = tuple(float(v) for v in data["std"])
            except Exception as exc:
                raise ClicaError(f"{p} is malformed ({exc}); it must be JSON with 'mean' and 'std' lists of 3 "
                                 f"floats") from None
            if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
                raise ClicaError(f"{p} must hold 3 means and 3 positive stds, found {mean}, {std}")
            if max(mean) > 1.5:  # stored in 0..255 pixel units
                mean = tuple(m / 255 for m in mean)
                std = tuple(s / 255 for s in std)
            return mean, std, str(p)
    return PUBLISHED_MEAN, PUBLISHED_STD, "published constants"


class ImageLoader:
    """Loads batches of images by index as normalised float tensors B×3×H×W.

    From the memory-mapped uint8 cache when one is given (fast: one gather, one
    fused normalisation), else by decoding PNGs (optionally resized to ``size``).
    """

    def __init__(self, folder: ThreeDIdentFolder, size: tuple[int, int] | None = None,
                 cache: np.ndarray | None = None, mean=PUBLISHED_MEAN, std=PUBLISHED_STD):
        self.folder = folder
        self.cache = cache
        self.size = tuple(size) if size else (tuple(cache.shape[2:]) if cache is not None else None)
        m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        # x_norm = (u8 / 255 - mean) / std = u8 * scale + shift
        self._scale = 1.0 / (255.0 * s)
        self._shift = -m / s

    def load_uint8(self, indices: np.ndarray) -> torch.Tensor:
        indices = np.asarray(indices, dtype=np.int64)
        if self.cache is not None:
            order = np.argsort(indices, kind="stable")
            gathered = self.cache[indices[order]]  # sorted reads: forward through the file, fast
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
            return torch.from_numpy(gathered)[torch.from_numpy(inverse)]
        return torch.from_numpy(np.stack(
            [decode_png(self.folder.image_path(int(i)), self.size, self.folder.image_shape()).transpose(2, 0, 1)
             for i in indices]))

    def normalize(self, u8: torch.Tensor) -> torch.Tensor:
        """uint8 B×3×H×W → float32 (x/255 − mean)/std, in place in one new tensor."""
        out = torch.empty(u8.shape, dtype=torch.float32, device=u8.device)
        out.copy_(u8)
        return out.mul_(self._scale.to(u8.device)).add_(self._shift.to(u8.device))

    def load(self, indices: np.ndarray) -> torch.Tensor:
        return self.normalize(self.load_uint8(indices))


def _batch_seed(seed: int, index: int) -> int:
    return (int(seed) * 1_000_003 + int(index) * 7_919 + 12_345) % (2 ** 63 - 1)


# ---------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------

class _FolderData:
    """Shared set-up: folder, used latent columns, image loader."""

    def __init__(self, root, layout: LatentLayout | None, images: bool, image_size, cache, cache_dir,
                 normalization, folder: ThreeDIdentFolder | None = None):
        self.folder = folder or ThreeDIdentFolder.open(root, require_images=images)
        self.layout = layout
        raw = self.folder.raw_latents
        self.latents = layout.select(raw, self.folder.root) if layout is not None else raw
        self.images = images
        self.loader = None
        self.normalization = None  # (mean, std) the images are normalised with
        if images:
            size = tuple(image_size) if image_size else self.folder.image_shape()
            arr = None
            if cache in ("auto", "build", True):
                if cache == "build" or cache is True:
                    build_image_cache(self.folder, size, cache_dir)
                arr = open_image_cache(self.folder, size, cache_dir)
            elif isinstance(cache, np.ndarray):
                arr = cache
            elif cache not in (None, False, "off"):
                raise ValueError(f"cache must be 'auto', 'build', 'off' or an array, not {cache!r}")
            if normalization is None:
                mean, std, self.normalization_source = load_normalization(self.folder.root)
            else:
                mean, std, *source = normalization  # (mean, std[, where they come from])
                self.normalization_source = source[0] if source else "given statistics"
            self.normalization = (tuple(mean), tuple(std))
            self.loader = ImageLoader(self.folder, size, arr, mean, std)

    @property
    def cached(self) -> bool:
        return self.loader is not None and self.loader.cache is not None


class ThreeDIdentPairs(_FolderData, torch.utils.data.IterableDataset):
    """Positive pairs ((z, z~), (x, x~)) matched to rendered latents, a batch at a time.

    ``sample(b, seed)`` returns one batch; iterating yields batch after batch of
    ``batch_size`` (batch i is seeded from (seed, i), so any batch can be
    reproduced and a resumed run sees the same data; with DataLoader workers the
    batches are split between them in order). Use it with
    ``DataLoader(pairs, batch_size=None, num_workers=k)``.

    ``uint8=True`` yields the images as uint8 (4× less to copy to a GPU);
    normalise them there with ``pairs.loader.normalize(x.to(device))``.
    ``images=False`` skips loading images (x and x~ are ``None``): for
    ``--dummy-mixing`` and the identity settings. ``cache``: ``"auto"`` uses a built
    uint8 cache if present, ``"build"`` builds it first, ``"off"`` decodes PNGs.
    """

    def __init__(self, root, latent_space, layout: LatentLayout | None = None, *, batch_size: int = 512,
                 approximate: bool = False, nn_backend: str = "kdtree", nn_threads: int = 1,
                 images: bool = True, image_size=None, cache="auto",
                 cache_dir=None, normalization=None, seed: int = 0, start_batch: int = 0,
                 uint8: bool = False, folder: ThreeDIdentFolder | None = None):
        _FolderData.__init__(self, root, layout, images, image_size, cache, cache_dir, normalization, folder)
        self.uint8 = uint8
        self.latent_space = latent_space
        if latent_space.dim != self.latents.shape[1]:
            raise ClicaError(f"the latent space has {latent_space.dim} dimensions but the selected "
                             f"latents of {self.folder.root} have {self.latents.shape[1]}")
        self.matcher = LatentMatcher(self.latents, approximate=approximate, backend=nn_backend,
                                     threads=nn_threads)
        self.batch_size, self.seed, self.start_batch = batch_size, seed, start_batch

    def sample_indices(self, batch_size: int, seed: int | None = None, generator=None):
        """Sample (z, z~) from the latent space and match them: two index arrays."""
        if generator is None:
            generator = torch.Generator()
            if seed is not None:
                generator.manual_seed(int(seed))
            else:
                generator.seed()
        z, z_tilde = self.latent_space.sample_pair(batch_size, generator=generator)
        return self.matcher.match_pairs(z, z_tilde)

    def get(self, index_z: np.ndarray, index_t: np.ndarray):
        z = torch.from_numpy(self.latents[index_z])
        zt = torch.from_numpy(self.latents[index_t])
        if not self.images:
            return (z, zt), (None, None)
        both = np.concatenate([index_z, index_t])
        x = self.loader.load_uint8(both) if self.uint8 else self.loader.load(both)
        b = len(index_z)
        return (z, zt), (x[:b], x[b:])

    def sample(self, batch_size: int, seed: int | None = None, generator=None):
        """One batch ((z, z~), (x, x~)): z B×d float32, x B×3×H×W normalised."""
        return self.get(*self.sample_indices(batch_size, seed, generator))

    def batch(self, i: int):
        """The i-th batch of this dataset's stream (deterministic from ``seed`` and ``i``)."""
        g = torch.Generator().manual_seed(_batch_seed(self.seed, i))
        return self.get(*self.sample_indices(self.batch_size, generator=g))

    def __iter__(self) -> Iterator:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        i = self.start_batch + wid
        while True:
            yield self.batch(i)
            i += nw


class ThreeDIdentSequential(_FolderData, torch.utils.data.Dataset):
    """All images of a folder in order, item i = (z_i, x_i) (test mode, evaluation).

    ``batches(b, shuffle, seed, limit)`` yields whole batches via the fast loader.
    """

    def __init__(self, root, layout: LatentLayout | None = None, *, images: bool = True, image_size=None,
                 cache="auto", cache_dir=None, normalization=None, folder: ThreeDIdentFolder | None = None):
        _FolderData.__init__(self, root, layout, images, image_size, cache, cache_dir, normalization, folder)

    def __len__(self) -> int:
        return self.folder.n

    def __getitem__(self, i: int):
        z = torch.from_numpy(self.latents[i])
        if not self.images:
            return z, None
        return z, self.loader.load(np.array([i]))[0]

    def get(self, indices: np.ndarray):
        z = torch.from_numpy(self.latents[indices])
        return z, (self.loader.load(indices) if self.images else None)

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                limit: int | None = None) -> Iterator:
        order = np.random.default_rng(seed).permutation(self.folder.n) if shuffle else np.arange(self.folder.n)
        if limit is not None:
            order = order[:limit]
        for s in range(0, len(order), batch_size):
            yield self.get(order[s:s + batch_size])

