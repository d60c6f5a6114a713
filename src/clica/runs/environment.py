"""What a run runs on: its torch device and the versions of the libraries that shape its numbers."""

from __future__ import annotations

import platform

import numpy as np

from ..params import ParameterError, literal


def resolve_device(device: str | None = None, no_cuda: bool = False):
    """CUDA when available unless ``no_cuda``; an explicit ``device`` wins (a ``torch.device``); one that
    is not, or CUDA where there is none, is a :class:`~clica.params.ParameterError` naming ``device``."""
    import torch

    if device:
        try:
            chosen = torch.device(device)
        except (RuntimeError, ValueError):
            raise ParameterError(f"{{}} {literal(repr(device))} is not a torch device (cpu, cuda, cuda:N, mps, ...)",
                                 "device") from None
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ParameterError(f"{{}} {literal(device)} requested but CUDA is not available on this machine",
                                 "device")
        return chosen
    if not no_cuda and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a run's numbers."""
    import scipy
    import sklearn
    import torch

    from .. import __version__

    return {
        "clica": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
    }
