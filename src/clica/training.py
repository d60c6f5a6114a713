"""The one training loop shared by every experiment and the Python API, and the solver its steps use.

An experiment supplies a ``step`` function (one optimisation step, returns
scalar statistics), an optional ``evaluate`` function and a ``checkpoint``
function; the loop handles step counting (1-based, as the original scripts),
resumption from ``start_step``, logging to the run folder, progress,
periodic checkpoints and stopping cleanly on Ctrl-C or SIGTERM. A step hands
its loss to a :class:`Solver`, which owns the optimiser and its schedule.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager
from typing import Callable

import torch

from .errors import ClicaError
from .progress import Progress
from .runs import RunDir, load_optimizer_state, loading

__all__ = ["is_log_step", "Solver", "StopRequest", "require_finite", "train_loop"]

DIVERGED = "the training diverged; try a lower learning rate"


@contextmanager
def flush_denormals():
    """Treat subnormal floats as 0 on the CPU for the duration (then restore the previous mode).

    Softmax weights of far negatives at a small τ (the sphere rows at τ = 0.01) underflow into
    subnormal numbers, which the CPU handles ~100× more slowly: the training step ran at half speed.
    They are below float32's precision next to the terms that matter, so flushing them changes
    no result.
    """
    before = torch.tensor([1e-39]).mul(1.0).item() == 0.0
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def require_finite(x: torch.Tensor, what: str) -> torch.Tensor:
    """``x`` itself, or a one-line error when it holds nan or inf (encodings of a diverged encoder)."""
    if not bool(torch.isfinite(x).all()):
        raise ClicaError(f"{what} hold non-finite values (nan or inf): {DIVERGED}")
    return x


class Solver:
    """An optimiser and its optional cosine learning-rate schedule over ``cosine_steps`` steps: the
    gradient step of every experiment and of :class:`clica.ContrastiveICA`, and their saved state."""

    def __init__(self, optimizer: torch.optim.Optimizer, cosine_steps: int | None = None):
        self.optimizer = optimizer
        self.scheduler = (None if cosine_steps is None
                          else torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cosine_steps))

    def step(self, loss: torch.Tensor) -> None:
        """One step down the gradient of ``loss``, then one of the schedule."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()

    def restore(self, path, optimizer: dict, scheduler: dict | None = None) -> None:
        """Load the saved states of the optimiser and (with a schedule) the schedule, read from ``path``;
        a state that does not fit is a one-line error naming ``path``."""
        load_optimizer_state(self.optimizer, optimizer, path)
        if self.scheduler is not None:
            with loading(path, "learning-rate schedule"):
                if scheduler is None or set(scheduler) - set(self.scheduler.state_dict()):
                    raise ValueError("not a cosine schedule's state")
                self.scheduler.load_state_dict(scheduler)


def is_log_step(step: int, every: int, last: int) -> bool:
    """Log at steps 1, 1 + every, 1 + 2·every, ... and at the last step (every ≥ 1)."""
    return (step - 1) % every == 0 or step == last


class StopRequest:
    """Turns SIGINT and SIGTERM into a request to stop after the current step.

    A step interrupted half-way (say, between two parameters of an optimiser
    step) would leave a state that cannot be saved, so the first signal only
    sets ``signum``; the loop finishes the step, checkpoints and raises
    :class:`KeyboardInterrupt`. A second signal interrupts at once. Signals the
    process ignores (a background job's SIGINT) stay ignored; outside the main
    thread nothing is installed.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train_loop(
    step: Callable[[int], dict],
    *,
    n_steps: int,
    start_step: int = 0,
    log_every: int = 250,
    evaluate: Callable[[int], dict] | None = None,
    checkpoint: Callable[[int], None] | None = None,
    checkpoint_every: int = 0,
    run: RunDir | None = None,
    desc: str = "train",
    phase: str | None = None,
    window: dict | None = None,
    verbose: bool = True,
    agree_stop: Callable[[bool], bool] | None = None,
    done: Callable[[int], bool] | None = None,
) -> list[dict]:
    """Run ``step(i)`` for i = start_step+1 .. n_steps and return the logged records.

    At log steps the record holds the step, wall time, the mean of each step
    statistic since the last log, and ``evaluate(i)``'s scores; it is appended
    to ``run``'s ``metrics.jsonl`` and printed. ``checkpoint(i)`` is called every
    ``checkpoint_every`` steps (0: never) and always after the last step. A
    non-finite statistic (a diverged loss) stops the loop with a one-line
    error, before anything of that step is logged or saved. On
    Ctrl-C or SIGTERM the loop ends the current step, calls
    ``checkpoint(i, force=True)`` (which must save the resumable state whatever
    the step) and raises :class:`KeyboardInterrupt`.

    ``window`` (optional) is a dict the loop keeps the running sums of the
    current log window in, and ``elapsed_s``, the wall time of all sessions so
    far (updated before each checkpoint and at the end); save it with a
    checkpoint and pass it back on resume so that a resumed run logs exactly
    what an uninterrupted one would, with ``time_s`` counting on.

    ``verbose=False`` prints nothing (no bar, no log lines); records are still returned and logged to ``run``.

    ``agree_stop`` (several processes training one model) maps this process's stop request to the
    decision of all of them, so that every process stops after the same step (one that stopped alone
    would leave the others waiting in the next step's gradient exchange).

    ``done(i)`` (optional) ends training after step i when it returns True (early stopping): that step
    is logged and checkpointed as the last one.
    """
    if log_every < 1:
        raise ValueError("log_every must be ≥ 1")
    records: list[dict] = []
    if window is None:
        window = {}
    window.setdefault("sums", {})
    window.setdefault("count", 0)
    t0 = time.monotonic() - window.get("elapsed_s", 0.0)

    def save(i: int, **kw) -> None:
        window["elapsed_s"] = round(time.monotonic() - t0, 3)
        checkpoint(i, **kw)

    with StopRequest() as stop, Progress(n_steps, desc=desc, initial=start_step, unit="step",
                                         enabled=verbose) as bar:
        say = bar.write if verbose else (lambda message: None)  # log lines on their own lines, never glued to the bar
        for i in range(start_step + 1, n_steps + 1):
            stats = step(i)
            for k, v in stats.items():
                if not math.isfinite(float(v)):
                    raise ClicaError(f"{k} became {float(v)} at step {i}: {DIVERGED}")
            if done is not None and done(i):
                n_steps = i
            sums = window["sums"]
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            window["count"] += 1
            if is_log_step(i, log_every, n_steps):
                record = {"step": i}
                if phase:
                    record["phase"] = phase
                record["time_s"] = round(time.monotonic() - t0, 3)
                record.update({k: v / window["count"] for k, v in sums.items()})
                if evaluate is not None:
                    record.update(evaluate(i))
                window["sums"], window["count"] = {}, 0
                records.append(record)
                if run is not None:
                    run.log_metrics(record)
                say(" ".join(_fmt(k, v) for k, v in record.items()))
            if checkpoint is not None and checkpoint_every and i % checkpoint_every == 0 and i != n_steps:
                save(i)
            # the bar shows the loss only (several numbers squeeze it on a narrow terminal);
            # the log lines carry every statistic
            bar.update(1, **({"loss": f"{float(stats['loss']):.4f}"} if "loss" in stats else {}))
            stopping = stop.signum is not None
            if agree_stop is not None:
                stopping = agree_stop(stopping)
            if stopping:
                if checkpoint is not None:
                    save(i, force=True)
                why = signal.Signals(stop.signum).name if stop.signum is not None else "another process stopped"
                say(f"stopped after step {i} ({why})" + ("; checkpoint saved" if checkpoint is not None else ""))
                raise KeyboardInterrupt
            if i == n_steps:  # ``done`` ended it early
                break
    window["elapsed_s"] = round(time.monotonic() - t0, 3)
    if checkpoint is not None and n_steps > start_step:
        checkpoint(n_steps)
    return records


def _fmt(key: str, value) -> str:
    if isinstance(value, float):
        return f"{key}={value:.4f}"
    return f"{key}={value}"
