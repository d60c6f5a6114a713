"""The one skeleton every experiment runs in (``clica mlp``, ``kitti`` and ``3dident``).

An experiment validates its config, then fills in the template :class:`Experiment`:
it builds its model, loss and solver, restores them from a checkpoint, opens its
data stream and supplies ``step``, ``evaluate`` and ``checkpoint``. :class:`Session`
does what all of them need, once:

- **processes**: one, or one rank of a ``torchrun`` run: the process group from
  torchrun's environment, this rank's device, DDP wrapping, the contrastive
  loss of the global batch, a data stream per rank, values all ranks agree on
  (a drawn seed, a default folder name);
- **the run folder**: new, empty or a run of the same command (never someone else's folder),
  locked while the run lasts and written by rank 0 alone; a run refused before training
  leaves no folder behind;
- **resuming**: the settings that define a run must match the saved ones; a
  checkpoint is read without running code, checked, and handed to every rank;
- **training**: the shared loop (:func:`clica.training.train_loop`), with the
  bar, log lines, evaluation and checkpoints on rank 0, and a Ctrl-C/SIGTERM
  that every rank obeys at the same step;
- **the finish**: the figure (which never fails a finished run) and ``summary.json``.
"""

from __future__ import annotations

import contextlib
import shutil
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable

import torch

from .. import distributed
from ..errors import ClicaError
from ..runs import FolderLock, RunDir, check_fields, check_run_folder, first_missing, load_torch_file, resolve_seed
from ..training import flush_denormals, train_loop

__all__ = ["Experiment", "Session"]


def _comparable(value):
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


class Session:
    """One run of one experiment in this process (see the module docstring)."""

    def __init__(self, device: str | torch.device, echo: Callable[[str], None] = print):
        requested = torch.device(device)
        self.world = distributed.init_world(requested)
        self.device = distributed.local_device(requested, self.world)
        self._echo = echo
        self.run: RunDir | None = None
        self._trained = False

    # --------------------------------------------------------------- processes
    @property
    def is_main(self) -> bool:
        return self.world.is_main

    def echo(self, message: str) -> None:
        """Print on rank 0 only (one line per run, not one per process)."""
        if self.is_main:
            self._echo(message)

    def agree(self, value):
        """Rank 0's ``value`` on every rank (a drawn seed, a folder named after the time)."""
        return distributed.broadcast(value, self.world)

    def seed(self, seed: int | None, evaluation: bool = False) -> int:
        """``seed``, or (see :func:`~clica.runs.resolve_seed`) the fixed evaluation seed or one drawn on
        rank 0 and shared, so every rank builds the same mixing and model."""
        return self.agree(resolve_seed(seed, evaluation))

    def default_folder(self, name: str) -> str:
        """``runs/NAME`` with ``{time}`` in ``name`` filled in: the same on every rank."""
        return self.agree("runs/" + name.format(time=f"{datetime.now():%Y%m%d-%H%M%S}"))

    def stream_seed(self, seed: int, start_step: int = 0) -> int:
        """The seed of this rank's data stream. One process: ``seed`` (a resumed run restores the stream
        from its checkpoint). Under torchrun every rank draws different data, deterministic for the seed
        and world size; a resumed run starts fresh streams derived from the step it resumes at."""
        if not self.world.distributed:
            return seed
        return distributed.rank_seed(seed * 1_000_003 + start_step, self.world)

    def local_batch(self, batch_size: int, flag: str = "--batch-size") -> int:
        """This rank's share of the global batch (``batch_size`` keeps the original's meaning)."""
        return distributed.local_batch(batch_size, self.world, flag)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model as it trains: DDP over the ranks, or itself in one process."""
        return distributed.wrap(model, self.world, self.device)

    def contrastive(self, loss_fn, h1: torch.Tensor, h2: torch.Tensor):
        """``loss_fn`` over the global batch: every rank's embeddings are the negatives, with gradients."""
        return distributed.global_loss(loss_fn, h1, h2)

    def mean(self, value: float) -> float:
        """The mean over ranks of a per-rank statistic (a loss of the local batch)."""
        return distributed.all_mean(value, self.world)

    # ----------------------------------------------------------------- folder
    @contextlib.contextmanager
    def open(self, path: str | Path, command: str):
        """Use ``path`` as the run folder of a ``clica command`` run; rank 0 holds its lock until the block ends.

        The folder must be new, empty or hold a run of ``command`` (:func:`~clica.runs.check_run_folder`).
        If the block fails before training starts (a refused setting or file), what it created is removed:
        a refusal leaves no run folder behind.
        """
        self.run = RunDir(path)
        created = empty = None
        if self.is_main:
            check_run_folder(self.run.path, command)
            created = first_missing(self.run.path)
            empty = created is None and not any(self.run.path.iterdir())
        lock = FolderLock(self.run.path) if self.is_main else contextlib.nullcontext()
        self._trained = False
        try:
            with lock:
                # every rank enters training only once rank 0 holds the folder
                distributed.barrier(self.world)
                yield self
        except BaseException:
            if not self._trained:
                self._undo_folder(created, empty)
            raise

    def _undo_folder(self, created: Path | None, empty: bool) -> None:
        """Remove what opening the run folder made: the folders it created, or the files put into a
        folder that was empty."""
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        elif empty:
            for entry in self.run.path.iterdir():
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def saved_config(self) -> dict | None:
        """The folder's ``config.json`` as rank 0 reads it (every rank gets it), or ``None`` for a new folder."""
        config = None
        if self.is_main and self.run.file("config.json").is_file():
            config = self.run.read_config()
        return self.agree(config)

    def require_same(self, saved: dict, current: dict, keys: Iterable[str], hint: str) -> None:
        """A one-line error when a setting in ``keys`` differs from the saved run's."""
        diff = [k for k in keys if k in saved and _comparable(saved[k]) != _comparable(current.get(k))]
        if diff:
            flags = ", ".join("--" + k.replace("_", "-") for k in diff)
            raise ClicaError(f"{self.run.path} holds a run with other settings ({flags}); {hint}")

    def require_not_past(self, trained: int, asked: int, flag: str) -> None:
        """A run folder already trained past the steps now asked for is refused in one line: resuming
        it would train nothing and hand back the longer run as if it were the one asked for."""
        if trained > asked:
            raise ClicaError(f"{self.run.path} holds a run already trained {trained} steps, more than {flag} "
                             f"{asked} asks for; ask for {flag} {trained} or more to use it, or choose another "
                             "run folder for a new run")

    def write_config(self, config: dict) -> None:
        if self.is_main:
            self.run.write_config(config)

    def truncate_metrics(self, step: int) -> None:
        if self.is_main:
            self.run.truncate_metrics(step)

    def load(self, path: Path, required: dict, optional: dict | None = None, what: str = "a checkpoint"):
        """The checkpoint at ``path`` (``None`` if there is none), read without running code and checked
        on rank 0, then handed to every rank (no shared filesystem needed)."""
        state = None
        if self.is_main and path.exists():
            state = load_torch_file(path)
            check_fields(state, path, required, optional, what=what)
        return self.agree(state)

    def save(self, state: dict, path: Path) -> None:
        """Write a checkpoint atomically (rank 0)."""
        if self.is_main:
            RunDir(path.parent).save_checkpoint(state, path.name)

    # ---------------------------------------------------------------- training
    def train(self, step: Callable[[int], dict], *, evaluate=None, checkpoint=None, verbose: bool = True,
              log_to: RunDir | None = None, **loop) -> list[dict]:
        """:func:`~clica.training.train_loop` on every rank; rank 0 alone shows progress, evaluates,
        logs to the run folder (or to ``log_to``, a RunDir that also sends lines elsewhere) and checkpoints."""
        main = self.is_main
        self._trained = True
        with flush_denormals():
            return train_loop(step, evaluate=evaluate if main else None, checkpoint=checkpoint if main else None,
                              run=(log_to or self.run) if main else None, verbose=verbose and main,
                              agree_stop=(lambda stop: distributed.any_rank(stop, self.world))
                              if self.world.distributed else None, **loop)

    # ------------------------------------------------------------------ finish
    def finish(self, summary: dict | None, figure: Callable[[], Path] | None = None) -> dict | None:
        """Draw the figure (a failure is a note: a figure must never lose a finished run) and write
        ``summary.json`` (unless ``summary`` is None), on rank 0."""
        if not self.is_main:
            return summary
        if figure is not None:
            try:
                path = figure()
                if path is not None:
                    self.echo(f"figure: {path}")
            except Exception as exc:  # noqa: BLE001
                self.echo(f"note: could not draw the figure: {exc}")
        if summary is not None:
            self.run.write_summary(summary)
        return summary


class Experiment:
    """The template of one training run in a :class:`Session` (``clica mlp``'s phases, ``kitti``, ``3dident``).

    A subclass fills in, called in this order:

    - ``build()``: the model, the loss and the :class:`~clica.training.Solver` (parameters are
      created here, so the order of random draws is fixed);
    - ``restore(state)`` (resuming only): a checkpoint's model and solver states; sets ``start``, the
      step training resumed after, and ``window``, the training loop's log window;
    - ``prepare(state)``: what training needs beyond them: the data stream, resumed after ``start``
      (from ``state``, the checkpoint, when there is one), and the model as it trains (``session.wrap``);
    - ``step(i)``: one training step, returning its statistics; ``evaluate(i)``: the scores logged
      at log steps (default: none);
    - ``checkpoint_state(i)``: what a checkpoint after step i holds; ``checkpoint(i, force=False)``:
      when and where it is saved (see :func:`~clica.training.train_loop`).

    :meth:`train` runs them in :meth:`Session.train`.
    """

    def __init__(self, session: Session):
        self.session = session
        self.start, self.window = 0, {}

    def build(self) -> None:
        raise NotImplementedError

    def restore(self, state: dict) -> None:
        raise NotImplementedError

    def prepare(self, state: dict | None) -> None:
        raise NotImplementedError

    def step(self, i: int) -> dict:
        raise NotImplementedError

    def evaluate(self, i: int) -> dict:
        return {}

    def checkpoint_state(self, i: int) -> dict:
        raise NotImplementedError

    def checkpoint(self, i: int, force: bool = False) -> None:
        raise NotImplementedError

    def train(self, **loop) -> list[dict]:
        """Steps ``start`` + 1 … ``loop["n_steps"]`` in :meth:`Session.train` (``loop``: its other options)."""
        return self.session.train(self.step, evaluate=self.evaluate, checkpoint=self.checkpoint,
                                  start_step=self.start, window=self.window, **loop)
