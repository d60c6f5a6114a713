"""Large image arrays from published files, memory-mapped rather than held in memory.

- An ``.npz`` member stored without compression is memory-mapped in place (its offset inside
  the zip file), so e.g. a 12 GB MPI3D file is never copied.
- A compressed ``.npz`` member, an HDF5 dataset, or images that must first be converted
  (resized, bit-packed) are streamed once, in chunks, into an uncompressed ``.npy`` cache that
  is then memory-mapped. A cache is written under a temporary name and renamed when complete,
  so an interrupted build leaves no half-written cache; its name carries a fingerprint of the
  source files (names, sizes, modification times), so a changed source gets a new cache.

Caches go to ``$CLICA_CACHE_DIR`` when set, else to ``.clica-cache/`` beside the source.
Nothing here unpickles: ``.npz`` members are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import ClicaError
from ..runs import os_error_reason

__all__ = ["cache_folder", "fingerprint", "cached_array", "npz_header", "npz_member", "npz_small"]

CHUNK_BYTES = 64 << 20  # rows streamed per step: about 64 MB


def cache_folder(source: Path) -> Path:
    """``$CLICA_CACHE_DIR``, else ``.clica-cache`` in the folder of ``source`` (a file or a folder)."""
    env = os.environ.get("CLICA_CACHE_DIR")
    if env:
        return Path(env)
    return (source if source.is_dir() else source.parent) / ".clica-cache"


def fingerprint(paths: list[Path]) -> str:
    """A short hash of the files' names, sizes and modification times."""
    h = hashlib.sha1()
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def cached_array(path: Path, shape: tuple, dtype, fill: Callable[[np.ndarray], None]) -> np.ndarray:
    """The ``.npy`` at ``path`` memory-mapped read-only; built first when missing: ``fill(out)`` writes
    the whole (shape, dtype) array ``out`` (a writable memory map of a temporary file), then the
    temporary file is renamed to ``path``. A failed build removes the temporary file."""
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
            fill(out)
            out.flush()
            del out
            os.replace(tmp, path)
        except OSError as exc:
            raise ClicaError(f"cannot write the cache {path}: {os_error_reason(exc)}; set CLICA_CACHE_DIR "
                             f"to a writable folder with room for it") from None
        finally:
            if tmp.exists():
                tmp.unlink()
    return np.load(path, mmap_mode="r")


def _npy_header(fh, source: str) -> tuple[tuple, bool, np.dtype]:
    version = np.lib.format.read_magic(fh)
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f"npy format version {version}")
    shape, fortran, dtype = read(fh)
    if dtype.hasobject:
        raise ClicaError(f"{source} holds Python objects, not array data; refused, nothing was loaded")
    return shape, fortran, dtype


def _member(zf: zipfile.ZipFile, key: str, path: Path) -> zipfile.ZipInfo:
    try:
        return zf.getinfo(key + ".npy")
    except KeyError:
        names = sorted(n[:-4] for n in zf.namelist() if n.endswith(".npy"))
        raise ClicaError(f"{path} has no array {key!r} (it has {', '.join(names) or 'none'})") from None


def npz_header(path: Path, key: str) -> tuple[tuple, np.dtype, bool]:
    """Shape, dtype and whether it is stored uncompressed, of array ``key`` of an ``.npz`` file,
    read from its header only."""
    with zipfile.ZipFile(path) as zf:
        info = _member(zf, key, path)
        with zf.open(info) as fh:
            shape, _, dtype = _npy_header(fh, f"{path}:{key}")
    return shape, dtype, info.compress_type == zipfile.ZIP_STORED


def npz_member(path: Path, key: str, convert: Callable[[np.ndarray], np.ndarray] | None = None,
               converted: tuple[tuple, np.dtype] | None = None, tag: str = "") -> np.ndarray:
    """Array ``key`` of ``path`` (an ``.npz``), memory-mapped: in place when stored uncompressed and
    ``convert`` is None, else through a cache. ``convert`` maps a chunk of rows to its cached form and
    ``converted`` gives the cached (shape, dtype)."""
    with zipfile.ZipFile(path) as zf:
        info = _member(zf, key, path)
        with zf.open(info) as fh:
            shape, fortran, dtype = _npy_header(fh, f"{path}:{key}")
        if fortran:
            raise ClicaError(f"{path}:{key} is stored in Fortran order; expected C order as published")
        if info.compress_type == zipfile.ZIP_STORED and convert is None:
            with open(path, "rb") as raw:
                raw.seek(info.header_offset)
                local = raw.read(30)
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                raw.seek(info.header_offset + 30 + name_len + extra_len)
                _npy_header(raw, f"{path}:{key}")
                offset = raw.tell()
            return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)

        def chunks() -> Iterator[np.ndarray]:
            row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
            step = max(1, CHUNK_BYTES // max(row, 1))
            with zipfile.ZipFile(path) as z, z.open(info) as fh:
                _npy_header(fh, f"{path}:{key}")
                for start in range(0, shape[0], step):
                    n = min(step, shape[0] - start)
                    buf = fh.read(n * row)
                    if len(buf) != n * row:
                        raise ClicaError(f"{path}:{key} is truncated (row {start + len(buf) // max(row, 1)} "
                                         f"of {shape[0]})")
                    yield np.frombuffer(buf, dtype=dtype).reshape((n,) + tuple(shape[1:]))

        out_shape, out_dtype = converted or (shape, dtype)
        target = cache_folder(path) / f"{path.stem}.{key}{tag}.{fingerprint([path])}.npy"
        return cached_array(target, out_shape, out_dtype, lambda out: _fill(out, chunks(), convert))


def _fill(out: np.ndarray, chunks: Iterator[np.ndarray], convert) -> None:
    pos = 0
    for chunk in chunks:
        chunk = convert(chunk) if convert is not None else chunk
        out[pos:pos + len(chunk)] = chunk
        pos += len(chunk)


def npz_small(path: Path, key: str) -> np.ndarray:
    """A small array ``key`` of an ``.npz``, read into memory with ``allow_pickle=False``."""
    with np.load(path, allow_pickle=False) as data:
        if key not in data.files:
            raise ClicaError(f"{path} has no array {key!r} (it has {', '.join(sorted(data.files)) or 'none'})")
        try:
            return data[key]
        except ValueError:  # an object array needs pickle
            raise ClicaError(f"{path}:{key} holds Python objects, not array data; refused, nothing was loaded") \
                from None
