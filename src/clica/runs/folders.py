"""Run folders: what a run writes (config, metrics log, checkpoints, summary) and which folders a command
may write into."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ClicaError
from .atomic import _jsonable, append_line, atomic_torch_save, atomic_write_bytes, atomic_write_json
from .checkpoints import _first_line, load_torch_file
from .environment import library_versions


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
