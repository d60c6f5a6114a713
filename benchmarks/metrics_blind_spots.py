"""The small cases of docs/metrics.md where a metric misleads, with the numbers they give.

    OMP_NUM_THREADS=1 python benchmarks/metrics_blind_spots.py
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from clica.metrics import beta_vae_score, factor_vae_score, score


def rotation(angle: float, n: int, pair=(0, 1)) -> np.ndarray:
    r = np.eye(n)
    i, j = pair
    r[[i, i, j, j], [i, j, i, j]] = math.cos(angle), -math.sin(angle), math.sin(angle), math.cos(angle)
    return r


class Grid:
    """Three discrete factors (5 values each) observed as they are."""

    num_factors, factors_num_values = 3, [5, 5, 5]

    def sample_factors(self, num, random_state):
        return random_state.randint(5, size=(num, 3))

    def sample_observations_from_factors(self, factors, random_state):
        return factors.astype(float)


def main() -> None:
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    n = 4000
    cases = {}
    # 1. Gaussian latents are identified only up to rotation: a rotated copy is as good as it gets
    z = rng.normal(size=(n, 2))
    cases["gaussian latents, rotated 45°"] = (z @ rotation(math.pi / 4, 2).T, z)
    # 2. a factor kept in two codes: each code is pure, the gap is 0
    f = rng.integers(0, 8, size=(n, 2)).astype(float)
    noise = 0.01 * rng.normal(size=(n, 3))
    cases["factor 0 in two codes"] = (np.c_[f[:, 0], f[:, 0], f[:, 1]] + noise, f)
    # 3. one bit of each 8-valued factor: pure codes, little information
    cases["one bit of each factor"] = ((f >= 4).astype(float) + noise[:, :2], f)
    # 4. the identity on 8-valued factors
    cases["identity, 8-valued factors"] = (f + noise[:, :2], f)
    # 5. a factor folded (c = |f − 3.5|): all information there, none linear
    cases["factor 0 folded"] = (np.c_[np.abs(f[:, 0] - 3.5), f[:, 1]] + noise[:, :2], f)
    # 6. pure noise codes
    cases["noise"] = (rng.normal(size=(n, 2)), f)
    keys = ["mcc", "r2", "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness_test", "sap",
            "modularity", "explicitness_test"]
    print(f"{'case':<30}" + "".join(f"{k.replace('dci_', 'dci ')[:12]:>13}" for k in keys))
    for name, (codes, factors) in cases.items():
        s = score(codes, factors, seed=0)
        print(f"{name:<30}" + "".join(f"{s[k]:>13.3f}" for k in keys))

    data, kw = Grid(), dict(batch_size=64, num_train=2000, num_eval=1000)
    print("\nBetaVAE and FactorVAE eval accuracy (2,000 train, 1,000 eval points) on 3 discrete factors "
          "(5 values each), and MIG on 4,000 samples of the same codes:")
    shear = np.eye(3)
    shear[0, 1] = 0.5
    for name, mix in (("identity", np.eye(3)), ("factors 0 and 1 rotated 45°", rotation(math.pi / 4, 3)),
                      ("code 0 = f0 + 0.5 f1 (sheared)", shear)):
        b = beta_vae_score(data, lambda x, m=mix: x @ m.T, seed=0, **kw).eval_accuracy
        f_ = factor_vae_score(data, lambda x, m=mix: x @ m.T, seed=0, **kw).eval_accuracy
        factors = data.sample_factors(4000, np.random.RandomState(1)).astype(float)
        mig = score(factors @ mix.T, factors, ["mig"])["mig"]
        print(f"  {name:<32} BetaVAE {b:.3f}  FactorVAE {f_:.3f}  MIG {mig:.3f}")


if __name__ == "__main__":
    main()
