"""ContrastiveICA side by side with CEBRA and FastICA on data families it was not tuned for.

For every family of ``estimator_families.py`` and seed, each method is fitted on the
same observations X (the time order, and recording ids where the family has several)
and scored against the true sources: MCC, linear R², MCC after a linear ICA
(FastICA) of the output, and the fit time. One JSON line per (family, seed, method)
goes to ``--out`` (runs already there are not repeated, so an interrupted suite
resumes); ``--table`` prints the medians over seeds as a Markdown table.

    pip install -e ".[bench]"        # CEBRA, only for this benchmark
    python benchmarks/estimator_suite.py --seeds 0,1,2 --out benchmarks/results/estimator_suite.jsonl
    python benchmarks/estimator_suite.py --table --out benchmarks/results/estimator_suite.jsonl

Methods: ``clica`` (``ContrastiveICA`` defaults), ``clica:{json}`` (defaults changed
by the JSON's parameters, e.g. ``clica:{"hidden_units": [256, 256, 256, 256]}``),
``cebra-euclidean`` and ``cebra-cosine`` (CEBRA-Time: ``offset1-model``, time offset 1,
batch 512, learning rate 3e-4, temperature 1, 10,000 iterations, as its
documentation's CEBRA-Time examples), ``fastica`` (linear ICA of X).

``--threads`` (default 1) torch threads per fit and ``--jobs`` (default 1) fits at
once: every method runs under the same conditions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from estimator_families import FAMILIES, make  # noqa: E402

CEBRA_SETTINGS = dict(model_architecture="offset1-model", conditional="time", time_offsets=1, batch_size=512,
                      learning_rate=3e-4, temperature=1.0, max_iterations=10_000, device="cpu", verbose=False)
DEFAULT_METHODS = "clica,cebra-euclidean,cebra-cosine,fastica"


def linear_ica_mcc(hz: np.ndarray, z: np.ndarray, seed: int) -> float:
    """MCC of the sources after a linear ICA (FastICA) of an output: how far a linear unmixing gets."""
    from sklearn.decomposition import FastICA

    from clica.metrics import mcc

    s = FastICA(n_components=z.shape[1], random_state=seed, max_iter=1000).fit_transform(hz)
    return float(mcc(z, s).score)


def fit(method: str, X: np.ndarray, k: int, groups, seed: int, clica: dict | None = None) -> tuple[np.ndarray, dict]:
    """The method's output on X (N × d, or images N × C × H × W: flattened for all but ContrastiveICA) and extra
    facts (e.g. its validation loss). ``clica``: the family's ContrastiveICA parameters (e.g. the conv encoder)."""
    if method.startswith("clica"):
        from clica import ContrastiveICA

        params = {**(clica or {}), **(json.loads(method.split(":", 1)[1]) if ":" in method else {})}
        if "hidden_units" in params:
            params["hidden_units"] = tuple(params["hidden_units"])
        est = ContrastiveICA(n_components=k, random_state=seed, **params).fit(X, groups=groups)
        return est.transform(X), {"validation_loss": est.validation_loss_, "n_iter": est.n_iter_}
    X = X.reshape(len(X), -1)
    if method.startswith("cebra"):
        from clica.extras import need

        cebra = need("cebra")
        model = cebra.CEBRA(output_dimension=k, distance=method.split("-")[1], **CEBRA_SETTINGS)
        model.fit(X.astype(np.float32))
        return model.transform(X.astype(np.float32)), {}
    if method == "fastica":
        from sklearn.decomposition import FastICA

        return FastICA(n_components=k, random_state=seed, max_iter=1000).fit_transform(X), {}
    raise SystemExit(f"unknown method {method!r}")


def run_one(family: str, seed: int, method: str, threads: int) -> dict:
    import torch

    from clica.metrics import linear_r2, mcc

    torch.set_num_threads(threads)
    X, Z, groups = make(family, seed)
    f = FAMILIES[family]
    t0 = time.perf_counter()
    hz, extra = fit(method, X, f.n_components or Z.shape[1], groups, seed, dict(f.clica))
    seconds = time.perf_counter() - t0
    return {"family": family, "seed": seed, "method": method, "mcc": float(mcc(Z, hz).score),
            "r2": float(linear_r2(Z, hz)), "mcc_after_ica": linear_ica_mcc(hz, Z, seed),
            "fit_s": round(seconds, 2), "threads": threads, **extra}


def table(rows: list[dict], methods: list[str] | None = None) -> str:
    """Median over seeds per (family, method): MCC, R², MCC after linear ICA, fit time."""
    methods = methods or list(dict.fromkeys(r["method"] for r in rows))
    families = [f for f in FAMILIES if any(r["family"] == f for r in rows)]
    lines = ["| family | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for f in families:
        cells = []
        for m in methods:
            rs = [r for r in rows if r["family"] == f and r["method"] == m]
            if not rs:
                cells.append("")
                continue
            med = {key: float(np.median([r[key] for r in rs])) for key in ("mcc", "r2", "mcc_after_ica", "fit_s")}
            cells.append(f"{med['mcc']:.3f} / {med['r2']:.3f} / {med['mcc_after_ica']:.3f} / {med['fit_s']:.0f} s"
                         + (f" (n={len(rs)})" if len(rs) < 3 else ""))
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default=",".join(FAMILIES), help="comma-separated families (default: all)")
    p.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated methods; ';' separates "
                   "clica:{json} variants that contain commas")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default="benchmarks/results/estimator_suite.jsonl")
    p.add_argument("--threads", type=int, default=1, help="torch threads per fit")
    p.add_argument("--jobs", type=int, default=1, help="fits at once (processes)")
    p.add_argument("--table", action="store_true", help="print the table of what --out holds and stop")
    args = p.parse_args()
    out = Path(args.out)
    done = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []
    methods = args.methods.split(";") if ";" in args.methods else args.methods.split(",")
    if args.table:
        print(table(done, None))
        return
    have = {(r["family"], r["seed"], r["method"]) for r in done}
    todo = [(f, int(s), m) for f in args.families.split(",") for s in args.seeds.split(",") for m in methods
            if (f, int(s), m) not in have]
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    append_results(out, [(run_one, (f, s, m, args.threads)) for f, s, m in todo], args.jobs,
                   lambda r: f"{r['family']:>12} seed {r['seed']} {r['method'][:40]:<40} MCC {r['mcc']:.3f} "
                             f"R² {r['r2']:.3f} ICA-MCC {r['mcc_after_ica']:.3f} {r['fit_s']:.0f} s")


def append_results(out: Path, calls: list, jobs: int, describe) -> None:
    """Run ``calls`` ((function, args) pairs) ``jobs`` at a time on joblib, appending each result to ``out``
    as a JSON line as soon as it is done (so an interrupted run keeps what finished) and printing
    ``describe(result)``."""
    from joblib import Parallel, delayed

    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as fh:
        for r in Parallel(n_jobs=jobs, return_as="generator")(delayed(fn)(*a) for fn, a in calls):
            fh.write(json.dumps(r) + "\n")
            fh.flush()
            print(describe(r), flush=True)


if __name__ == "__main__":
    main()
