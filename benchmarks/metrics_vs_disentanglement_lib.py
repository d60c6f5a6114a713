"""clica's metrics against disentanglement_lib's own functions on the same arrays.

Needs disentanglement_lib and gin in the environment (not clica dependencies):
``pip install --no-deps disentanglement-lib==1.5 gin-config``. Its metric modules import
``gin.tf`` (TensorFlow), ``absl.logging`` and ``six``; those are stubbed in ``sys.modules`` here, and
``gin.configurable``'s old ``blacklist=`` argument is passed on as today's ``denylist=``; nothing else
of the library is changed. The arrays are made here with numpy's random generator;
clica's numbers come from ``clica score --json`` on .npy files (the generator-free metrics) and from
``clica.metrics`` (BetaVAE, FactorVAE, with a toy generator that both libraries sample alike).

    python benchmarks/metrics_vs_disentanglement_lib.py                 # 10,000 samples, 10 codes, 5 factors
    python benchmarks/metrics_vs_disentanglement_lib.py --repeats 3     # the reference's run-to-run spread
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np

import clica


def reference_modules():
    """disentanglement_lib's metric modules, imported with TensorFlow's gin, absl and six stubbed."""
    import logging

    import gin

    stubs = {"gin.tf": types.ModuleType("gin.tf"), "absl": types.ModuleType("absl"),
             "six": types.ModuleType("six"), "six.moves": types.ModuleType("six.moves")}
    stubs["absl"].logging = logging
    stubs["six.moves"].range = range
    stubs["six"].moves = stubs["six.moves"]
    for name, module in stubs.items():
        sys.modules.setdefault(name, module)
    sys.modules.setdefault("absl.logging", logging)
    if not getattr(gin.configurable, "_renames_blacklist", False):
        # gin-config ≥ 0.4 calls disentanglement_lib's `blacklist=` argument `denylist=`
        configurable = gin.configurable

        def renamed(*args, blacklist=None, **kwargs):
            return configurable(*args, denylist=blacklist, **kwargs) if blacklist else configurable(*args, **kwargs)

        renamed._renames_blacklist = True
        gin.configurable = renamed
    from disentanglement_lib.evaluation.metrics import (
        beta_vae,
        dci,
        factor_vae,
        mig,
        modularity_explicitness,
        sap_score,
        utils,
    )

    gin.clear_config()
    gin.parse_config("discretizer.discretizer_fn = @histogram_discretizer\ndiscretizer.num_bins = 20")
    return types.SimpleNamespace(mig=mig, dci=dci, sap=sap_score, modularity=modularity_explicitness,
                                 beta_vae=beta_vae, factor_vae=factor_vae, utils=utils)


def make_arrays(n: int = 10_000, n_codes: int = 10, n_factors: int = 5, seed: int = 2026):
    """Discrete factors (2 to 16 values each) and codes that mix them: a few codes follow one factor,
    some follow two, the rest are noise; samples × dimensions."""
    rng = np.random.default_rng(seed)
    values = rng.integers(2, 17, size=n_factors)
    factors = np.stack([rng.integers(0, v, size=n) for v in values], axis=1)
    scaled = factors / values
    mixing = np.zeros((n_factors, n_codes))
    mixing[np.arange(n_factors), np.arange(n_factors)] = 1.0
    mixing[:, n_factors:n_factors + 3] = rng.normal(size=(n_factors, 3)) * (rng.random((n_factors, 3)) < 0.4)
    codes = scaled @ mixing + 0.05 * rng.normal(size=(n, n_codes))
    return codes, factors


class ToyData:
    """A ground-truth generator: discrete factors, observations a fixed linear mix of them plus noise."""

    def __init__(self, factors_num_values=(3, 5, 8, 4), obs_dim: int = 6):
        self.factors_num_values = list(factors_num_values)
        self.num_factors = len(self.factors_num_values)
        self.mix = np.random.default_rng(1).normal(size=(self.num_factors, obs_dim))

    def sample_factors(self, num, random_state):
        return np.stack([random_state.randint(v, size=num) for v in self.factors_num_values], axis=1)

    def sample_observations_from_factors(self, factors, random_state):
        return factors @ self.mix + 0.1 * random_state.normal(size=(len(factors), self.mix.shape[1]))

    def sample_observations(self, num, random_state):  # disentanglement_lib's GroundTruthData has it
        return self.sample_observations_from_factors(self.sample_factors(num, random_state), random_state)


def toy_representation(observations):
    """A fixed linear read-out of the toy observations, plus one dead dimension (pruned by FactorVAE)."""
    out = observations @ np.random.default_rng(3).normal(size=(observations.shape[1], 5))
    return np.concatenate([out, np.zeros((len(out), 1))], axis=1)


def clica_score(codes, factors, fast_dci: bool = False) -> tuple[dict, float]:
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "codes.npy", codes)
        np.save(Path(tmp) / "factors.npy", factors)
        t0 = time.perf_counter()
        # the clica this script imports (say PYTHONPATH=src), from the temporary folder
        env = {**os.environ, "PYTHONPATH": str(Path(clica.__file__).parents[1])}
        out = subprocess.run([sys.executable, "-m", "clica", "score", "codes.npy", "factors.npy", "--json"]
                             + (["--fast-dci"] if fast_dci else []), cwd=tmp, capture_output=True, text=True, env=env)
        elapsed = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout), elapsed


def reference_scores(ref, codes, factors, train_fraction: float = 0.8, with_dci: bool = True) -> dict:
    """disentanglement_lib's numbers on the same split: it takes dimensions × samples arrays."""
    n_train = math.ceil(len(codes) * train_fraction)
    mus, ys = codes.T, factors.T
    mus_train, mus_test, ys_train, ys_test = mus[:, :n_train], mus[:, n_train:], ys[:, :n_train], ys[:, n_train:]
    out = {"mig": ref.mig._compute_mig(mus_train, ys_train)["discrete_mig"]}
    if with_dci:
        d = ref.dci._compute_dci(mus_train, ys_train, mus_test, ys_test)
        out.update(dci_disentanglement=d["disentanglement"], dci_completeness=d["completeness"],
                   dci_informativeness_train=d["informativeness_train"],
                   dci_informativeness_test=d["informativeness_test"])
    out["sap"] = ref.sap._compute_sap(mus_train, ys_train, mus_test, ys_test, False)["SAP_score"]
    mi = ref.utils.discrete_mutual_info(ref.utils.make_discretizer(mus_train), ys_train)
    out["modularity"] = ref.modularity.modularity(mi)
    train_norm, mean, std = ref.utils.normalize_data(mus_train)
    test_norm, _, _ = ref.utils.normalize_data(mus_test, mean, std)
    explicit = np.array([ref.modularity.explicitness_per_factor(train_norm, ys_train[i], test_norm, ys_test[i])
                         for i in range(ys_train.shape[0])])
    out["explicitness_train"], out["explicitness_test"] = explicit.mean(axis=0)
    return {k: float(v) for k, v in out.items()}


def generator_scores(ref, num_train: int, num_eval: int) -> dict:
    from clica.metrics import beta_vae_score, factor_vae_score

    data = ToyData()
    kw = dict(batch_size=64, num_train=num_train, num_eval=num_eval)
    ours_b = beta_vae_score(data, toy_representation, np.random.RandomState(0), **kw)
    theirs_b = ref.beta_vae.compute_beta_vae_sklearn(data, toy_representation, np.random.RandomState(0), **kw)
    ours_f = factor_vae_score(data, toy_representation, np.random.RandomState(0), num_variance_estimate=10_000,
                              **kw)
    import gin

    gin.bind_parameter("prune_dims.threshold", 0.05)
    theirs_f = ref.factor_vae.compute_factor_vae(data, toy_representation, np.random.RandomState(0),
                                                 num_variance_estimate=10_000, **kw)
    return {"beta_vae": {"clica": ours_b._asdict(), "disentanglement_lib": theirs_b},
            "factor_vae": {"clica": ours_f._asdict(),
                           "disentanglement_lib": {k: float(v) for k, v in theirs_f.items()}}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2, help="runs of the reference (its classifiers are random)")
    parser.add_argument("--generator-points", type=int, default=2000,
                        help="num_train of BetaVAE/FactorVAE (num_eval is half)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # both libraries' classifiers warn alike (convergence)
    ref = reference_modules()
    codes, factors = make_arrays(args.samples)
    ours, ours_s = clica_score(codes, factors)
    runs = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        runs.append(reference_scores(ref, codes, factors))
        runs[-1]["_s"] = time.perf_counter() - t0
    print(f"{args.samples} samples, {codes.shape[1]} codes, {factors.shape[1]} factors; clica score {ours_s:.1f} s, "
          f"reference {np.mean([r.pop('_s') for r in runs]):.1f} s per run ({args.repeats} runs)")
    print(f"{'metric':<28}{'clica':>12}{'reference':>12}{'|difference|':>14}{'reference spread':>18}")
    for key, theirs in runs[0].items():
        spread = max(r[key] for r in runs) - min(r[key] for r in runs)
        print(f"{key:<28}{ours[key]:>12.6f}{theirs:>12.6f}{abs(ours[key] - theirs):>14.2e}{spread:>18.2e}")
    print(json.dumps(generator_scores(ref, args.generator_points, args.generator_points // 2), indent=1))


if __name__ == "__main__":
    main()
