"""Time and conditioning of the MLP mixing's bounded search, per n, over seeds (the experiments' settings:
3 layers, threshold = the best condition number of 25,000 random matrices).

    python benchmarks/mixing_search.py --n 4 10 20 --seeds 100

Prints one line per seed, then a Markdown table per n: how many seeds get the original's mixing (every
layer found under the threshold within the budget) and, for the others, how the condition numbers of the
matrices that stand in compare with the threshold and with random matrices (their quantile, estimated
from 100,000 fresh ones; the original's layers lie under the pool's best, the 1/25,000 quantile).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from clica.mixing import _column_normalised, invertible_mlp, search_budget


def build(n: int, seed: int) -> dict:
    """Wall and CPU seconds (CPU: the time on one core, whatever else shares the machine) and conditioning."""
    t, cpu = time.perf_counter(), time.process_time()
    g = invertible_mlp(n, 3, cond_thresh_ratio=0.0, n_iter_cond_thresh=25000, seed=seed, say=None)
    return {"seconds": time.perf_counter() - t, "cpu": time.process_time() - cpu,
            "threshold": g.condition_threshold, "worst": max(g.condition_numbers), "fallback": g.fallback_layers}


def random_conds(n: int, count: int = 100_000) -> np.ndarray:
    gen = torch.Generator().manual_seed(12345)
    return np.sort(np.concatenate([torch.linalg.cond(_column_normalised((10_000, n, n), gen)).numpy()
                                   for _ in range(count // 10_000)]))


def table(n: int, rows: list[dict]) -> str:
    t, cpu = np.array([r["seconds"] for r in rows]), np.array([r["cpu"] for r in rows])
    fell = [r for r in rows if r["fallback"]]
    line = (f"| {n} | {search_budget(n):,} | {len(rows) - len(fell)} of {len(rows)} | "
            f"{np.median(t):.1f} / {t.max():.1f} | {np.median(cpu):.1f} / {cpu.max():.1f} |")
    if fell:
        ratio = np.array([r["worst"] / r["threshold"] for r in fell])
        quantile = np.searchsorted(random_conds(n), [r["worst"] for r in fell]) / 100_000
        line += (f" {np.median(ratio):.3f} / {ratio.max():.3f} | {np.median(quantile):.4%} / "
                 f"{quantile.max():.4%} |")
    else:
        line += " – | – |"
    return line


HEADER = ("| n | draws at most | seeds with the original's mixing | build time median / max (s) | CPU time median "
          "/ max (s) | others: worst layer's condition number / threshold, median / max | others: its quantile "
          "among random matrices, median / max |\n|---|---|---|---|---|---|---|")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[4, 10, 20])
    p.add_argument("--seeds", type=int, nargs="+", default=[100],
                   help="seeds 0 … SEEDS-1, or the seeds listed when more than one is given")
    args = p.parse_args()
    for n in args.n:
        rows = []
        for seed in (range(args.seeds[0]) if len(args.seeds) == 1 else args.seeds):
            rows.append(build(n, seed))
            r = rows[-1]
            print(f"n={n} seed={seed} {r['seconds']:.2f}s cpu {r['cpu']:.2f}s threshold {r['threshold']:.4f} "
                  f"worst layer {r['worst']:.4f} fallback layers {r['fallback']}", flush=True)
        print(f"{HEADER}\n{table(n, rows)}", flush=True)


if __name__ == "__main__":
    main()
