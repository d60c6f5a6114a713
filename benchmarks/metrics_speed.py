"""DCI's time: clica's (gradient-boosted trees, and the opt-in histogram estimator) against
disentanglement_lib's ``_compute_dci`` on the same arrays (10,000 samples, 10 codes, 5 factors,
the first 80 % to fit). Needs disentanglement_lib, as ``metrics_vs_disentanglement_lib.py``.

    OMP_NUM_THREADS=1 python benchmarks/metrics_speed.py
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

from metrics_vs_disentanglement_lib import make_arrays, reference_modules

from clica.metrics import dci


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    ref = reference_modules()
    codes, factors = make_arrays(args.samples)
    n = math.ceil(0.8 * len(codes))
    split = (codes[:n], factors[:n], codes[n:], factors[n:])
    rows = []
    t0 = time.perf_counter()
    theirs = ref.dci._compute_dci(codes[:n].T, factors[:n].T, codes[n:].T, factors[n:].T)
    rows.append(("disentanglement_lib _compute_dci", time.perf_counter() - t0,
                 (theirs["disentanglement"], theirs["completeness"], theirs["informativeness_train"],
                  theirs["informativeness_test"])))
    for estimator in ("gbt", "hist"):
        t0 = time.perf_counter()
        ours = dci(*split, estimator=estimator, seed=0)
        rows.append((f"clica dci(estimator={estimator!r})", time.perf_counter() - t0, ours[:4]))
    print(f"DCI on {len(codes)} samples ({n} to fit), {codes.shape[1]} codes, {factors.shape[1]} factors")
    print(f"{'':<36}{'seconds':>8}  disentanglement completeness informativeness train/test")
    for name, seconds, s in rows:
        print(f"{name:<36}{seconds:>8.1f}  {s[0]:.4f}          {s[1]:.4f}       {s[2]:.4f} / {s[3]:.4f}")


if __name__ == "__main__":
    main()
