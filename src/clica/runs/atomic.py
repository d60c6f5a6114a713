"""Writes that happen whole or not at all: a temporary file renamed into place, whole-line appends, and
one-line errors for the writes that fail (a full disk, a read-only file system)."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import ClicaError

_UMASK = os.umask(0)
os.umask(_UMASK)


def os_error_reason(exc: OSError) -> str:
    """What the file system said, in words: ``no space left on device``, ``File name too long``, ..."""
    return {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
            errno.EROFS: "read-only file system"}.get(exc.errno, exc.strerror or str(exc))


def write_error(path, exc: OSError) -> ClicaError:
    """A one-line error for a failed write: ``no space left on device while writing PATH`` and the like."""
    reason = os_error_reason(exc)
    return ClicaError(f"{reason} while writing {path}; nothing was left half-written")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; renamed onto ``path`` when the block ends without error.

    A failed write (a full disk, an exception, Ctrl-C) removes the temporary file, leaves ``path`` as it
    was, and turns an :class:`OSError` into a one-line :class:`ClicaError`. Writers that stream (a zip, an
    HDF5 file) use it directly; :func:`atomic_write_bytes` is the one-buffer case.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename (:func:`atomic_path`)."""
    with atomic_path(path) as tmp, os.fdopen(os.open(tmp, os.O_WRONLY), "wb") as fh:
        fh.write(data)


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one whole line to ``path``: on a failed write (a full disk) the file is cut back to
    where it was, so it never ends in a torn line, and a one-line :class:`ClicaError` is raised."""
    data = (line.rstrip("\n") + "\n").encode()
    fd = None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            os.ftruncate(fd, start)
            raise
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        if fd is not None:
            os.close(fd)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy().tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_jsonable) + "\n").encode())


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` to ``path`` atomically."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())
