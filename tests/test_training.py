"""The shared training loop stops cleanly on Ctrl-C / SIGTERM: after the current step, with a checkpoint."""

import os
import signal

import pytest

from clica.training import train_loop


@pytest.fixture(autouse=True)
def terminal_signals():
    """Each test starts as a terminal would: SIGINT raises KeyboardInterrupt, SIGTERM terminates.
    (In the full suite an earlier test left SIGINT ignored; which one is not yet found.)"""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


def _stepper(done, at, *signals):
    def step(i):
        if i == at:
            for sig in signals:  # delivered mid-step
                os.kill(os.getpid(), sig)
        done.append(i)
        return {"x": float(i)}
    return step


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_ends_the_step_checkpoints_and_raises(sig):
    before = signal.getsignal(sig)
    done, saved = [], []
    with pytest.raises(KeyboardInterrupt):
        train_loop(_stepper(done, 4, sig), n_steps=10, log_every=100, checkpoint_every=3,
                   checkpoint=lambda i, force=False: saved.append((i, force)))
    assert done == [1, 2, 3, 4]
    assert saved == [(3, False), (4, True)]
    assert signal.getsignal(sig) is before


def test_a_second_signal_interrupts_at_once():
    done = []
    with pytest.raises(KeyboardInterrupt):
        train_loop(_stepper(done, 2, signal.SIGINT, signal.SIGINT), n_steps=5, log_every=100)
    assert done == [1]


def test_an_ignored_signal_stays_ignored():
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a background job
    try:
        done = []
        train_loop(_stepper(done, 2, signal.SIGINT), n_steps=4, log_every=100)
        assert done == [1, 2, 3, 4]
    finally:
        signal.signal(signal.SIGINT, old)


class _Terminal:
    """A stream that says it is a terminal, so the loop draws a tqdm bar on it."""

    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_the_bar_shows_the_loss_and_log_lines_get_their_own_lines(monkeypatch, capsys):
    import sys

    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    stats = {"loss": 1.25, "loss_std": 0.5, "loss_block0": 0.75, "loss_block1": 0.5}
    train_loop(lambda i: stats, n_steps=6, log_every=3)
    assert "loss=1.2500" in term.text and "loss_block0" not in term.text  # one number on the bar
    lines = capsys.readouterr().out.splitlines()  # log lines go to stdout, whole
    assert [l.split()[0] for l in lines] == ["step=1", "step=4", "step=6"]
    assert all("loss_block1=0.5000" in l for l in lines)


def test_a_non_finite_statistic_stops_with_one_line_and_nothing_saved():
    from clica.errors import ClicaError

    saved = []
    with pytest.raises(ClicaError, match=r"loss became nan at step 3: the training diverged"):
        train_loop(lambda i: {"loss": float("nan") if i == 3 else 1.0}, n_steps=5, log_every=1,
                   checkpoint=lambda i, force=False: saved.append(i), checkpoint_every=1)
    assert saved == [1, 2]


def test_training_flushes_subnormals_and_restores_the_mode():
    """Subnormal softmax weights (small τ) made the CPU step twice as slow: flushed inside, and the
    process's mode is what it was afterwards."""
    import torch

    from clica.training import flush_denormals

    def subnormal_survives():
        return torch.tensor([1e-39]).mul(1.0).item() != 0.0

    torch.set_flush_denormal(False)
    with flush_denormals():
        inside = subnormal_survives()
    assert not inside and subnormal_survives()


def test_the_session_trains_with_subnormals_flushed(tmp_path):
    import torch

    from clica.experiments.skeleton import Session

    torch.set_flush_denormal(False)
    seen = []
    session = Session("cpu", echo=lambda *a: None)
    with session.open(tmp_path / "run", "mlp"):
        session.train(lambda i: seen.append(torch.tensor([1e-39]).mul(1.0).item()) or {"loss": 0.0},
                      n_steps=2, verbose=False)
    assert seen == [0.0, 0.0]
    assert torch.tensor([1e-39]).mul(1.0).item() != 0.0
