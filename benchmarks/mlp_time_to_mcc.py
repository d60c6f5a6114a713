"""MCC and R² against wall time for the headline MLP-mixing setting, and the time to reach 0.95 / 0.99.

Headline setting: n = 10, box, uniform marginal, Laplace conditional (--c-param 0.05),
--p 1, 3 mixing layers. Runs `clica mlp` with the given preset and flags (extra
arguments are passed through), evaluating every --n-log-steps steps on 4096 held-out
latents, and prints the curve from the run's metrics.jsonl.

    python benchmarks/mlp_time_to_mcc.py                       # fast preset
    python benchmarks/mlp_time_to_mcc.py --space-type sphere --c-p 0 --c-param 10 --p 0   # sphere / vMF
"""

from __future__ import annotations

import sys
import tempfile
import time

from clica.cli import main as clica_main
from clica.runs import RunDir

HEADLINE = ["--n", "10", "--space-type", "box", "--m-p", "0", "--c-p", "1", "--c-param", "0.05", "--p", "1",
            "--n-mixing-layer", "3", "--seed", "0", "--preset", "fast", "--n-log-steps", "100"]


def main(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        rc = clica_main(["mlp", *HEADLINE, *argv, "--save-dir", f"{tmp}/run"])
        wall = time.time() - t0
        if rc:
            sys.exit(rc)
        records = [r for r in RunDir(f"{tmp}/run").read_metrics() if r["phase"] == "unsupervised"]
    print(f"\n{'step':>6} {'time_s':>8} {'R2':>7} {'MCC':>7}")
    for r in records:
        print(f"{r['step']:>6} {r['time_s']:>8.1f} {r['linear_r2']:>7.4f} {r['mcc']:>7.4f}")
    for level in (0.95, 0.99):
        hit = next((r for r in records if r["mcc"] >= level), None)
        print(f"time to MCC {level}: " + (f"{hit['time_s']:.0f} s (step {hit['step']})" if hit else "not reached"))
    print(f"final MCC {records[-1]['mcc']:.4f}, R² {records[-1]['linear_r2']:.4f}; total wall time {wall:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
