"""Optional dependencies: which extra brings which module, and the one-line hint when one is missing.

``pip install clica`` installs the core (the library, the MLP and KITTI experiments, ContrastiveICA);
the extras add the rest. Modules of an extra are imported where they are used, never by ``import clica``.
"""

from __future__ import annotations

import importlib
import importlib.util

from .errors import ClicaError

# extra -> the modules it installs (pyproject.toml's [project.optional-dependencies])
EXTRAS = {
    "render": ("moderngl",),
    "3dident": ("torchvision", "faiss"),
    "cluster": ("ray",),
    "datasets": ("h5py",),
    "bench": ("cebra",),
}


def hint(extra: str) -> str:
    """``needs the [render] extra: pip install 'clica[render]'``."""
    return f"needs the [{extra}] extra: pip install 'clica[{extra}]'"


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def require(extra: str) -> None:
    """A :class:`ClicaError` carrying :func:`hint` unless every module of ``extra`` is installed."""
    if missing(extra):
        raise ClicaError(hint(extra))


def need(module: str):
    """Import ``module`` of an extra; a :class:`ClicaError` naming the extra when it is not installed."""
    extra = next(name for name, modules in EXTRAS.items() if module.split(".")[0] in modules)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != module.split(".")[0]:
            raise
        raise ClicaError(hint(extra)) from None
