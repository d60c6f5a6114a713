"""``clica table``: the paper's identifiability grid, one Ray task per (row, seed).

A row is a setting (latent space, marginal, conditional, loss) with the theory's
prediction and the recipe that trains it; each (row, seed) runs as one Ray task
(an embedded local Ray by default, a cluster with ``--address``) whose result
travels back to the driver, which alone writes the output folder: no shared
file system is needed. Finished (row, seed) results are kept in ``runs.jsonl``,
so a rerun runs only the rest (of the same settings). A run whose worker dies is retried once, then
reported as failed; a run that raises is reported failed with its one-line error at once, since it
is seeded and would raise again.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import platform
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..conditionals import CLAIMS
from ..data.registry import DATASETS, locate
from ..errors import ClicaError
from ..extras import need
from ..runs import RunDir, append_line, atomic_write_bytes, atomic_write_json, check_output_folder
from .mlp import PRESETS, MLPConfig

DESCRIPTION = (
    "Run the paper's identifiability grid: every row (a latent space, marginal, conditional and loss) over "
    "--seeds seeds, one Ray task per run (an embedded local Ray, or a cluster with --address), and write "
    "table.md, table.csv, runs.jsonl and table.png with each row's scores against the theory's prediction. "
    "A rerun keeps the finished runs."
)


# a run's "time to MCC 0.99": the training seconds at its first logged step at or above this
MCC_REACHED = 0.99

# every MLP row trains with the recipe of clica mlp --preset fast unless the row says otherwise
MLP_RECIPE = PRESETS["fast"]


@dataclass
class Row:
    """One line of the grid: a name, the command, its settings (config fields) and the prediction (a key
    of :data:`clica.conditionals.CLAIMS`)."""

    name: str
    command: str
    settings: dict
    prediction: str
    note: str = ""
    recipe: dict = field(default_factory=dict)
    cell: tuple[str, str] | None = None     # (method, dataset) of a row that ``--datasets`` made

    def config(self, steps: int | None = None) -> dict:
        """The row's full settings: recipe, then setting; ``steps`` overrides the training length."""
        cfg = {**(MLP_RECIPE if self.command == "mlp" else {}), **self.recipe, **self.settings}
        if steps is not None:
            cfg["n_steps" if self.command == "mlp" else "max_iter"] = steps
        return cfg

    def command_line(self, steps: int | None = None) -> str:
        """The ``clica`` command that runs this row alone (one seed)."""
        words = ["clica", self.command]
        config = self.config(steps)
        if self.command == "mlp":  # the recipe as its preset, then what the row sets
            words += ["--preset", "fast"]
            config = {k: v for k, v in config.items() if MLP_RECIPE.get(k, object()) != v}
        for key, value in config.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                words.append(flag)
            elif value is not False:
                words += [flag, str(value)]
        return shlex.join(words)


def _mlp(name: str, *, space: str, c_p: float, p: float, c_param: float = 0.05, m_p: float = 0, note: str = "",
         recipe: dict | None = None, **extra) -> Row:
    """A row of the MLP grid in ``clica mlp``'s settings (``--space-type``, ``--c-p``, ``--p``, ...; 10 latents,
    3 mixing layers), trained with ``recipe``; the theory's prediction follows from the table of conditionals."""
    settings = {"n": 10, "n_mixing_layer": 3, "space_type": space, "m_p": m_p, "c_p": c_p, "c_param": c_param,
                "p": p, **extra}
    return Row(name, "mlp", settings, MLPConfig(**settings).claim(), note, dict(recipe or {}))


# Each row's recipe: the fast preset's, changed where a row needs it, in one place. Evidence (seed 0,
# 3,000-step probes on one core, docs/mlp.md "The identifiability grid"):
# - the sphere rows at lr 1e-3: vMF κ = 10, τ = 0.1: linear R² 0.97 against 0.58 at lr 3e-3; the vMF rows
#   at the matched temperature τ = 1/κ, the sphere Laplace/Normal rows at τ = 0.01 (sphere Normal:
#   R² 0.77 after 1,500 steps against 0.52 at τ = 0.1)
# - the L2 and L3 rows at lr 1e-3 and a temperature near the conditional's (2σ² = 0.005 for the Normal,
#   α³ = 1.25e-4 for β = 3): box Normal L2 R² 0.86 (τ 0.01) against 0.69 (τ 0.2, lr 3e-3); box β = 3
#   L3 R² 0.76 at 2,500 steps against 0.67 (τ 5e-4, lr 3e-3)
# - the box output (sigmoid into a learnable box) at the conditional's τ = 0.05, the scale of the box:
#   MCC 0.997 at 10,000 steps against 0.90 at τ = 0.2
# - the unbounded Laplace row for 15,000 steps: MCC 0.982 at 10,000 (seed 0); 15,000 gave 0.983 (3 seeds), so
#   the length is not what it lacks; it scores 0.995 on the half of the samples nearest the origin
#   (benchmarks/mlp_scores_by_radius.py): the Laplace tails are what it misses, and its batch loss
#   itself prefers them compressed (to MCC about 0.98) at every τ, batch and self weight measured
#   (benchmarks/mlp_oracle_loss.py)
# - the unbounded Normal L2 row keeps batch 1024: batch 512 for 20,000 steps gave R² 0.966 on seed 0 but
#   0.826 on seed 1 (the recipe: 0.937 ± 0.009 over seeds 0-2), 622-635 s per run
SPHERE = {"lr": 1e-3}
L2 = {"lr": 1e-3, "tau": 0.01}
L3 = {"lr": 1e-3, "tau": 1.25e-4}

MISMATCHED = "conditional and loss mismatched"
NOT_VMF = "breaks the vMF assumption; the paper found it identified"

MLP_ROWS = [
    _mlp("sphere-vmf1", space="sphere", c_p=0, c_param=1.0, p=0, recipe={**SPHERE, "tau": 1.0}),
    _mlp("sphere-vmf10", space="sphere", c_p=0, c_param=10.0, p=0, recipe={**SPHERE, "tau": 0.1}),
    _mlp("sphere-laplace", space="sphere", c_p=1, p=0, note=NOT_VMF, recipe={**SPHERE, "tau": 0.01}),
    _mlp("sphere-normal", space="sphere", c_p=2, p=0, note=NOT_VMF, recipe={**SPHERE, "tau": 0.01}),
    _mlp("box-laplace-l1", space="box", c_p=1, p=1, recipe={"tau": 0.05}, box_norm=True),
    _mlp("box-gennorm-l3", space="box", c_p=3, p=3, recipe=L3),
    _mlp("box-normal-l2", space="box", c_p=2, p=2, recipe=L2),
    _mlp("box-normal-l1", space="box", c_p=2, p=1, note=MISMATCHED),
    _mlp("box-laplace-l2", space="box", c_p=1, p=2, note=MISMATCHED, recipe=L2),
    _mlp("real-laplace-l1", space="unbounded", m_p=1, c_p=1, p=1, recipe={"n_steps": 15000}),
    _mlp("real-gennorm-l3", space="unbounded", m_p=3, c_p=3, p=3, recipe=L3),
    _mlp("real-normal-l2", space="unbounded", m_p=2, c_p=2, p=2, recipe=L2),
]


def varied_rows(vary: str) -> list[Row]:
    """The box/Laplace/L1 row at n ∈ {5, 10, 20, 40} (``vary="n"``) or mixing depth 1–5 (``"layers"``)."""
    base = next(r for r in MLP_ROWS if r.name == "box-laplace-l1")
    values = {"n": (5, 10, 20, 40), "layers": (1, 2, 3, 4, 5)}.get(vary)
    if values is None:
        raise ClicaError(f"--vary must be n or layers, got {vary!r}")
    key = "n" if vary == "n" else "n_mixing_layer"
    return [Row(f"{base.name}-{vary}{v}", "mlp", {**base.settings, key: v}, base.prediction, recipe=base.recipe)
            for v in values]


def kitti_rows() -> list[Row]:
    """The KITTI Masks table: InfoNCE L1 with the box (the paper's headline row), L1, L2, SlowVAE, β-VAE."""
    common = {"lr": 1e-3, "max_iter": 1500, "log_step": 500}
    return [
        Row("kitti-l1-box", "kitti", {"p": 1.0, "box_norm": 1}, "none", "the paper's headline KITTI row", common),
        Row("kitti-l1", "kitti", {"p": 1.0, "box_norm": 0}, "none", "", common),
        Row("kitti-l2", "kitti", {"p": 2.0, "box_norm": 0}, "none", "", common),
        Row("kitti-slowvae", "kitti", {"model": "slowvae"}, "none", "baseline", common),
        Row("kitti-betavae", "kitti", {"model": "slowvae", "betavae": True}, "none", "baseline", common),
    ]


def parse_datasets(names: str) -> list[str]:
    """``"dsprites,shapes3d"`` → the dataset names, checked, in order, each once."""
    wanted = list(dict.fromkeys(n.strip().lower() for n in names.split(",") if n.strip()))
    unknown = [n for n in wanted if n not in DATASETS]
    if unknown or not wanted:
        raise ClicaError(f"--datasets: unknown dataset(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(DATASETS)}")
    return wanted


def dataset_rows(rows: list[Row], datasets: list[str]) -> list[Row]:
    """Every row on every dataset: one row ``ROW@DATASET`` per (row, dataset), a cell of the table."""
    return [Row(f"{row.name}@{ds}", row.command, {**row.settings, "dataset": ds}, row.prediction, row.note,
                row.recipe, cell=(row.name, ds)) for row in rows for ds in datasets]


def dataset_of(row: Row) -> str:
    return row.settings.get("dataset", "kittimasks")


def data_dirs(rows: list[Row], data_dir: str | None) -> dict[str, str | None]:
    """The file or folder each KITTI row's dataset reads, found on this machine before anything runs.

    KITTI Masks without ``--data-dir`` is the synthetic file each run makes; every other dataset is found
    as ``clica kitti --dataset D --data-dir DIR`` finds it (:func:`clica.data.registry.locate`: ``DIR``,
    else ``$CLICA_DATA_DIR``, else the original's folder), and handed to its runs as an absolute path. A
    dataset not found is the loaders' one-line error, naming the file expected, where it is published and
    the ``clica data`` command that makes it offline.
    """
    out: dict[str, str | None] = {}
    datasets = list(dict.fromkeys(dataset_of(r) for r in rows if r.command == "kitti"))
    if data_dir is not None and Path(data_dir).is_file() and len(datasets) > 1:
        raise ClicaError(f"--data-dir {data_dir} is a file, but --datasets names {len(datasets)} datasets: "
                         "pass the folder that holds each one's file")
    for ds in datasets:
        out[ds] = None if ds == "kittimasks" and data_dir is None else str(locate(ds, data_dir).resolve())
    return out


def select_rows(experiment: str, names: str | None = None, vary: str | None = None) -> list[Row]:
    """The rows of ``experiment`` (``mlp`` or ``kitti``), or those ``names`` ("a,b") picks."""
    if experiment == "kitti":
        rows = kitti_rows()
    elif vary:
        rows = varied_rows(vary)
    else:
        rows = MLP_ROWS
    if not names:
        return rows
    by_name = {r.name: r for r in rows}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown or not wanted:
        raise ClicaError(f"--rows: unknown row(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(by_name)}")
    return [by_name[n] for n in wanted]


# ---------------------------------------------------------------------------
# one run (a Ray task): everything it writes lives in a temporary folder
# ---------------------------------------------------------------------------

def run_one(row: Row, seed: int, steps: int | None, threads: int, data_dir: str | None = None) -> dict:
    """Train one (row, seed) and return its scores; runs in a Ray worker or in-process."""
    import torch

    torch.set_num_threads(max(1, threads))
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clica-table-") as tmp:
        if row.command == "mlp":
            from .mlp import MLPConfig, run_mlp

            cfg = MLPConfig(**row.config(steps), seed=seed, device="cuda" if torch.cuda.is_available() else "cpu")
            summary = run_mlp(cfg, Path(tmp) / "run", echo=lambda *a: None)
            phase = cfg.phases()[-1][0]
            last = summary["phases"][phase]
            r2, mcc = last["linear_mean"], last["perm_mean"]
            reached = next((m["time_s"] for m in RunDir(Path(tmp) / "run").read_metrics()
                            if m.get("phase") == phase and m.get("mcc", 0.0) >= MCC_REACHED), None)
        else:
            from contextlib import redirect_stdout

            from .kitti import KittiConfig, run_kitti

            if data_dir is None:  # the synthetic file, made where the task runs (no shared file system)
                from ..data.kitti_masks import PICKLE_NAME, generate_synthetic, write_kitti_pickle

                data_dir = str(Path(tmp) / PICKLE_NAME)
                write_kitti_pickle(data_dir, generate_synthetic(0))
            cfg = KittiConfig(**row.config(steps), data_dir=data_dir, seed=seed, output_dir=f"{tmp}/out",
                              ckpt_dir=f"{tmp}/ckpt", log_dir=f"{tmp}/logs", threads=threads)
            with redirect_stdout(io.StringIO()):
                summary = run_kitti(cfg)
            r2, mcc = float("nan"), summary["mcc"]
    import numba

    record = {"row": row.name, "seed": seed, "r2": r2, "mcc": mcc, "seconds": round(time.monotonic() - t0, 1),
              "status": "ok", "error": "", "host": platform.node(),
              "threads": {"torch": torch.get_num_threads(), "numba_pool": numba.config.NUMBA_NUM_THREADS},
              "config": row.config(steps)}
    if row.command == "mlp":  # KITTI logs no MCC while it trains
        record["seconds_to_mcc"] = reached
    return record


# ---------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------

def _read_runs(path: Path, configs: dict) -> tuple[dict, int]:
    """Finished runs of an earlier call, by (row, seed), and how many were made with other settings.

    ``configs`` maps each wanted (row, seed) to its settings now; a result counts only for the settings
    it was made with (a changed recipe or ``--steps`` runs again), and failed runs run again.
    """
    if not path.exists():
        return {}, 0
    done, stale = {}, set()
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut off by a crash: that run is run again
        key = (rec.get("row"), rec.get("seed"))
        if rec.get("status") != "ok" or key not in configs:
            continue
        if rec.get("config") == configs[key]:
            done[key] = rec
            stale.discard(key)
        else:
            stale.add(key)
    return done, len(stale - set(done))


def _one_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc  # a RayTaskError carries the task's own exception
    lines = [ln for ln in str(cause).strip().splitlines() if ln.strip()]
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}"[:300]


def run_table(rows: list[Row], seeds: list[int], output_dir: str | Path, steps: int | None = None,
              address: str | None = None, cpus_per_run: int = 1, gpus_per_run: float = 0,
              data_dir: str | None = None, progress: bool = True, max_retries: int = 1) -> list[dict]:
    """Run every (row, seed) as a Ray task, keep finished runs across calls, write the outputs.

    Returns one record per (row, seed): ``row, seed, r2, mcc, seconds, status, error, host, config``.
    """
    from ..progress import Progress

    ray = need("ray")

    dirs = data_dirs(rows, data_dir)
    out = Path(output_dir)
    check_output_folder(out, ("runs.jsonl", "table.md"), "clica table")
    out.mkdir(parents=True, exist_ok=True)
    runs_file = out / "runs.jsonl"
    wanted = [(row, seed) for row in rows for seed in seeds]
    done, stale = _read_runs(runs_file, {(row.name, seed): row.config(steps) for row, seed in wanted})
    if stale and progress:
        print(f"{stale} finished run(s) in {runs_file} used other settings; running them again")
    # seed by seed: an interrupted table holds whole seeds of every row
    todo = [(row, seed) for seed in seeds for row in rows if (row.name, seed) not in done]
    t0 = time.monotonic()
    interrupted = False
    if todo:
        address = address or os.environ.get("RAY_ADDRESS")
        started = not ray.is_initialized()
        if started:
            if not address:  # an embedded Ray on this machine only: no token to hand around
                os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            ray.init(address=address, num_cpus=None if address else os.cpu_count(), include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        try:
            # each task sizes its thread pools to its CPUs: a worker inherits the driver's environment,
            # and a numba pool of the driver's size spins idle threads that slowed runs five-fold
            threads = {"OMP_NUM_THREADS": str(cpus_per_run), "NUMBA_NUM_THREADS": str(cpus_per_run)}
            # a worker that dies is retried; a run that raises is not: it is seeded, so it would raise again
            task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=max_retries,
                              retry_exceptions=False, runtime_env={"env_vars": threads})(run_one)
            pending = {task.remote(row, seed, steps, cpus_per_run, dirs.get(dataset_of(row))): (row, seed)
                       for row, seed in todo}
            with Progress(len(wanted), desc="table runs", initial=len(wanted) - len(todo), unit="run",
                          every_s=10, enabled=progress) as bar:
                while pending and not interrupted:
                    try:
                        ready, _ = ray.wait(list(pending), num_returns=1)
                    except KeyboardInterrupt:  # Ctrl-C: the table of what finished, then stop
                        interrupted = True
                        break
                    row, seed = pending.pop(ready[0])
                    try:
                        rec = ray.get(ready[0])
                    except Exception as exc:  # raised, or the worker died, after Ray's retries
                        rec = {"row": row.name, "seed": seed, "r2": float("nan"), "mcc": float("nan"),
                               "seconds": float("nan"), "status": "failed", "error": _one_line(exc),
                               "host": "", "config": row.config(steps)}
                    append_line(runs_file, json.dumps(rec))
                    done[(row.name, seed)] = rec
                    bar.update(1)
                    if rec["status"] != "ok":
                        bar.write(f"{row.name} seed {seed} failed: {rec['error']}")
        finally:
            if started:
                ray.shutdown()
    not_run = {"r2": float("nan"), "mcc": float("nan"), "seconds": float("nan"), "status": "not run", "error": "",
               "host": ""}
    records = [done.get((row.name, seed)) or {"row": row.name, "seed": seed, **not_run, "config": row.config(steps)}
               for row, seed in wanted]
    write_outputs(rows, records, out, steps, total_s=time.monotonic() - t0)
    if interrupted:  # the outputs show the finished runs; the same command runs the rest
        raise KeyboardInterrupt
    return records


# ---------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------

def summarize(rows: list[Row], records: list[dict]) -> list[dict]:
    """Per row: mean ± std of R² and MCC over its finished seeds, mean seconds, and the verdict."""
    out = []
    for row in rows:
        ok = [r for r in records if r["row"] == row.name and r["status"] == "ok"]
        failed = [r for r in records if r["row"] == row.name and r["status"] == "failed"]
        not_run = sum(r["row"] == row.name and r["status"] == "not run" for r in records)
        r2 = np.array([r["r2"] for r in ok], dtype=float)
        mcc = np.array([r["mcc"] for r in ok], dtype=float)
        check = CLAIMS[row.prediction].check
        verdict = "—"
        if check is not None and ok and not failed:
            verdict = "✓" if check(_mean_std(r2)[0], _mean_std(mcc)[0]) else "✗"
        # None: the run never got there; no key: a run that did not record it (KITTI, older versions)
        recorded = [r["seconds_to_mcc"] for r in ok if "seconds_to_mcc" in r]
        reached = [t for t in recorded if t is not None]
        out.append({"row": row.name, "prediction": row.prediction, "r2": _mean_std(r2), "mcc": _mean_std(mcc),
                    "seconds_to_mcc": (float(np.median(reached)) if reached else math.nan, len(reached), len(recorded)),
                    "seconds": float(np.mean([r["seconds"] for r in ok])) if ok else math.nan,
                    "n_ok": len(ok), "n_failed": len(failed), "n_not_run": not_run, "verdict": verdict,
                    "errors": sorted({r["error"] for r in failed})})
    return out


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    return (float(np.mean(values)), float(np.std(values))) if len(values) else (math.nan, math.nan)


def _score(mean_std: tuple[float, float], n: int) -> str:
    """``mean ± std`` over ``n`` seeds; the mean alone for one seed, ``—`` for none."""
    mean, std = mean_std
    if math.isnan(mean):
        return "—"
    return f"{mean:.4f}" if n == 1 else f"{mean:.4f} ± {std:.4f}"


def write_outputs(rows: list[Row], records: list[dict], out: Path, steps: int | None, total_s: float) -> None:
    """table.csv (one line per run), table.md (per row, against the prediction) and table.png."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["row", "seed", "r2", "mcc", "seconds", "status", "error", "host", "seconds_to_mcc_0.99"])
    for r in records:
        to_mcc = r.get("seconds_to_mcc", "") if r["status"] == "ok" else ""
        writer.writerow([r["row"], r["seed"], r["r2"], r["mcc"], r["seconds"], r["status"], r["error"], r["host"],
                         "never" if to_mcc is None else to_mcc])
    atomic_write_bytes(out / "table.csv", buf.getvalue().encode())

    summary = summarize(rows, records)
    lines = ["# Identifiability table", "",
             f"Machine: {platform.node()}, {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}; "
             f"seeds per row: {len({r['seed'] for r in records})}; "
             f"steps: {steps if steps is not None else 'each row recipe'}; this call took {total_s:.0f} s.", "",
             "| row | theory | linear R² | MCC | s per run | s to MCC 0.99 | target | runs |",
             "|---|---|---|---|---|---|---|---|"]
    for s in summary:
        runs = (f"{s['n_ok']} ok" + (f", {s['n_failed']} failed" if s["n_failed"] else "")
                + (f", {s['n_not_run']} not run (interrupted)" if s["n_not_run"] else ""))
        seconds = "—" if math.isnan(s["seconds"]) else f"{s['seconds']:.0f}"
        pred = CLAIMS[s["prediction"]]
        target = pred.target if pred.check is None else f"{pred.target} {s['verdict']}"
        lines.append(f"| {s['row']} | {pred.label} | {_score(s['r2'], s['n_ok'])} | {_score(s['mcc'], s['n_ok'])} | "
                     f"{seconds} | {_to_mcc(s['seconds_to_mcc'])} | {target} | {runs} |")
    cells = [row for row in rows if row.cell]
    if cells:
        lines += ["", "MCC by method and dataset (mean ± std over the seeds):", "", *_cell_table(cells, summary)]
    lines += ["", "Theory: " + "; ".join(f"**{p.label}**: {p.claim}" for p in CLAIMS.values()) + ".", "",
              f"s to MCC {MCC_REACHED}: the median over seeds of the training seconds at the first logged step "
              f"(every {MLP_RECIPE['n_log_steps']} steps) at or above it, with how many seeds got there.", "",
              "Each row alone (one seed; add `--seed S`):", ""]
    for row in rows:
        lines.append(f"- `{row.name}`: `{row.command_line(steps)}`" + (f" ({row.note})" if row.note else ""))
    failures = [(s["row"], e) for s in summary for e in s["errors"]]
    if failures:
        lines += ["", "Failed runs:", ""] + [f"- {row}: {err}" for row, err in failures]
    atomic_write_bytes(out / "table.md", ("\n".join(lines) + "\n").encode())
    _figure(rows, records, out / "table.png")
    atomic_write_json(out / "summary.json", {"rows": summary, "seconds": round(total_s, 1)})


def _cell_table(rows: list[Row], summary: list[dict]) -> list[str]:
    """A Markdown table with a line per method and a column per dataset, each cell its MCC."""
    by_cell = {row.cell: next(s for s in summary if s["row"] == row.name) for row in rows}
    methods = list(dict.fromkeys(m for m, _ in by_cell))
    datasets = list(dict.fromkeys(d for _, d in by_cell))
    lines = ["| method | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for m in methods:
        cells = [_score(by_cell[m, d]["mcc"], by_cell[m, d]["n_ok"]) if (m, d) in by_cell else "—" for d in datasets]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def _to_mcc(median_reached_recorded: tuple[float, int, int]) -> str:
    median, reached, recorded = median_reached_recorded
    if recorded == 0:
        return "—"
    return "never" if reached == 0 else f"{median:.0f} ({reached} of {recorded})"


def _figure(rows: list[Row], records: list[dict], path: Path) -> None:
    from ..plots import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(max(6, 0.9 * len(rows) + 2), 4), constrained_layout=True)
    for k, row in enumerate(rows):
        ok = [r for r in records if r["row"] == row.name and r["status"] == "ok"]
        ax.scatter([k - 0.12] * len(ok), [r["r2"] for r in ok], color="tab:blue", s=18,
                   label="linear R²" if k == 0 else None)
        ax.scatter([k + 0.12] * len(ok), [r["mcc"] for r in ok], color="tab:orange", s=18,
                   label="MCC" if k == 0 else None)
    ax.axhline(0.99, color="grey", lw=0.8, ls="--", label="target 0.99")
    ax.set_xticks(range(len(rows)), [r.name for r in rows], rotation=45, ha="right")
    ax.set_ylabel("score (each seed)")
    ax.set_xlabel("row")
    ax.set_title("identifiability table: each seed's linear R² and MCC")
    ax.legend(loc="best", fontsize=8)
    save_figure(fig, path)


# ---------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    mlp = sub.add_parser("mlp", help="the MLP-mixing rows", description=DESCRIPTION)
    kitti = sub.add_parser("kitti", help="the KITTI Masks rows (InfoNCE L1/L2, SlowVAE, β-VAE)",
                           description=DESCRIPTION)
    for q in (mlp, kitti):
        _add_common_arguments(q)
    mlp.add_argument("--vary", choices=("n", "layers"), default=None,
                     help="the box/Laplace/L1 row at n = 5, 10, 20, 40 or mixing depth 1-5 instead of the grid")
    kitti.add_argument("--datasets", default=None,
                       help=f"comma-separated datasets ({', '.join(DATASETS)}): every row runs on each, one cell "
                            "of the table per (row, dataset), scored by MCC (default: KITTI Masks alone, as rows "
                            "without a dataset). dsprites and shapes3d can be the generated files of `clica data "
                            "dsprites|shapes3d`, which follow the published factor grids but are not the published "
                            "images")
    kitti.add_argument("--data-dir", default=None,
                       help="the folder that holds each dataset's published file(s), read as `clica kitti "
                            "--dataset D --data-dir DIR` reads them, at the same path on every worker; or the KITTI "
                            "pickle itself (default: the synthetic KITTI data, made by each run; for the other "
                            "datasets $CLICA_DATA_DIR, else the original's folders, as clica kitti)")


def _add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--list", action="store_true",
                   help="print each row, the theory's prediction and the clica command that runs it alone, and stop")
    p.add_argument("--rows", default=None, help="comma-separated row names to run (default: all; see --list)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per row (0, 1, ..., SEEDS-1)")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps of every row instead of its recipe's (for smoke tests)")
    p.add_argument("--output-dir", default="runs/table",
                   help="where table.md, table.csv, runs.jsonl and table.png go: a new or empty folder, or a "
                        "table's (resumed); a folder holding anything else is refused")
    p.add_argument("--address", default=None,
                   help="an existing Ray cluster to send the runs to (default: $RAY_ADDRESS, else an embedded "
                        "local Ray with this machine's cores)")
    p.add_argument("--cpus-per-run", type=int, default=1, help="CPU cores (and torch threads) each run gets")
    p.add_argument("--gpus-per-run", type=float, default=0, help="GPUs each run gets (fractions share one)")


def run(args: argparse.Namespace) -> int:
    rows = select_rows(args.experiment, args.rows, getattr(args, "vary", None))
    if getattr(args, "datasets", None):
        rows = dataset_rows(rows, parse_datasets(args.datasets))
    if args.seeds < 1:
        raise ClicaError(f"--seeds must be at least 1, got {args.seeds}")
    if args.steps is not None and args.steps < 1:
        raise ClicaError(f"--steps must be at least 1, got {args.steps}")
    if args.cpus_per_run < 1 or args.gpus_per_run < 0:
        raise ClicaError("--cpus-per-run must be ≥ 1 and --gpus-per-run ≥ 0")
    if args.list:
        for row in rows:
            print(f"{row.name:22s} {CLAIMS[row.prediction].label:14s} {CLAIMS[row.prediction].claim}"
                  + (f" ({row.note})" if row.note else ""))
            print(f"    {row.command_line(args.steps)}")
        return 0
    records = run_table(rows, list(range(args.seeds)), args.output_dir, steps=args.steps, address=args.address,
                        cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                        data_dir=getattr(args, "data_dir", None))
    failed = sum(r["status"] != "ok" for r in records)
    print((Path(args.output_dir) / "table.md").read_text())
    print(f"{len(records) - failed} runs finished, {failed} failed; outputs in {args.output_dir}")
    return 0
