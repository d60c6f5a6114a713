"""What a run runs on: its torch device and the versions of the libraries that shape its numbers."""

from __future__ import annotations

import platform

import numpy as np

from ..errors import ClicaError


def resolve_device(device: str | None = None, no_cuda: bool = False):
    """CUDA when available unless ``no_cuda``; an explicit ``device`` wins (a ``torch.device``)."""
    import torch

    if device:
        try:
            chosen = torch.device(device)
        except (RuntimeError, ValueError):
            raise ClicaError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:N, mps, ...)") from None
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ClicaError(f"--device {device} requested but CUDA is not available on this machine")
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
