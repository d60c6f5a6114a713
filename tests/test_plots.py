"""Figures: every panel has axis labels and states the correlation it shows, matching the score."""

import numpy as np
import pytest

import clica.plots as plots
from clica.metrics import mcc


@pytest.fixture
def captured(monkeypatch):
    figs = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figs.append(fig))
    return figs


@pytest.mark.parametrize("method, name", [("pearson", "Pearson ρ"), ("spearman", "Spearman ρ")])
def test_panels_state_the_correlation_of_the_score(captured, method, name):
    rng = np.random.default_rng(0)
    z = rng.uniform(size=(500, 3))
    hz = np.concatenate([rng.normal(size=(500, 2)), np.exp(3 * z[:, [2, 0, 1]])], 1)   # monotone, not linear
    result = mcc(z, hz, method=method)
    plots.true_vs_predicted(z, hz, "unused.png", names=["a", "b", "c"], method=method)
    fig = captured[0]
    axes = [ax for ax in fig.axes if ax.axison]
    assert len(axes) == 3
    for i, ax in enumerate(axes):
        j = result.assignment[i]
        assert ax.get_title() == f"{'abc'[i]} ↔ ẑ{j}: {name} = {result.corr[i, i]:+.3f}"
        assert ax.get_xlabel() == f"true {'abc'[i]}" and ax.get_ylabel() == f"recovered ẑ{j}"
    assert f"{result.score:.3f}" in fig._suptitle.get_text() and name in fig._suptitle.get_text()
    if method == "spearman":
        assert result.score > 0.999      # ranks are preserved exactly


def test_given_assignment_is_used(captured):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(200, 2))
    hz = np.concatenate([z[:, [1]], rng.normal(size=(200, 1)), z[:, [0]]], 1)
    plots.true_vs_predicted(z, hz, "unused.png", assignment=[2, 0], method="spearman", title="t")
    titles = [ax.get_title() for ax in captured[0].axes if ax.axison]
    assert titles[0].startswith("z0 ↔ ẑ2: Spearman ρ = +1.000") and titles[1].startswith("z1 ↔ ẑ0")


def test_a_figure_keeps_the_users_own_backend():
    """clica switched pyplot to Agg at its first figure, so a notebook's plots after run_mlp never showed."""
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import matplotlib.pyplot as plt\n"
            "from clica.plots import pyplot\npyplot()\nprint(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "svg"
