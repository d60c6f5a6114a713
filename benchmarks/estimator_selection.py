"""Does a lower held-out InfoNCE loss go with a higher MCC? The criterion ``ContrastiveICA`` chooses by.

For each family of ``estimator_families.py`` and seed, several candidate fits are
made on the same X: ``--restarts`` seeds × the encoders of ``--encoders``. Each
candidate's validation loss (``validation_loss_``) and its MCC against the true
sources are recorded (one JSON line per candidate in ``--out``; a rerun resumes).
``--table`` then reports per family and encoder: every candidate's (loss, MCC), the
Spearman correlation of −loss with MCC (1: the loss orders them as MCC does; blank
when the MCCs are all equal), the MCC of the candidate with the lowest loss and the best.

    python benchmarks/estimator_selection.py --families issue24,deep,speeds --seeds 0 \\
        --out benchmarks/results/estimator_selection.jsonl
    python benchmarks/estimator_selection.py --table --out benchmarks/results/estimator_selection.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from estimator_families import FAMILIES, make  # noqa: E402
from estimator_suite import append_results  # noqa: E402


def candidate(family: str, seed: int, restart: int, hidden: tuple, threads: int, n_init: int = 3) -> dict:
    import torch

    from clica import ContrastiveICA

    torch.set_num_threads(threads)
    X, Z, groups = make(family, seed)
    t0 = time.perf_counter()
    est = ContrastiveICA(n_components=Z.shape[1], hidden_units=hidden, random_state=1000 * seed + restart,
                         n_init=n_init)
    est.fit(X, groups=groups)
    return {"family": family, "seed": seed, "restart": restart, "hidden_units": list(hidden), "n_init": n_init,
            "validation_loss": est.validation_loss_, "mcc": est.score(X, Z), "r2": est.score(X, Z, metric="r2"),
            "fit_s": round(time.perf_counter() - t0, 2), "validation_curve": est.validation_curve_,
            "validation_steps": est.validation_steps_}


def early_table(rows: list[dict]) -> str:
    """Choosing among one-restart candidates by their validation loss after s steps instead of at the end:
    the median MCC of the candidate chosen at each s, and how often it is the one the final loss chooses."""
    groups = {}
    for r in rows:
        if r.get("n_init") == 1:  # one seed per candidate: its curve is that seed's alone
            groups.setdefault((r["family"], r["seed"], tuple(r["hidden_units"])), []).append(r)
    steps = sorted({s for rs in groups.values() for s in rs[0]["validation_steps"]})
    shown = [s for s in steps if s in (100, 200, 300, 400, 600, 1000)] + [steps[-1]]
    lines = ["| family | " + " | ".join(f"chosen at {s}" for s in shown) + " | best MCC |",
             "|---" * (len(shown) + 2) + "|"]
    for f in FAMILIES:
        keys = sorted(k for k in groups if k[0] == f)
        if not keys:
            continue
        cells, best = {s: [] for s in shown}, []
        for key in keys:
            rs = groups[key]
            m = np.array([r["mcc"] for r in rs])
            final = int(np.argmin([r["validation_curve"][-1] for r in rs]))
            for s in shown:
                i = int(np.argmin([r["validation_curve"][r["validation_steps"].index(s)] for r in rs]))
                cells[s].append((m[i], i == final))
            best.append(m.max())
        text = [f"{np.median([c[0] for c in cells[s]]):.3f} ({sum(c[1] for c in cells[s])}/{len(keys)})"
                for s in shown]
        lines.append(f"| {f} ({len(keys)} seeds × {len(groups[keys[0]])}) | " + " | ".join(text) +
                     f" | {np.median(best):.3f} |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    from scipy.stats import spearmanr

    lines = ["| family | encoder | candidates: (held-out loss, MCC) | Spearman(−loss, MCC) | MCC of the lowest loss | "
             "best MCC |", "|---|---|---|---|---|---|"]
    for f in FAMILIES:
        groups = {}
        for r in rows:
            if r["family"] == f:
                groups.setdefault((r["seed"], tuple(r["hidden_units"])), []).append(r)
        for (seed, hidden), rs in sorted(groups.items()):
            loss = np.array([r["validation_loss"] for r in rs])
            m = np.array([r["mcc"] for r in rs])
            rho = spearmanr(-loss, m).statistic if len(rs) > 2 and np.ptp(m) > 0.002 else float("nan")
            pairs = ", ".join(f"({a:.3f}, {b:.3f})" for a, b in sorted(zip(loss, m)))
            rho_text = f"{rho:+.2f}" if np.isfinite(rho) else "—"
            lines.append(f"| {f} (seed {seed}) | {'×'.join(map(str, hidden))} | {pairs} | {rho_text} | "
                         f"{m[np.argmin(loss)]:.3f} | {m.max():.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default="issue24,unbounded,deep,speeds,noisy,small")
    p.add_argument("--seeds", default="0")
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--encoders", default="64-64-64;256-256-256-256;32-32",
                   help="';'-separated hidden widths, '-' between layers")
    p.add_argument("--out", default="benchmarks/results/estimator_selection.jsonl")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--n-init", type=int, default=3, help="each candidate's n_init (--early reads the rows of 1)")
    p.add_argument("--table", action="store_true")
    p.add_argument("--early", action="store_true", help="print the table of choosing after s steps")
    args = p.parse_args()
    out = Path(args.out)
    done = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []
    if args.table or args.early:
        print(early_table(done) if args.early else table(done))
        return
    have = {(r["family"], r["seed"], r["restart"], tuple(r["hidden_units"]), r.get("n_init", 3)) for r in done}
    encoders = [tuple(int(w) for w in e.split("-")) for e in args.encoders.split(";")]
    todo = [(f, int(s), r, h) for f in args.families.split(",") for s in args.seeds.split(",")
            for r in range(args.restarts) for h in encoders if (f, int(s), r, h, args.n_init) not in have]
    append_results(out, [(candidate, (*t, args.threads, args.n_init)) for t in todo], args.jobs,
                   lambda r: f"{r['family']:>12} seed {r['seed']} restart {r['restart']} {r['hidden_units']} "
                             f"loss {r['validation_loss']:.4f} MCC {r['mcc']:.3f} {r['fit_s']:.0f} s")


if __name__ == "__main__":
    main()
