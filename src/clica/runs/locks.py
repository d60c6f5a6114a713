"""Advisory folder locks: one process writes a folder at a time."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ClicaError
from .atomic import _UMASK


class FolderLock:
    """An advisory lock on a folder: ``fcntl.flock`` on the file ``FOLDER/NAME``.

    The kernel drops the lock when its process exits, however it exits, so a
    lock is never stale. An exclusive lock records its holder's pid in the file
    for the message another process gets. ``shared`` locks may be held by many
    processes at once and exclude an exclusive one.
    """

    def __init__(self, folder: str | os.PathLike, name: str = ".clica.lock", shared: bool = False):
        self.path = Path(folder) / name
        self.shared = shared
        self._fd: int | None = None

    def acquire(self, blocking: bool = False) -> bool:
        """Take the lock; ``False`` if another process holds it (and ``blocking`` is off)."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        mode = (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            os.close(fd)
            return False
        if not self.shared:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def is_free(self) -> bool:
        """Whether no process holds the lock, shared or exclusive (probed by taking it for a moment)."""
        probe = FolderLock(self.path.parent, self.path.name)
        if not probe.acquire():
            return False
        probe.release()
        return True

    def holder(self) -> str:
        """``pid N`` of the process that holds (or last held) the exclusive lock, if it said."""
        try:
            pid = self.path.read_text().strip()
        except OSError:
            pid = ""
        return f"pid {pid}" if pid.isdigit() else "another process"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> "FolderLock":
        if not self.acquire():
            raise ClicaError(f"{self.path.parent} is in use by another clica process ({self.holder()}); "
                             "wait for it to finish or use another folder")
        return self

    def __exit__(self, *exc) -> None:
        self.release()
