"""DCI's time and run-to-run spread: clica's (gradient-boosted trees, and the opt-in histogram
estimator) against disentanglement_lib's ``_compute_dci`` on the same arrays (10,000 samples,
10 codes, 5 factors, the first 80 % to fit). Needs disentanglement_lib, as
``metrics_vs_disentanglement_lib.py``. The reference's trees take ``random_state=None``; clica's
take seeds 0, 1, ... (one per repeat). Each round runs all three, so that the load of a shared
machine falls on each alike.

    OMP_NUM_THREADS=1 python benchmarks/metrics_speed.py --repeats 3
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
from metrics_vs_disentanglement_lib import make_arrays, reference_modules

from clica.metrics import dci

KEYS = ("disentanglement", "completeness", "informativeness_train", "informativeness_test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    ref = reference_modules()
    codes, factors = make_arrays(args.samples)
    n = math.ceil(0.8 * len(codes))
    split = (codes[:n], factors[:n], codes[n:], factors[n:])
    runs = {
        "disentanglement_lib _compute_dci": lambda i: ref.dci._compute_dci(*(a.T for a in split)),
        "clica dci(estimator='gbt')": lambda i: dci(*split, estimator="gbt", seed=i)._asdict(),
        "clica dci(estimator='hist')": lambda i: dci(*split, estimator="hist", seed=i)._asdict(),
    }
    print(f"DCI on {len(codes)} samples ({n} to fit), {codes.shape[1]} codes, {factors.shape[1]} factors, "
          f"{args.repeats} run(s) each; values: mean (max − min)")
    print(f"{'':<34}{'seconds':>8}" + "".join(f"{k:>24}" for k in KEYS))
    seconds = {name: [] for name in runs}
    values = {name: [] for name in runs}
    for i in range(args.repeats):  # round by round, so that a shared machine's load falls on all alike
        for name, run in runs.items():
            t0 = time.perf_counter()
            result = run(i)
            seconds[name].append(time.perf_counter() - t0)
            values[name].append([result[k] for k in KEYS])
    for name in runs:
        v = np.array(values[name])
        print(f"{name:<34}{np.mean(seconds[name]):>8.1f}"
              + "".join(f"{m:>14.5f} ({s:.1e})" for m, s in zip(v.mean(0), np.ptp(v, axis=0))))


if __name__ == "__main__":
    main()
