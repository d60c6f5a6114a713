"""The disentanglement metric suite: oracles, cases computed by hand, and input checks."""

import math

import numpy as np
import pytest

from clica.metrics import (
    beta_vae_score,
    dci,
    explicitness,
    factor_vae_score,
    linear_r2,
    mcc,
    mig,
    modularity,
    sap,
    score,
)
from clica.metrics.dci import completeness, disentanglement
from clica.metrics.discrete import discrete_factors, entropy, histogram_discretize, mutual_information

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def split(codes, factors, n_train):
    return codes[:n_train], factors[:n_train], codes[n_train:], factors[n_train:]


@pytest.fixture(scope="module")
def grid():
    """Three discrete factors with 4 values each; codes: a permutation of them, a rotation of the first
    two by 45°, and noise."""
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 4, size=(800, 3)).astype(float)
    jitter = 0.02 * rng.normal(size=factors.shape)
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return {"factors": factors,
            "identity": factors[:, [2, 0, 1]] * [3.0, -1.0, 0.5] + jitter,
            "rotated": factors @ rotation.T + jitter,
            "noise": rng.normal(size=factors.shape)}


@pytest.fixture(scope="module")
def scores(grid):
    return {name: score(grid[name], grid["factors"], train_fraction=0.75)
            for name in ("identity", "rotated", "noise")}


def test_mig_on_two_binary_factors_by_hand():
    """Codes y1 and (y1 AND y2): I(c1;y1) = ln 2, I(c1;y2) = 0, I(c2;y1) = I(c2;y2) = a, so the gaps are
    ln 2 − a and a over entropies ln 2 each: MIG = 1/2. Modularity: code 1 scores 1, code 2 (equal MI) 0."""
    y = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 5, dtype=float)
    codes = np.stack([y[:, 0], y[:, 0] * y[:, 1]], axis=1)
    a = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) - math.log(2) / 2
    mi = mutual_information(histogram_discretize(codes), y)
    assert mi == pytest.approx(np.array([[math.log(2), 0.0], [a, a]]), abs=1e-12)
    assert entropy(y) == pytest.approx([math.log(2)] * 2)
    assert mig(codes, y) == pytest.approx(0.5, abs=1e-12)
    assert modularity(codes, y) == pytest.approx(0.5, abs=1e-12)


def test_discrete_information_equals_sklearn_and_numpy_histograms():
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(1)
    codes, factors = rng.normal(size=(500, 3)), rng.integers(0, 6, size=(500, 2)).astype(float)
    binned = histogram_discretize(codes, 7)
    for i in range(3):
        edges = np.histogram(codes[:, i], 7)[1][:-1]
        assert (binned[:, i] == np.digitize(codes[:, i], edges)).all()
    expected = [[mutual_info_score(factors[:, j], binned[:, i]) for j in range(2)] for i in range(3)]
    assert mutual_information(binned, factors) == pytest.approx(np.array(expected), abs=1e-12)


def test_continuous_factors_are_binned_by_the_train_edges():
    train = np.c_[np.linspace(0, 1, 100), np.arange(100) % 3]
    test = np.c_[[-5.0, 0.5, 9.0], [0, 1, 2]]
    tr, te = discrete_factors(train, test, num_bins=10)
    assert set(tr[:, 0]) == set(range(1, 11)) and (tr[:, 1] == train[:, 1]).all()  # 3 values: kept
    assert te[:, 0].tolist() == [1, 6, 10]


def test_dci_scores_of_importance_matrices_by_hand():
    assert disentanglement(np.eye(3)) == pytest.approx(1.0)
    assert completeness(np.eye(3)) == pytest.approx(1.0)
    assert disentanglement(np.ones((3, 3))) == pytest.approx(0.0, abs=1e-9)
    both_codes_on_factor_0 = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert disentanglement(both_codes_on_factor_0) == pytest.approx(1.0)
    assert completeness(both_codes_on_factor_0) == pytest.approx(0.0, abs=1e-9)  # factor 0 split over 2 codes


def test_a_permutation_scores_one_and_noise_zero(scores):
    good, noise = scores["identity"], scores["noise"]
    for key in ("mcc", "r2", "dci_disentanglement", "dci_completeness", "dci_informativeness_test",
                "modularity", "explicitness_test"):
        assert good[key] > 0.97, key
    assert good["mig"] > 0.9
    # SAP classifies each factor from one code: an uninformative code still scores the chance accuracy
    # of a balanced linear SVM, so SAP's ceiling here is far below 1
    assert good["sap"] > 0.2 > 0.05 > noise["sap"]
    for key in ("mcc", "mig", "dci_disentanglement", "dci_completeness"):
        assert noise[key] < 0.15, key
    assert noise["r2"] < 0.02
    assert noise["dci_informativeness_test"] < 0.4       # 4 classes: chance is 1/4
    assert abs(noise["explicitness_test"] - 0.5) < 0.05  # AUC of guessing


def test_a_rotation_lowers_mig_dci_disentanglement_and_mcc_but_not_informativeness_or_r2(scores):
    good, rotated = scores["identity"], scores["rotated"]
    for key in ("mcc", "mig", "dci_disentanglement"):
        assert rotated[key] < good[key] - 0.1, key
    for key in ("r2", "dci_informativeness_test", "explicitness_test"):
        assert rotated[key] > 0.97, key


def test_sap_of_binary_factors_and_of_continuous_factors():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=(600, 2)).astype(float)
    codes = np.c_[y + 0.05 * rng.normal(size=y.shape), rng.normal(size=600)]
    assert sap(*split(codes, y, 400), seed=0) == pytest.approx(0.5, abs=0.06)  # 1 − chance 0.5
    x = rng.normal(size=(600, 2))
    assert sap(*split(x, x, 400), continuous_factors=True) == pytest.approx(1.0, abs=0.02)


def test_explicitness_leaves_out_classes_missing_from_a_split():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=(300, 2)).astype(float)
    y[250:, 0] = np.where(y[250:, 0] == 2, 1, y[250:, 0])  # class 2 of factor 0 never in the test split
    codes = y + 0.1 * rng.normal(size=y.shape)
    result = explicitness(*split(codes, y, 250))
    assert result.train > 0.95 and result.test > 0.95


def test_dci_hist_estimator_finds_the_code_of_each_factor():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, size=(300, 2)).astype(float)  # binary: one tree per boosting stage
    codes = np.c_[y[:, 1], rng.normal(size=300), y[:, 0]] + 0.05 * rng.normal(size=(300, 3))
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # its OpenMP threads beside torch's on busy cores: 0.03 s, else 10-40 s
        fast = dci(*split(codes, y, 200), estimator="hist", seed=0)
    assert np.argmax(fast.importance, axis=0).tolist() == [2, 0]
    assert fast.disentanglement > 0.9 and fast.completeness > 0.9 and fast.informativeness_test == 1.0
    with pytest.raises(ValueError, match="estimator must be one of gbt, hist"):
        dci(*split(codes, y, 200), estimator="forest")


class Identity:
    """Discrete factors, observed as they are."""

    num_factors = 3
    factors_num_values = [4, 5, 3]

    def sample_factors(self, num, random_state):
        return np.stack([random_state.randint(v, size=num) for v in self.factors_num_values], axis=1)

    def sample_observations_from_factors(self, factors, random_state):
        return factors.astype(float)


def test_beta_vae_and_factor_vae_scores_of_the_identity_and_of_noise():
    data, kw = Identity(), dict(batch_size=16, num_train=150, num_eval=60)
    rng = np.random.default_rng(4)

    def noise(x):
        return rng.normal(size=(len(x), 3))

    assert beta_vae_score(data, lambda x: x, seed=0, **kw).eval_accuracy == 1.0
    assert factor_vae_score(data, lambda x: x, seed=0, num_variance_estimate=500, **kw) == (1.0, 1.0, 3)
    assert beta_vae_score(data, noise, seed=0, **kw).eval_accuracy < 0.6
    assert factor_vae_score(data, noise, seed=0, num_variance_estimate=500, **kw).eval_accuracy < 0.6
    # a collapsed dimension is pruned; all collapsed: 0
    assert factor_vae_score(data, lambda x: np.c_[x, np.zeros(len(x))], seed=0, num_variance_estimate=500,
                            **kw).num_active_dims == 3
    assert factor_vae_score(data, lambda x: 0 * x, seed=0, num_variance_estimate=500, **kw) == (0.0, 0.0, 0)


def test_the_same_seed_gives_the_same_generator_scores():
    data, kw = Identity(), dict(batch_size=8, num_train=40, num_eval=20)

    def representation(x):
        return x @ np.array([[1.0, 0.3], [0.2, 1.0], [0.5, -0.5]])

    assert beta_vae_score(data, representation, 7, **kw) == beta_vae_score(data, representation, 7, **kw)
    assert (factor_vae_score(data, representation, 7, num_variance_estimate=100, **kw)
            == factor_vae_score(data, representation, 7, num_variance_estimate=100, **kw))


@pytest.mark.parametrize("call, message", [
    (lambda c, f: mig(c.T, f), "codes has 3 samples but factors has 200: codes looks transposed"),
    (lambda c, f: mig(c, f.T), "factors has 2 samples of 200 dimensions: it looks transposed"),
    (lambda c, f: mig(c[:150], f), "codes has 150 samples but factors has 200$"),
    (lambda c, f: modularity(np.where(c > 1, np.nan, c), f), "codes holds NaN"),
    (lambda c, f: mig(c, np.c_[f[:, :1], np.ones(200)]), r"factors column\(s\) \[1\] take a single value"),
    (lambda c, f: dci(c[:100], f[:100], c[100:, :2], f[100:]), "same dimensions"),
    (lambda c, f: mcc(f, c.T), "hz looks transposed"),
    (lambda c, f: linear_r2(f, c[:10]), "hz has 10 samples but z has 200"),
    (lambda c, f: score(c, f, ["mig", "irs"]), "unknown metric"),
    (lambda c, f: score(c, f, train_fraction=1.0), "train_fraction must be between 0 and 1"),
])
def test_bad_inputs_are_one_line_value_errors(call, message):
    rng = np.random.default_rng(5)
    codes, factors = rng.normal(size=(200, 3)), rng.integers(0, 3, size=(200, 2)).astype(float)
    with pytest.raises(ValueError, match=message) as exc:
        call(codes, factors)
    assert "\n" not in str(exc.value)


def test_equal_to_disentanglement_lib_where_it_is_installed():
    """MIG, Modularity, Explicitness and SAP exactly, BetaVAE and FactorVAE from the same seed
    (benchmarks/metrics_vs_disentanglement_lib.py does it all, DCI included, at full size)."""
    pytest.importorskip("disentanglement_lib")
    pytest.importorskip("gin")
    import importlib.util
    import sys
    from pathlib import Path
    from unittest import mock

    path = Path(__file__).parents[1] / "benchmarks" / "metrics_vs_disentanglement_lib.py"
    spec = importlib.util.spec_from_file_location("metrics_vs_disentanglement_lib", path)
    bench = importlib.util.module_from_spec(spec)
    with mock.patch.dict(sys.modules):  # the stubs it adds go again
        spec.loader.exec_module(bench)
        ref = bench.reference_modules()
        codes, factors = bench.make_arrays(600)
        theirs = bench.reference_scores(ref, codes, factors, with_dci=False)
        generator = bench.generator_scores(ref, 200, 100)
    ours = score(codes, factors, ["mig", "sap", "modularity"])
    for key in ("mig", "modularity", "sap", "explicitness_train", "explicitness_test"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-9), key
    for name in ("beta_vae", "factor_vae"):
        for key in ("train_accuracy", "eval_accuracy"):
            assert generator[name]["clica"][key] == generator[name]["disentanglement_lib"][key]
