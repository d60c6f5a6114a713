"""The image cache: every image of a folder decoded once into one memory-mappable N×3×H×W uint8 file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ...errors import ClicaError
from ...progress import Progress
from ...runs import write_error
from .folder import ThreeDIdentFolder
from .images import decode_png


def content_key(folder: ThreeDIdentFolder) -> str:
    """A short hash of what the folder's images depend on: both latent files and, when there is one,
    ``render_config.json``. A re-render with other latents or settings changes it, so an image cache
    keyed by it is never reused for images it does not hold."""
    digest = hashlib.sha1()
    for name in ("raw_latents.npy", "latents.npy", "render_config.json"):
        path = folder.root / name
        if path.is_file():
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(block)
    return digest.hexdigest()[:12]


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
