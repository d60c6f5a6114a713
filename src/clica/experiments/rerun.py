"""``clica rerun RUN_DIR``: run again what a run folder's ``config.json`` describes.

The config holds every setting, the seed actually used and torch's thread
count, so the rerun computes the same numbers (on the same machine and library
versions, whatever else runs on it) in a new folder; ``clica rerun`` prints the
scores of both summaries side by side. It works for the folders of ``clica
mlp``, ``kitti`` (one seed's folder) and ``3dident``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
from pathlib import Path

import torch

from ..errors import ClicaError
from ..runs import RunDir, run_command

DESCRIPTION = (
    "Run again what a run folder's config.json describes (same settings, same seed, same number of torch "
    "threads) into a new folder, to reproduce or check a result, and print both summaries' scores side by "
    "side. Works for the folders of clica mlp, kitti (one seed's folder) and 3dident."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="the run folder whose config.json to run again")
    p.add_argument("--into", default=None,
                   help="folder of the new run (default: RUN_DIR-rerun); kitti writes its results under "
                        "INTO/<experiment-dir>/<seed> and its checkpoints under INTO/checkpoints")


@contextlib.contextmanager
def torch_threads(config: dict, where: str):
    """Run the block on the thread count ``config`` recorded (``torch_threads``; older runs: unchanged)."""
    threads, own = config.get("torch_threads"), torch.get_num_threads()
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ClicaError(f"{where}: torch_threads is {threads!r}, not a thread count")
    torch.set_num_threads(threads or own)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(own)


def rerun(run_dir: str | Path, into: str | Path | None = None) -> dict:
    """Run ``run_dir``'s config again into ``into`` (default ``RUN_DIR-rerun``) on the torch thread count
    it recorded; return the new summary."""
    source = RunDir(run_dir)
    config = source.read_config()
    where = str(source.file("config.json"))
    into = Path(into) if into is not None else Path(f"{Path(run_dir)}-rerun")
    if (into / "config.json").exists():
        raise ClicaError(f"{into} already holds a run; choose another folder with --into")
    command = run_command(config, where)
    with torch_threads(config, where) as threads:
        print(f"rerunning the clica {command} run of {run_dir} (seed {config.get('seed')}, torch threads "
              f"{threads}) into {into}")
        return _run(command, config, where, into)


def _run(command: str, config: dict, where: str, into: Path) -> dict:
    if command == "mlp":
        from .mlp import MLPConfig, run_mlp

        return run_mlp(MLPConfig.from_dict(config), into)
    if command == "kitti":
        from .kitti import KittiConfig, run_kitti

        cfg = KittiConfig.from_dict(config, where)
        # one seed's folder: that seed alone, its results and checkpoints in the new folder
        cfg.random_seeds = cfg.random_search = cfg.evaluate = False
        cfg.output_dir, cfg.ckpt_dir, cfg.log_dir = str(into), str(into / "checkpoints"), str(into / "logs")
        return run_kitti(cfg)
    if command == "3dident":
        from .threedident import ThreeDIdentConfig, run_3dident

        cfg = ThreeDIdentConfig.from_dict(config, where)
        if cfg.save_model:  # the original run's model file stays as it is
            cfg.save_model = str(into / Path(cfg.save_model).name)
            into.mkdir(parents=True, exist_ok=True)
        return run_3dident(cfg, run_dir=into)
    raise ClicaError(f"{where}: unknown command {command!r}")


def scores(summary: dict, prefix: str = "") -> dict[str, float]:
    """The summary's numbers by dotted name (``phases.unsupervised.mcc``), timings (``*_s``,
    ``*seconds``) and lists left out."""
    out = {}
    for key, value in summary.items():
        name = prefix + str(key)
        if isinstance(value, dict):
            out.update(scores(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and not name.endswith(("_s", "seconds")):
            out[name] = float(value)
    return out


def side_by_side(original: dict | None, again: dict) -> str:
    """Both summaries' scores in two columns, and whether they are the same."""
    new = scores(again)
    if original is None:
        return "the original run has no summary.json; the rerun's scores:\n" + "\n".join(
            f"  {k:<40} {v:.6g}" for k, v in new.items())
    old = scores(original)
    names = list(dict.fromkeys([*old, *new]))
    differ = [k for k in names if not (k in old and k in new and _same(old[k], new[k]))]
    lines = [f"  {'score':<40} {'original':>14} {'rerun':>14}"]
    lines += [f"  {k:<40} {_cell(old.get(k)):>14} {_cell(new.get(k)):>14}{'  differs' if k in differ else ''}"
              for k in names]
    verdict = (f"all {len(names)} scores are the same" if not differ
               else f"{len(differ)} of {len(names)} scores differ")
    return "\n".join(["scores (timings left out):", *lines, verdict])


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.10g}"


def run(args: argparse.Namespace) -> int:
    summary = rerun(args.run_dir, args.into)
    path = RunDir(args.run_dir).file("summary.json")
    print(side_by_side(json.loads(path.read_text()) if path.is_file() else None, summary))
    return 0
