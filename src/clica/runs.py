"""Run folders, seeds, devices and atomic file writes shared by all experiments.

A run folder holds ``config.json`` (every setting, the seed actually used and
library versions), ``metrics.jsonl`` (one JSON object per log step),
checkpoints (``*.pt``) and a final ``summary.json``. Every file is written
atomically (temporary name, then rename) so an interrupted run never leaves a
truncated file behind.
"""

from __future__ import annotations

import io
import json
import os
import platform
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ClicaError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_torch_save",
    "resolve_seed",
    "seed_everything",
    "resolve_device",
    "library_versions",
    "RunDir",
]


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def resolve_seed(seed: int | None) -> int:
    """The seed to use: ``seed`` itself, or a fresh random one when it is ``None``."""
    if seed is None:
        return int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    return int(seed)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators with one seed."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | None = None, no_cuda: bool = False):
    """CUDA when available unless ``no_cuda``; an explicit ``device`` wins (a ``torch.device``)."""
    import torch

    if device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ClicaError(f"--device {device} requested but CUDA is not available on this machine")
        return torch.device(device)
    if not no_cuda and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a run's numbers."""
    import scipy
    import sklearn
    import torch

    from . import __version__

    return {
        "clica": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
    }


class RunDir:
    """A run folder: config, metrics log, checkpoints and summary."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    # config -----------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        atomic_write_json(self.file("config.json"), {**config, "versions": library_versions()})

    def read_config(self) -> dict:
        try:
            return json.loads(self.file("config.json").read_text())
        except FileNotFoundError:
            raise ClicaError(f"{self.path} is not a run folder: config.json is missing") from None
        except json.JSONDecodeError as exc:
            raise ClicaError(f"{self.file('config.json')} is corrupt: {exc}") from None

    # metrics ----------------------------------------------------------------
    def log_metrics(self, record: dict) -> None:
        """Append one JSON line to ``metrics.jsonl``."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.file("metrics.jsonl"), "a") as fh:
            fh.write(json.dumps(record, default=_jsonable) + "\n")

    def read_metrics(self) -> list[dict]:
        path = self.file("metrics.jsonl")
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def filter_metrics(self, keep) -> None:
        """Keep only the log lines for which ``keep(record)`` holds (used when resuming)."""
        kept = [r for r in self.read_metrics() if keep(r)]
        atomic_write_bytes(
            self.file("metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in kept).encode()
        )

    def truncate_metrics(self, max_step: int) -> None:
        """Drop log lines past ``max_step`` (written after the checkpoint a resume starts from)."""
        self.filter_metrics(lambda r: r.get("step", 0) <= max_step)

    # checkpoints ------------------------------------------------------------
    def save_checkpoint(self, state: dict, name: str = "checkpoint.pt") -> None:
        atomic_torch_save(self.file(name), state)

    def load_checkpoint(self, name: str = "checkpoint.pt", map_location="cpu") -> dict | None:
        import torch

        path = self.file(name)
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location=map_location, weights_only=False)
        except Exception as exc:  # a corrupt or foreign file
            raise ClicaError(f"cannot read checkpoint {path}: {exc}") from None

    # summary ----------------------------------------------------------------
    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.file("summary.json"), summary)
