"""Run folders, seeds, devices and atomic file writes shared by all experiments.

A run folder holds ``config.json`` (every setting, the seed actually used,
library versions and torch's thread count), ``metrics.jsonl`` (one JSON object per log step),
checkpoints (``*.pt``) and a final ``summary.json``. Every file is written
atomically (temporary name, then rename) so an interrupted run never leaves a
truncated file behind.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import pickle
import platform
import random
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .errors import ClicaError
from .params import ParameterError, literal

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "append_line",
    "os_error_reason",
    "write_error",
    "atomic_write_json",
    "atomic_torch_save",
    "SEED_MAX",
    "check_seed",
    "EVALUATION_SEED",
    "resolve_seed",
    "seed_everything",
    "resolve_device",
    "library_versions",
    "load_torch_file",
    "check_fields",
    "load_module_state",
    "check_module_state",
    "load_optimizer_state",
    "loading",
    "RunDir",
    "run_command",
    "check_output_folder",
    "check_run_folder",
    "first_missing",
    "FolderLock",
]


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


# Seeds are whole numbers 0 … 2³² − 1 (NumPy's range; torch takes 64 bits, and derived stream seeds
# such as ``seed * 7919 + k`` must stay within them).
SEED_MAX = 2**32 - 1
EVALUATION_SEED = 0


def check_seed(seed: int | None, name: str = "--seed") -> None:
    """A one-line :class:`ClicaError` unless ``seed`` is ``None`` or a whole number in 0 … :data:`SEED_MAX`."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEED_MAX:
        raise ClicaError(f"{name} must be a whole number from 0 to {SEED_MAX}, got {seed}")


def resolve_seed(seed: int | None, evaluation: bool = False) -> int:
    """The seed to use: ``seed`` itself (checked by :func:`check_seed`); without one, :data:`EVALUATION_SEED`
    for a run that only evaluates (a measurement repeats: the same samples on every call) and a fresh
    random one for training (as the original drew one; it is recorded)."""
    if seed is None:
        return EVALUATION_SEED if evaluation else int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    check_seed(seed)
    return int(seed)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators with one seed."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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

    from . import __version__

    return {
        "clica": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
    }


# --------------------------------------------------------------------------- safe loading
#
# Files given to clica (checkpoints, models) are read with ``weights_only=True``:
# tensors, dicts, lists, numbers and strings only; anything that would make the
# unpickler call code is refused. A file that does not have the expected
# content gives one line naming the file and what is wrong, never a traceback.

def _first_line(exc: BaseException, limit: int = 200) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def load_torch_file(path: str | os.PathLike, map_location="cpu") -> Any:
    """``torch.load(path, weights_only=True)``; every failure is a one-line :class:`ClicaError`.

    A file holding other objects than tensors and plain data (numbers,
    strings, lists, dicts) is refused and never loaded another way.
    """
    import torch

    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise ClicaError(f"cannot read {path}: {_first_line(exc)}") from None
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise ClicaError(f"{path} holds objects other than tensors and plain data{what} and was not loaded "
                         f"(clica only reads checkpoints that cannot run code)") from None
    except Exception as exc:  # truncated, not a torch file, unreadable, ...
        raise ClicaError(f"cannot read {path}: {type(exc).__name__}: {_first_line(exc)}") from None


def _type_name(t) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return "None" if t is type(None) else t.__name__


def check_fields(state: Any, path, required: dict | None = None, optional: dict | None = None,
                 what: str = "a clica checkpoint") -> dict:
    """Check that ``state`` is a dict with the ``required`` (and, where present, ``optional``) fields.

    Both map a key to a type or a tuple of types; a key ``"a.b"`` is the field
    ``b`` of the dict ``state["a"]``. Raises a one-line :class:`ClicaError`
    naming ``path`` and what is missing or of the wrong type; returns ``state``.
    """
    if not isinstance(state, dict):
        raise ClicaError(f"{path} is not {what}: it holds a {type(state).__name__}, not a dict")
    missing, wrong = [], []
    for fields, needed in ((required or {}, True), (optional or {}, False)):
        for key, types in fields.items():
            value, present = state, True
            for part in key.split("."):
                if isinstance(value, dict) and part in value:
                    value = value[part]
                else:
                    present = False
                    break
            if not present:
                if needed:
                    missing.append(key)
            elif not isinstance(value, types):
                wrong.append(f"{key} is a {type(value).__name__}, not {_type_name(types)}")
    if missing:
        raise ClicaError(f"{path} is not {what}: it lacks {', '.join(missing)}")
    if wrong:
        raise ClicaError(f"{path} is not {what}: {'; '.join(wrong[:3])}")
    return state


def _some(keys: list, n: int = 2) -> str:
    return ", ".join(str(k) for k in keys[:n]) + (", …" if len(keys) > n else "")


def load_module_state(module, state: Any, path, name: str,
                      may_lack: Callable[[str], bool] | None = None) -> None:
    """``module.load_state_dict(state)`` with a short one-line error when it does not fit.

    The error counts missing and unexpected keys and tensors of another shape,
    with a couple of examples each, e.g. ``cannot load RUN/f.pt into rn18:
    122 missing keys (e.g. 0.weight, 1.weight, …), 3 unexpected (e.g. ...)``.
    Keys for which ``may_lack(key)`` holds may be absent from the file (they
    keep their current values).
    """
    check_module_state(module.state_dict(), state, path, name, may_lack)
    with loading(path, f"state of {name}"):
        module.load_state_dict(state, strict=False)


def check_module_state(own: dict, state: Any, path, name: str,
                       may_lack: Callable[[str], bool] | None = None) -> None:
    """The checks of :func:`load_module_state` against a module's own state dict ``own``, loading
    nothing: with ``own`` from a module built on the ``meta`` device, a file is checked against
    the sizes it asks for before any memory is allocated."""
    import torch

    prefix = f"cannot load {path} into {name}"
    if not isinstance(state, dict):
        raise ClicaError(f"{prefix}: it holds a {type(state).__name__}, not a state dict")
    bad_keys = [k for k in state if not isinstance(k, str)]
    if bad_keys:
        raise ClicaError(f"{prefix}: it is not a state dict (keys such as {bad_keys[0]!r} are not names)")
    missing = [k for k in own if k not in state and not (may_lack and may_lack(k))]
    unexpected = [k for k in state if k not in own]
    not_tensors = [k for k in state if k in own and torch.is_tensor(own[k]) and not torch.is_tensor(state[k])]
    shapes = [k for k in state if k in own and torch.is_tensor(own[k]) and torch.is_tensor(state[k])
              and state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key{'s' if len(missing) > 1 else ''} (e.g. {_some(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {_some(unexpected)})")
    if shapes:
        k = shapes[0]
        problems.append(f"{len(shapes)} of another shape (e.g. {k}: {tuple(state[k].shape)} in the file, "
                        f"{tuple(own[k].shape)} here)")
    if not_tensors:
        problems.append(f"{len(not_tensors)} not tensors (e.g. {_some(not_tensors)})")
    if problems:
        raise ClicaError(f"{prefix}: {', '.join(problems)}")


def load_optimizer_state(optimizer, state: Any, path) -> None:
    """``optimizer.load_state_dict(state)``; one line when the state does not fit its parameters."""
    import torch

    if not isinstance(state, dict):
        raise ClicaError(f"cannot load {path}: its optimizer state is a {type(state).__name__}, not a dict")
    with loading(path, "optimizer state"):
        optimizer.load_state_dict(state)
    for group in optimizer.param_groups:  # torch checks the number of parameters, not their shapes
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if torch.is_tensor(value) and value.dim() > 0 and value.shape != p.shape:
                    raise ClicaError(f"cannot load {path}: its optimizer state does not fit the model "
                                     f"({key} of shape {tuple(value.shape)} for a parameter of shape "
                                     f"{tuple(p.shape)})")


@contextlib.contextmanager
def loading(path, what: str) -> Iterator[None]:
    """Turn the errors of applying part of a loaded file (``what``) into one line naming ``path``."""
    try:
        yield
    except ClicaError:
        raise
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError) as exc:
        detail = _first_line(exc) if not isinstance(exc, KeyError) else f"no {exc}"
        raise ClicaError(f"cannot load {path}: its {what} does not fit ({detail})") from None


class RunDir:
    """A run folder: config, metrics log, checkpoints and summary."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    # config -----------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        """``config`` with the library versions and torch's thread count: the numbers of torch's CPU
        reductions depend on how many threads split them, so ``clica rerun`` uses the same count."""
        import torch

        atomic_write_json(self.file("config.json"), {**config, "versions": library_versions(),
                                                     "torch_threads": torch.get_num_threads()})

    def read_config(self) -> dict:
        path = self.file("config.json")
        try:
            config = json.loads(path.read_text())
        except FileNotFoundError:
            raise ClicaError(f"{self.path} is not a run folder: config.json is missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ClicaError(f"{path} is corrupt: {_first_line(exc)}") from None
        if not isinstance(config, dict):
            raise ClicaError(f"{path} is corrupt: it holds a {type(config).__name__}, not an object of settings")
        return config

    def saved_seed(self, config: dict, required: bool = True) -> int | None:
        """The seed recorded in ``config`` (from :meth:`read_config`): an int, or ``None`` when absent
        and not ``required``."""
        seed = config.get("seed")
        if seed is None and not required:
            return None
        if isinstance(seed, bool) or not isinstance(seed, int):
            what = "no seed" if seed is None else f"a seed that is not a whole number ({seed!r})"
            raise ClicaError(f"{self.file('config.json')} has {what}; cannot resume this run")
        return seed

    # metrics ----------------------------------------------------------------
    def log_metrics(self, record: dict) -> None:
        """Append one JSON line to ``metrics.jsonl`` (whole, or not at all)."""
        self.path.mkdir(parents=True, exist_ok=True)
        append_line(self.file("metrics.jsonl"), json.dumps(record, default=_jsonable))

    def read_metrics(self) -> list[dict]:
        """The log's records; a torn last line (a crash mid-write) is dropped with a note."""
        path = self.file("metrics.jsonl")
        if not path.exists():
            return []
        text = path.read_text(errors="replace")
        lines = text.splitlines()
        records = []
        for k, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if k == len(lines) - 1 and not text.endswith("\n"):
                    print(f"note: dropped the incomplete last line of {path} (a write that was cut off)")
                    continue
                raise ClicaError(f"{path} line {k + 1} is not a JSON record; the log is corrupt") from None
        return records

    def filter_metrics(self, keep) -> None:
        """Keep only the log lines for which ``keep(record)`` holds (used when resuming)."""
        kept = [r for r in self.read_metrics() if keep(r)]
        atomic_write_bytes(
            self.file("metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in kept).encode()
        )

    def truncate_metrics(self, max_step: int) -> None:
        """Drop log lines past ``max_step``, written after the checkpoint a run resumes from; at step 0
        (no checkpoint: a run killed before its first one, or one whose checkpoint was deleted) the
        log starts clean. Either is said when it drops lines."""
        records = self.read_metrics()
        kept = [r for r in records if r.get("step", 0) <= max_step]
        if len(kept) == len(records):
            return
        dropped = len(records) - len(kept)
        if max_step == 0:
            print(f"note: {self.file('metrics.jsonl')} held {dropped} lines of an earlier start without a "
                  "checkpoint; the run starts from step 1 with a clean log")
        else:
            print(f"note: dropped {dropped} lines past step {max_step} from {self.file('metrics.jsonl')} "
                  "(written after the checkpoint this run resumes from)")
        atomic_write_bytes(self.file("metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in kept).encode())

    # checkpoints ------------------------------------------------------------
    def save_checkpoint(self, state: dict, name: str = "checkpoint.pt") -> None:
        atomic_torch_save(self.file(name), state)

    def load_checkpoint(self, name: str = "checkpoint.pt", map_location="cpu") -> Any:
        """The checkpoint ``name`` (``None`` if there is none), loaded without running code.

        Callers check its fields with :func:`check_fields`.
        """
        path = self.file(name)
        if not path.exists():
            return None
        return load_torch_file(path, map_location=map_location)

    # summary ----------------------------------------------------------------
    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.file("summary.json"), summary)


def run_command(config: dict, source: str) -> str:
    """Which clica command wrote the run ``config``: its ``command`` field, else told by its settings
    (runs of older versions)."""
    if isinstance(config.get("command"), str):
        return config["command"]
    for command, key in (("3dident", "offline_dataset"), ("kitti", "kitti_max_delta_t"), ("mlp", "space_type")):
        if key in config:
            return command
    raise ClicaError(f"{source} is not the config of a clica mlp, kitti or 3dident run")


# lock files clica leaves in a folder it writes (they say nothing about whose folder it is)
_OWN_LOCKS = {".clica.lock", ".render-claim.lock", ".render.lock"}


def check_output_folder(path: str | os.PathLike, markers: tuple[str, ...], what: str) -> Path | None:
    """Refuse to write into ``path`` unless it is new, empty, or holds ``what`` (one of the ``markers`` files).

    clica writes checkpoints, logs, figures and datasets into the folders it is given: into a non-empty
    folder that holds none of its own (a package's source, a home folder) it would scatter them among
    someone else's files, so that is one line instead. Returns the marker found, or ``None``.
    """
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_dir():
        raise ClicaError(f"{path} is a file, not a folder")
    entries = sorted(e.name for e in path.iterdir() if e.name not in _OWN_LOCKS)
    if not entries:
        return None
    for marker in markers:
        if (path / marker).is_file():
            return path / marker
    shown = ", ".join(entries[:3]) + (", …" if len(entries) > 3 else "")
    raise ClicaError(f"{path} is not empty ({shown}) and holds no {what}; choose a new or empty folder")


def check_run_folder(path: str | os.PathLike, command: str) -> None:
    """Refuse a run folder for ``clica command`` that is not new, empty or a run of that command
    (see :func:`check_output_folder`); a run of another command there is refused too."""
    config = check_output_folder(path, ("config.json",), f"clica {command} run")
    if config is None:
        return
    found = run_command(RunDir(path).read_config(), str(config))
    if found != command:
        raise ClicaError(f"{path} holds a clica {found} run, not a {command} run; choose another folder")


def first_missing(path: str | os.PathLike) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (what creating ``path`` would create), or
    ``None`` when ``path`` exists."""
    path = Path(path).absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


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
