"""ContrastiveICA chooses by the held-out InfoNCE loss: the validation split, n_steps="auto", restarts,
score(X) without ground truth (GridSearchCV), consistency between runs and the plot helpers."""

import numpy as np
import pytest
import torch

from clica import ContrastiveICA, consistency
from clica import estimator as est_module
from clica.data.sequences import SequencePairs
from clica.mixing import invertible_mlp

TINY = dict(n_steps=40, batch_size=64, hidden_units=(16, 16), device="cpu", random_state=0, n_init=1)


def walk(n=1500, k=2, seed=0):
    """(x, z): reflected Laplace random walks in [0, 1]^k through a random invertible MLP."""
    rng = np.random.default_rng(seed)
    z = np.cumsum(rng.laplace(0.0, 0.05, size=(n, k)), axis=0)
    z = np.abs(np.mod(z, 2.0) - 1.0)
    with torch.no_grad():
        x = invertible_mlp(k, 2, seed=seed, say=None)(torch.from_numpy(z).float()).double().numpy()
    return x, z


def test_the_validation_part_is_the_last_rows_and_no_pair_spans_the_cut():
    X = np.arange(100.0)[:, None]
    (xt, _, st), (xv, _, sv) = est_module._split(X, None, SequencePairs([100], 3), 0.1)
    assert xt[:, 0].tolist() == list(range(90)) and xv[:, 0].tolist() == list(range(90, 100))
    assert st.lengths.tolist() == [90] and sv.lengths.tolist() == [10]
    gen = torch.Generator().manual_seed(0)
    first, second = st.pair_indices(torch.arange(len(st)).repeat(20), gen)
    assert int(second.max()) <= 89  # a training pair never reaches into the held-out rows
    # sequences: the cut splits the one it falls into; earlier ones stay whole
    (xt, _, st), (xv, _, sv) = est_module._split(X, None, SequencePairs([50, 45, 5], 1), 0.1)
    assert st.lengths.tolist() == [50, 40, 0] and sv.lengths.tolist() == [0, 5, 5]
    # explicit pairs: the last rows; always at least 2 pairs to validate on
    (xt, pt, _), (xv, pv, _) = est_module._split(X, X + 1, None, 0.01)
    assert len(xv) == len(pv) == 2 and xt[-1, 0] == 97
    assert est_module._split(X, None, SequencePairs([100]), 0.0)[1] is None


def test_score_without_y_is_the_negative_validation_loss():
    x, _ = walk()
    ica = ContrastiveICA(**TINY).fit(x)
    cut = len(x) - round(0.1 * len(x))
    assert ica.score(x[cut:]) == pytest.approx(-ica.validation_loss_, rel=1e-6)
    assert ica.validation_loss_ == ica.validation_curve_[-1] and ica.validation_steps_ == [40]


def test_auto_steps_stop_when_the_validation_loss_stops_improving(monkeypatch):
    monkeypatch.setattr(est_module, "VALIDATE_EVERY", 10)
    monkeypatch.setattr(est_module, "AUTO_MAX_STEPS", 3000)
    x, _ = walk(600)
    ica = ContrastiveICA(**{**TINY, "n_steps": "auto", "learning_rate": 1e-2}).fit(x)
    curve = np.asarray(ica.validation_curve_)
    assert ica.n_iter_ < 3000 and ica.validation_steps_[-1] == ica.n_iter_
    best = int(np.argmin(curve))
    # it stopped PATIENCE validations after the last improvement (by more than AUTO_TOL) ...
    improved = [i for i in range(len(curve)) if i == 0 or curve[i] < min(curve[:i]) - est_module.AUTO_TOL]
    assert ica.n_iter_ == ica.validation_steps_[improved[-1]] + est_module.PATIENCE * 10
    # ... and kept that encoder: its validation loss is the one recorded
    assert ica.validation_loss_ == curve[improved[-1]] and curve[best] >= curve[improved[-1]] - est_module.AUTO_TOL
    cut = len(x) - round(0.1 * len(x))
    assert ica.score(x[cut:]) == pytest.approx(-ica.validation_loss_, rel=1e-6)


def test_restarts_keep_the_lowest_validation_loss_in_parallel_too():
    x, _ = walk()
    one = ContrastiveICA(**TINY).fit(x)
    three = ContrastiveICA(**{**TINY, "n_init": 3}).fit(x)
    losses = [t["validation_loss"] for t in three.trials_]
    assert len(losses) == 3 and three.validation_loss_ == min(losses) == losses[three.best_trial_]
    assert three.trials_[0]["random_state"] == one.trials_[0]["random_state"]  # the first trial is n_init=1's
    assert losses[0] == pytest.approx(one.validation_loss_, rel=1e-6)
    parallel = ContrastiveICA(**{**TINY, "n_init": 3, "n_jobs": 2}).fit(x)
    assert [t["random_state"] for t in parallel.trials_] == [t["random_state"] for t in three.trials_]
    np.testing.assert_allclose([t["validation_loss"] for t in parallel.trials_], losses, rtol=1e-4)


def test_restarts_are_compared_early_and_only_the_chosen_one_trains_on(monkeypatch):
    """Trials are compared after CHOOSE_AT steps; the chosen one then trains on to n_steps, and the result is
    the very fit that trial makes uninterrupted (the schedule and the pair order go on where they were)."""
    monkeypatch.setattr(est_module, "CHOOSE_AT", 20)
    x, _ = walk()
    for n_jobs in (None, 2):
        three = ContrastiveICA(**{**TINY, "n_init": 3, "n_jobs": n_jobs}).fit(x)
        trials = three.trials_
        assert sorted(t["n_iter"] for t in trials) == [20, 20, 40] and trials[three.best_trial_]["n_iter"] == 40
        assert three.n_iter_ == 40 and three.validation_steps_ == [20, 40]
        at_choice = [t["validation_loss"] for t in trials]
        at_choice[three.best_trial_] = three.validation_curve_[0]
        assert three.best_trial_ == int(np.argmin(at_choice))  # the lowest loss when they were compared
        # the same trial alone, uninterrupted: an n_init=1 fit whose one seed is the chosen trial's
        chosen_seed = trials[three.best_trial_]["random_state"]
        with monkeypatch.context() as m:
            m.setattr(est_module, "check_random_state", lambda _: _Seeds(chosen_seed))
            alone = ContrastiveICA(**TINY).fit(x)
        assert alone.trials_[0]["random_state"] == chosen_seed and alone.validation_steps_ == [40]
        np.testing.assert_allclose(three.transform(x), alone.transform(x), rtol=1e-5, atol=1e-6)
        assert three.loss_curve_ == pytest.approx(alone.loss_curve_, rel=1e-5)


class _Seeds:
    """A stand-in for ``check_random_state(...)``: its ``randint`` always returns ``seed``."""

    def __init__(self, seed):
        self.seed = seed

    def randint(self, high):
        return self.seed


@pytest.mark.parametrize("params, message", [
    ({"validation_fraction": 1.0}, r"validation_fraction must be a number in \[0, 1\)"),
    ({"n_steps": "auto", "validation_fraction": 0}, "n_steps=auto chooses by the validation loss"),
    ({"n_init": 2, "validation_fraction": 0}, "n_init=2 chooses by the validation loss"),
    ({"n_init": 0}, "n_init must be an integer ≥ 1"),
    ({"n_jobs": 0}, "n_jobs must be None or a non-zero integer"),
    ({"n_steps": "never"}, "n_steps must be an integer ≥ 1 or 'auto'"),
])
def test_bad_selection_parameters_are_one_line(params, message):
    with pytest.raises(ValueError, match=message):
        ContrastiveICA(**{**TINY, **params}).fit(walk(200)[0])


def test_too_few_rows_to_validate_on_are_refused():
    with pytest.raises(ValueError, match="leaves 1 pairs to train on and 2 to validate on"):
        ContrastiveICA(**TINY).fit(walk(5)[0])


def test_grid_search_with_time_series_split_needs_no_ground_truth():
    from sklearn.model_selection import GridSearchCV, TimeSeriesSplit

    x, _ = walk(1200)
    search = GridSearchCV(ContrastiveICA(**TINY), {"hidden_units": [(4,), (16, 16)]}, cv=TimeSeriesSplit(3)).fit(x)
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and (scores < 0).all()
    assert search.best_params_["hidden_units"] == [(4,), (16, 16)][int(np.argmax(scores))]


def test_score_without_y_takes_groups_and_explicit_pairs():
    x, _ = walk(400)
    ica = ContrastiveICA(**TINY).fit(x)
    assert np.isfinite(ica.score(x, groups=np.repeat([0, 1], 200)))
    assert ica.score(x, X_positive=x) > ica.score(x, X_positive=x[::-1])  # true pairs beat scrambled ones


def test_consistency_is_one_up_to_permutation_sign_and_scale_and_low_for_noise():
    rng = np.random.default_rng(0)
    h = rng.laplace(size=(3000, 4))
    same = consistency([h, -2.5 * h[:, [3, 1, 0, 2]] + 4.0])
    assert same.mcc[0, 1] == pytest.approx(1.0) and same.r2[1, 0] == pytest.approx(1.0)
    rotated = consistency([h, h @ np.linalg.qr(rng.normal(size=(4, 4)))[0]])
    assert rotated.mean_r2 == pytest.approx(1.0) and rotated.mean_mcc < 0.9  # an orthogonal map: R² only
    noise = consistency([h, rng.laplace(size=(3000, 4))])
    assert noise.mean_mcc < 0.1 and noise.mean_r2 < 0.01
    with pytest.raises(ValueError, match="at least 2"):
        consistency([h])


def test_consistency_of_fitted_models(tmp_path):
    x, _ = walk()
    runs = [ContrastiveICA(**{**TINY, "random_state": s}).fit(x) for s in (0, 1)]
    c = consistency(runs, x)
    assert c.mcc.shape == (2, 2) and 0 < c.mean_mcc <= 1
    with pytest.raises(ValueError, match="needs X"):
        consistency(runs)


def test_plot_helpers_return_labelled_figures():
    from clica.plots import plot_consistency, plot_loss_curves, plot_sources

    x, z = walk()
    ica = ContrastiveICA(**TINY).fit(x)
    for fig in (plot_loss_curves(ica), plot_sources(z, ica.transform(x)),
                plot_consistency(consistency([z, ica.transform(x)]))):
        ax = fig.axes[0]
        assert ax.get_xlabel() and ax.get_ylabel()
    assert plot_loss_curves(ica).axes[0].get_ylabel() == "InfoNCE loss"


def test_selection_attributes_survive_save_and_load(tmp_path):
    x, _ = walk()
    ica = ContrastiveICA(**{**TINY, "n_init": 2}).fit(x)
    ica.save(tmp_path / "ica.pt")
    back = ContrastiveICA.load(tmp_path / "ica.pt")
    for name in ("validation_loss_", "validation_curve_", "validation_steps_", "trials_", "best_trial_"):
        assert getattr(back, name) == getattr(ica, name)
    assert back.score(x) == ica.score(x)


@pytest.mark.parametrize("b", [0.01, 0.05, 0.2])
def test_box_width_matches_the_speed_of_the_sources(b):
    """Uniform sources on [0, 1]^4 and Laplace steps of scale b: InfoNCE is optimal at the width τ/b."""
    rng = np.random.default_rng(0)
    z = torch.tensor(rng.uniform(0, 1, (20_000, 4)), dtype=torch.float32)
    step = torch.tensor(rng.laplace(0, b, z.shape), dtype=torch.float32)
    width = est_module._matched_box_width(est_module._Pairs(z, z + step), temperature=0.2)
    assert width == pytest.approx(0.2 / b, rel=0.15)


def test_the_box_starts_at_the_matched_width_for_the_mlp_encoder_only():
    x, _ = walk()
    seen = []
    real = est_module._matched_box_width
    try:
        est_module._matched_box_width = lambda pairs, temperature: seen.append(temperature) or 7.0
        ica = ContrastiveICA(**{**TINY, "n_steps": 1, "learning_rate": 1e-9}).fit(x)
        assert seen == [TINY.get("temperature", 0.2)]
        assert ica.encoder_[-1].width.detach().numpy() == pytest.approx(7.0, abs=1e-3)
        ContrastiveICA(**{**TINY, "conditional": "normal"}).fit(x)
        assert len(seen) == 1
    finally:
        est_module._matched_box_width = real
