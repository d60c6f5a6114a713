"""clica.ContrastiveICA: scikit-learn conventions, inputs, pairs, files, and that it recovers sources.

scikit-learn's estimator checks run in full (``parametrize_with_checks``) on a
tiny configuration (2 steps, batch 16, one hidden layer of 8). None is marked
as an expected failure: ``EXPECTED_FAILED_CHECKS`` is empty. The checks that
might not seem to apply to a contrastive fit pass as they are:

* fitting twice, or fit_transform against fit + transform, gives the same result:
  the fit is deterministic for a fixed ``random_state`` (the checks set it);
* ``check_methods_subset_invariance`` / ``..._sample_order_invariance`` (outputs
  equal to 1e-7 whatever rows are encoded together): the encoder maps each row
  on its own (LayerNorm is per sample), in eval mode;
* ``check_fit2d_1sample``: one sample forms no positive pair; the error says
  "got 1 sample", which the check accepts.

``check_array_api_input`` is skipped by scikit-learn itself unless the
environment sets ``SCIPY_ARRAY_API=1``.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

from clica import ContrastiveICA
from clica.data.sequences import SequencePairs
from clica.errors import ClicaError
from clica.mixing import invertible_mlp

TINY = dict(n_steps=2, batch_size=16, hidden_units=(8,), device="cpu")
SMALL = dict(n_steps=20, batch_size=32, hidden_units=(16, 16), device="cpu", random_state=0, n_init=1)

# every check passes (see the module docstring); a check that cannot apply would be listed here with its reason
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@parametrize_with_checks([ContrastiveICA(**TINY)], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------- data

def reflect(v):
    w = np.mod(v, 2.0)
    return np.where(w > 1.0, 2.0 - w, w)


def mixed_time_series(n=4000, k=3, step=0.05, seed=0):
    """Laplace random walks reflected in [0, 1]^k, observed through a random invertible MLP."""
    rng = np.random.default_rng(seed)
    steps = rng.laplace(0.0, step, size=(n, k))
    steps[0] = rng.uniform(size=k)
    z = reflect(np.cumsum(steps, 0))
    g = invertible_mlp(k, 3, seed=seed)
    with torch.no_grad():
        x = g(torch.from_numpy(z).float()).double().numpy()
    return x, z, g


@pytest.fixture(scope="module")
def series():
    x, z, _ = mixed_time_series()
    return x, z


@pytest.fixture(scope="module")
def fitted(series):
    return ContrastiveICA(**SMALL).fit(series[0])


# --------------------------------------------------------------------------- the method works

def test_recovers_the_sources_of_a_nonlinear_time_series(series):
    x, z = series
    kw = dict(n_components=3, batch_size=512, random_state=0, device="cpu", n_init=1)
    trained = ContrastiveICA(n_steps=300, **kw).fit(x)
    untrained = ContrastiveICA(n_steps=1, learning_rate=1e-12, **kw).fit(x)
    mcc, mcc0 = trained.score(x, z), untrained.score(x, z)
    assert mcc > 0.9 and mcc > mcc0 + 0.3, (mcc, mcc0)
    assert trained.score(x, z, metric="r2") > 0.85
    assert trained.loss_curve_[-1] < trained.loss_curve_[0]


def test_explicit_pairs_recover_the_sources():
    rng = np.random.default_rng(1)
    z = rng.uniform(size=(4000, 3))
    z_pos = reflect(z + rng.laplace(0.0, 0.05, size=z.shape))
    g = invertible_mlp(3, 3, seed=1)
    with torch.no_grad():
        x, x_pos = (g(torch.from_numpy(a).float()).double().numpy() for a in (z, z_pos))
    ica = ContrastiveICA(n_components=3, n_steps=300, batch_size=512, n_init=1, random_state=0,
                         device="cpu").fit(x, X_positive=x_pos)
    assert ica.n_pairs_ == 3600  # the last 400 pairs validate
    assert ica.score(x, z) > 0.9


# --------------------------------------------------------------------------- scikit-learn conventions

def test_not_fitted_before_fit(series):
    with pytest.raises(NotFittedError):
        ContrastiveICA().transform(series[0])
    with pytest.raises(NotFittedError):
        ContrastiveICA().save("never-written.pt")


def test_clone_gives_an_unfitted_copy_with_the_same_parameters(fitted):
    c = clone(fitted)
    assert c.get_params() == fitted.get_params()
    assert not hasattr(c, "encoder_")
    c.set_params(temperature=0.5, conditional="normal")
    assert c.temperature == 0.5 and fitted.temperature == 0.2


def test_clone_copies_a_custom_encoder_module():
    module = nn.Linear(3, 2)
    c = clone(ContrastiveICA(encoder=module))
    assert isinstance(c.encoder, nn.Linear) and c.encoder is not module


def test_pipeline_with_a_scaler_and_groups(series):
    x, z = series
    pipe = make_pipeline(StandardScaler(), ContrastiveICA(**SMALL))
    groups = np.repeat([0, 1], len(x) // 2)
    out = pipe.fit(x * 1000.0, contrastiveica__groups=groups).transform(x * 1000.0)
    assert out.shape == (len(x), 3)
    assert pipe.score(x * 1000.0, z) == pytest.approx(pipe[-1].score(pipe[0].transform(x * 1000.0), z))


def test_fit_ignores_a_target_y_as_pipelines_and_cross_validation_pass_it(series):
    x, z = series
    plain = ContrastiveICA(**SMALL).fit(x).transform(x)
    np.testing.assert_array_equal(ContrastiveICA(**SMALL).fit(x, z[:, 0]).transform(x), plain)
    np.testing.assert_array_equal(ContrastiveICA(**SMALL).fit(x, z).transform(x), plain)
    np.testing.assert_array_equal(ContrastiveICA(**SMALL).fit_transform(x, z), plain)


def test_same_random_state_same_fit_and_global_rng_untouched(series):
    x = series[0]
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = ContrastiveICA(**SMALL).fit(x).transform(x)
    after = torch.rand(3)
    b = ContrastiveICA(**SMALL).fit(x).transform(x)
    np.testing.assert_array_equal(a, b)
    assert torch.equal(before, after)
    c = ContrastiveICA(**{**SMALL, "random_state": 1}).fit(x).transform(x)
    assert not np.allclose(a, c)


def test_fitted_attributes(fitted, series):
    x = series[0]
    assert fitted.n_features_in_ == 3 and fitted.n_components_ == 3 and fitted.input_shape_ == (3,)
    assert fitted.n_iter_ == 20 == len(fitted.loss_curve_) and fitted.batch_size_ == 32
    cut = len(x) - round(0.1 * len(x))  # the last 10 % of the rows hold the validation pairs
    assert fitted.n_pairs_ == cut - 1  # the last row of the training part starts no pair
    assert fitted.validation_loss_ == fitted.validation_curve_[-1] and fitted.validation_steps_ == [20]
    assert fitted.trials_ == [{"random_state": fitted.trials_[0]["random_state"],
                               "validation_loss": fitted.validation_loss_, "n_iter": 20}]
    assert fitted.device_ == "cpu"
    np.testing.assert_allclose(fitted.mean_, x.mean(0))
    assert list(fitted.get_feature_names_out()) == ["contrastiveica0", "contrastiveica1", "contrastiveica2"]


def test_output_dtype_follows_the_input(fitted, series):
    x = series[0]
    assert fitted.transform(x).dtype == np.float64
    assert fitted.transform(x.astype(np.float32)).dtype == np.float32


def test_dataframe_feature_names():
    pd = pytest.importorskip("pandas")
    x, _, _ = mixed_time_series(n=200)
    df = pd.DataFrame(x, columns=["a", "b", "c"])
    ica = ContrastiveICA(**SMALL).fit(df)
    assert list(ica.feature_names_in_) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="feature names"):
        ica.transform(df.rename(columns={"a": "q"}))


def test_a_batch_larger_than_the_data_shrinks_to_all_pairs():
    x, _, _ = mixed_time_series(n=11)
    ica = ContrastiveICA(**{**SMALL, "batch_size": 1024, "validation_fraction": 0}).fit(x)
    assert ica.batch_size_ == 10 and ica.n_pairs_ == 10 and ica.validation_loss_ is None


def test_a_failed_refit_leaves_the_previous_fit_intact(series):
    x = series[0][:300]
    ica = ContrastiveICA(**SMALL).fit(x)
    before = ica.transform(x)
    with pytest.raises(ValueError, match="returns 2 outputs, but n_components is 3"):
        ica.set_params(encoder=_Net(), n_components=3).fit(x * 10.0)
    np.testing.assert_array_equal(ica.set_params(encoder="mlp").transform(x), before)


def test_pickle_round_trip(fitted, series):
    x = series[0]
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.transform(x), fitted.transform(x))


def test_verbose_shows_progress_and_quiet_prints_nothing(series, capsys):
    x = series[0][:300]
    ContrastiveICA(**SMALL).fit(x)
    assert capsys.readouterr() == ("", "")
    ContrastiveICA(**{**SMALL, "verbose": True}).fit(x)
    out = capsys.readouterr()
    assert "loss=" in out.out and "ContrastiveICA" in out.err


@pytest.mark.parametrize("conditional", ["normal", "vmf"])
def test_other_conditionals(series, conditional):
    x = series[0][:500]
    h = ContrastiveICA(**{**SMALL, "conditional": conditional}).fit(x).transform(x)
    assert h.shape == (500, 3) and np.isfinite(h).all()
    if conditional == "vmf":  # on the unit sphere
        np.testing.assert_allclose(np.linalg.norm(h, axis=1), 1.0, rtol=1e-5)


# --------------------------------------------------------------------------- pairs from sequences

def test_sequence_pairs_stay_in_their_sequence_and_within_max_delta_t():
    pairs = SequencePairs([5, 1, 0, 4], max_delta_t=3)
    assert pairs.starts.tolist() == [0, 1, 2, 3, 6, 7, 8]  # the last frame of each sequence starts none
    assert pairs.seq_last.tolist() == [4, 4, 4, 4, 9, 9, 9]
    g = torch.Generator().manual_seed(0)
    idx = torch.arange(len(pairs)).repeat(200)
    first, second = pairs.pair_indices(idx, g)
    k = second - first
    assert (k >= 1).all() and (k <= 3).all() and (second <= pairs.seq_last[idx]).all()
    assert set(k[first == 0].tolist()) == {1, 2, 3}  # k uniform in 1..max_delta_t
    assert set(k[first == 3].tolist()) == {1}        # clipped at the sequence's end


def test_groups_and_a_list_of_sequences_give_the_same_pairs(series):
    x = series[0][:600]
    parts = [x[:250], x[250:260], x[260:]]
    ids = np.concatenate([np.full(250, "b"), np.full(10, "a"), np.full(340, "c")])
    kw = {**SMALL, "max_delta_t": 3}
    from_list = ContrastiveICA(**kw).fit(parts)
    from_groups = ContrastiveICA(**kw).fit(x, groups=ids)
    # the last 60 rows are held out: the cut falls into "c", leaving 249 + 9 + 279 pairs to train on
    assert from_list.n_pairs_ == from_groups.n_pairs_ == 537
    np.testing.assert_array_equal(from_list.transform(x), from_groups.transform(x))
    out = from_list.transform(parts)  # a list in, a list out
    assert [len(o) for o in out] == [250, 10, 340]
    # ids need not be contiguous: rows of a sequence keep their order, sequences their first appearance
    perm = np.concatenate([np.arange(0, 250, 2), np.arange(250, 260), np.arange(1, 250, 2), np.arange(260, 600)])
    interleaved = ContrastiveICA(**kw).fit(x[perm], groups=ids[perm])
    in_order = ContrastiveICA(**kw).fit(
        [x[perm][ids[perm] == "b"], x[perm][ids[perm] == "a"], x[perm][ids[perm] == "c"]])
    np.testing.assert_array_equal(interleaved.transform(x), in_order.transform(x))


def test_time_series_pairs_differ_from_groups_of_one(series):
    x = series[0][:300]
    with pytest.raises(ValueError, match="got 300 samples forming 0 positive pair starts"):
        ContrastiveICA(**SMALL).fit(x, groups=np.arange(300))


# --------------------------------------------------------------------------- files

def test_save_load_round_trip(fitted, series, tmp_path):
    x = series[0]
    path = tmp_path / "ica.pt"
    fitted.save(path)
    loaded = ContrastiveICA.load(path)
    np.testing.assert_array_equal(loaded.transform(x), fitted.transform(x))
    assert loaded.get_params() == fitted.get_params()
    assert loaded.loss_curve_ == pytest.approx(fitted.loss_curve_)
    np.testing.assert_array_equal(loaded.mean_, fitted.mean_)
    raw = torch.load(path, weights_only=True)  # plain data only
    assert raw["format"] == "clica.ContrastiveICA" and isinstance(raw["params"]["hidden_units"], list)


class _Net(nn.Module):
    def __init__(self, d=3, k=2, hidden=16):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, k))

    def forward(self, x):
        return self.body(x)


def test_custom_encoder_module(series, tmp_path):
    x = series[0][:500]
    module = _Net()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    ica = ContrastiveICA(**{**SMALL, "encoder": module}).fit(x)
    assert ica.n_components_ == 2 and ica.transform(x).shape == (500, 2)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())  # the parameter is not trained
    ica.save(tmp_path / "custom.pt")
    with pytest.raises(ClicaError, match=r"custom encoder \(_Net\): pass a module of the same architecture"):
        ContrastiveICA.load(tmp_path / "custom.pt")
    with pytest.raises(ClicaError, match=r"cannot load .* into the encoder: 3 of another shape"):
        ContrastiveICA.load(tmp_path / "custom.pt", encoder=_Net(hidden=8))
    with pytest.raises(ClicaError, match="the encoder module returns 3 outputs, but n_components is 2"):
        ContrastiveICA.load(tmp_path / "custom.pt", encoder=_Net(k=3))
    loaded = ContrastiveICA.load(tmp_path / "custom.pt", encoder=_Net())
    np.testing.assert_array_equal(loaded.transform(x), ica.transform(x))
    with pytest.raises(ValueError, match="returns 2 outputs, but n_components is 4"):
        ContrastiveICA(**{**SMALL, "encoder": _Net(), "n_components": 4}).fit(x)


def test_load_refuses_files_that_could_run_code_or_are_not_estimators(fitted, tmp_path):
    bad = tmp_path / "code.pt"
    torch.save({"format": "clica.ContrastiveICA", "thing": _Net()}, bad)
    with pytest.raises(ClicaError, match="holds objects other than tensors and plain data"):
        ContrastiveICA.load(bad)
    other = tmp_path / "other.pt"
    torch.save({"model": {}}, other)
    with pytest.raises(ClicaError, match="is not a saved ContrastiveICA"):
        ContrastiveICA.load(other)


def test_conv_encoder_on_images(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.uniform(size=(40, 64, 64)) > 0.5  # N × 64 × 64 boolean masks, as KITTI
    ica = ContrastiveICA(n_components=4, encoder="conv", n_steps=2, batch_size=8, random_state=0, device="cpu")
    h = ica.fit(frames).transform(frames)
    assert h.shape == (40, 4) and h.dtype == np.float32 and ica.input_shape_ == (1, 64, 64)
    np.testing.assert_array_equal(ica.transform(frames[:, None]), h)
    ica.save(tmp_path / "conv.pt")
    np.testing.assert_array_equal(ContrastiveICA.load(tmp_path / "conv.pt").transform(frames), h)
    with pytest.raises(ValueError, match=r"encoder='conv' needs images N × C × 64 × 64"):
        ica.transform(rng.uniform(size=(4, 1, 32, 32)))


# --------------------------------------------------------------------------- input errors: one clear line each

def _bad_inputs(x):
    nan, inf = x.copy(), x.copy()
    nan[5, 1], inf[7, 0] = np.nan, np.inf
    return [
        ("nan", dict(), dict(X=nan), r"^X contains NaN \(first in row 5\); ContrastiveICA needs finite values$"),
        ("inf", dict(), dict(X=inf), r"^X contains infinity \(first in row 7\)"),
        ("positive nan", dict(), dict(X=x, X_positive=nan), r"^X_positive contains NaN"),
        ("positive shape", dict(), dict(X=x, X_positive=x[:, :2]),
         r"^X_positive has shape \(100, 2\), X has shape \(100, 3\)"),
        ("groups length", dict(), dict(X=x, groups=np.zeros(99)),
         r"^groups has shape \(99,\), X has 100 rows: give one sequence id per row of X$"),
        ("groups and pairs", dict(), dict(X=x, X_positive=x, groups=np.zeros(100)), "not both"),
        ("one sample", dict(), dict(X=x[:1]), r"got 1 sample forming 0 positive pair starts"),
        ("3-d for mlp", dict(), dict(X=x.reshape(100, 3, 1)), r"encoder='mlp' needs a 2-D array"),
        ("1-d", dict(), dict(X=x[:, 0]), r"^X is 1-D: give a 2-D array, samples × features \(Reshape your data with "
                                         r"X.reshape\(-1, 1\)"),
        ("no samples", dict(), dict(X=x[:0]), r"^Found array with 0 sample\(s\)"),
        ("conditional", dict(conditional="gauss"), dict(X=x),
         r"^unknown conditional 'gauss'; choose one of 'laplace', 'normal', 'vmf'$"),
        ("encoder", dict(encoder="resnet"), dict(X=x), r"^unknown encoder 'resnet'; choose 'mlp', 'conv'"),
        ("conv without n", dict(encoder="conv"), dict(X=x), r"encoder='conv' needs n_components"),
        ("batch", dict(batch_size=1), dict(X=x), r"^batch_size must be an integer ≥ 2, got 1$"),
        ("temperature", dict(temperature=0.0), dict(X=x), r"^temperature must be a finite number > 0, got 0.0$"),
        ("max_delta_t", dict(max_delta_t=0), dict(X=x), r"^max_delta_t must be an integer ≥ 1, got 0$"),
        ("hidden", dict(hidden_units=(8, 0)), dict(X=x), r"hidden_units must be a tuple of positive integers"),
        ("device", dict(device="tpu"), dict(X=x), r"^device 'tpu' is not a torch device"),
    ]


@pytest.mark.parametrize("case", range(18))
def test_fit_input_errors_are_one_clear_line(case):
    x, _, _ = mixed_time_series(n=100)
    name, params, data, pattern = _bad_inputs(x)[case]
    with pytest.raises(ValueError, match=pattern) as info:
        ContrastiveICA(**{**TINY, **params}).fit(**data)
    assert "\n" not in str(info.value), name


def test_transform_and_score_errors_are_one_clear_line(fitted, series):
    x, z = series
    cases = [
        (lambda: fitted.transform(x[:, :2]), r"X has 2 features, but ContrastiveICA is expecting 3 features"),
        (lambda: fitted.transform(np.where(np.arange(3) == 1, np.nan, x[:10])), r"^X contains NaN"),
        (lambda: fitted.score(x, z, metric="auc"), r"^unknown metric 'auc'; choose 'mcc' or 'r2'$"),
        (lambda: fitted.score(x, z[:10]), r"^y has shape \(10, 3\), X has 4000 samples"),
        (lambda: fitted.score(x, np.hstack([z, z])), r"^y has 6 sources, more than the 3 components recovered$"),
        (lambda: fitted.score(x[:2]), r"^X forms 1 positive pair: the InfoNCE score needs at least 2"),
    ]
    for call, pattern in cases:
        with pytest.raises(ValueError, match=pattern) as info:
            call()
        assert "\n" not in str(info.value), pattern


def test_cuda_requested_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    x, _, _ = mixed_time_series(n=50)
    with pytest.raises(ValueError, match=r"^device cuda requested but CUDA is not available"):
        ContrastiveICA(**{**TINY, "device": "cuda"}).fit(x)


@pytest.mark.cuda
def test_fit_on_cuda_and_load_on_the_cpu(series, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x, z = series
    ica = ContrastiveICA(**{**SMALL, "device": "cuda"}).fit(x)
    assert ica.device_.startswith("cuda")
    ica.save(tmp_path / "gpu.pt")
    cpu = ContrastiveICA.load(tmp_path / "gpu.pt", device="cpu")
    np.testing.assert_allclose(cpu.transform(x), ica.transform(x), atol=1e-5)
