"""Memory a setting needs, checked before anything is allocated.

A flag such as ``clica mlp --n 100000`` would ask torch for petabytes and fail
deep inside an allocation (or, worse, push the machine into swap). Settings
are estimated from their sizes first and refused in one line when they cannot
fit into the memory available now.
"""

from __future__ import annotations

import os

from .errors import ClicaError

__all__ = ["available_memory", "require_memory", "require_per_core"]


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (Linux ``MemAvailable``), or ``None`` if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.3g} GB"


def require_memory(nbytes: float, what: str, advice: str) -> None:
    """A one-line :class:`ClicaError` when ``nbytes`` (an estimate that errs low) exceeds the memory available.

    ``what`` names the setting (``--n 100000``), ``advice`` what to change.
    """
    available = available_memory()
    if available is not None and nbytes > available:
        raise ClicaError(f"{what} needs at least {_gb(nbytes)} of memory, more than the {_gb(available)} "
                         f"available; {advice}")


def require_per_core(value: int, flag: str, note: str = "") -> None:
    """A one-line :class:`ClicaError` unless the count of threads or processes ``value`` lies in 0 … 4 per
    CPU core: more only oversubscribes the machine, and a count such as 10¹² would start that many."""
    top = 4 * (os.cpu_count() or 1)
    if not 0 <= value <= top:
        raise ClicaError(f"{flag} must be from 0{note} to {top} (4 per CPU core), got {value}")
