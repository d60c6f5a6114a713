"""Metrics against oracles."""

import numpy as np
import pytest
import torch

from clica.metrics import correlation_matrix, linear_fit, linear_r2, mcc


@pytest.fixture
def z():
    return np.random.default_rng(0).uniform(-1, 1, size=(5000, 6))


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_identity_scores_one(z, method):
    assert mcc(z, z, method).score == pytest.approx(1.0)
    assert linear_r2(z, z) == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_permutation_sign_and_scale_keep_mcc_at_one(z, method):
    perm = np.array([3, 0, 5, 1, 4, 2])
    hz = z[:, perm] * np.array([-2.0, 0.5, 3.0, -0.1, 7.0, 1.0]) + 4.0
    result = mcc(z, hz, method)
    assert result.score == pytest.approx(1.0)
    # factor i is matched to the column holding it
    assert list(perm[result.assignment]) == list(range(6))
    assert np.allclose(np.abs(np.diag(result.corr)), 1.0)


def test_spearman_is_invariant_to_monotone_maps(z):
    hz = np.exp(3 * z)
    assert mcc(z, hz, "spearman").score == pytest.approx(1.0)
    assert mcc(z, hz, "pearson").score < 0.99


def test_linear_mixing_keeps_r2_but_lowers_mcc(z):
    A = np.random.default_rng(1).normal(size=(6, 6))
    assert linear_r2(z, z @ A) == pytest.approx(1.0)
    assert mcc(z, z @ A).score < 0.9


def test_independent_noise_scores_about_zero(z):
    noise = np.random.default_rng(2).normal(size=z.shape)
    assert mcc(z, noise).score < 0.05
    assert linear_r2(z, noise) < 0.01
    assert linear_r2(z, noise, train_test_split=True) < 0.01


def test_rectangular_matching_and_torch_inputs(z):
    hz = np.hstack([np.random.default_rng(3).normal(size=(5000, 4)), z[:, :3]])
    result = mcc(torch.tensor(z[:, :3]), torch.tensor(hz))
    assert result.score == pytest.approx(1.0)
    assert list(result.assignment) == [4, 5, 6]
    with pytest.raises(ValueError):
        mcc(z, z[:, :3])


def test_linear_fit_split_and_outputs(z):
    hz = z @ np.random.default_rng(4).normal(size=(6, 6)) + 0.01 * np.random.default_rng(5).normal(size=z.shape)
    fit = linear_fit(z, hz, train_test_split=True)
    assert fit.z_true.shape == (2500, 6) and fit.z_pred.shape == (2500, 6)
    assert 0.99 < fit.r2 <= 1.0 and fit.r2_per_dim.shape == (6,)
    assert np.allclose(fit.mse_per_dim, ((fit.z_true - fit.z_pred) ** 2).mean(0))


def test_correlation_of_constant_column_is_zero(z):
    hz = z.copy()
    hz[:, 0] = 1.0
    assert correlation_matrix(z, hz)[0, 0] == 0.0


def test_linear_r2_refuses_a_constant_true_column(z):
    # skipping it (nanmean) averaged over fewer columns than asked, and the original's r2_score
    # gives 1, 0 or a huge negative number for it depending on rounding
    zc = z.copy()
    zc[:, 2] = 0.3
    with pytest.raises(ValueError, match=r"column\(s\) \[2\] are constant"):
        linear_r2(zc, z)
    with pytest.raises(ValueError, match="constant"):
        linear_fit(zc, z, train_test_split=True)
