"""``clica rerun RUN_DIR``: run again what a run folder's ``config.json`` describes.

The config holds every setting and the seed actually used, so the rerun
computes the same numbers (on the same machine and library versions) in a new
folder, where the two can be compared. It works for the folders of ``clica
mlp``, ``kitti`` (one seed's folder) and ``3dident``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ClicaError
from ..runs import RunDir, run_command

DESCRIPTION = (
    "Run again what a run folder's config.json describes (same settings, same seed) into a new folder, "
    "to reproduce or check a result. Works for the folders of clica mlp, kitti (one seed's folder) "
    "and 3dident."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="the run folder whose config.json to run again")
    p.add_argument("--into", default=None,
                   help="folder of the new run (default: RUN_DIR-rerun); kitti writes its results under "
                        "INTO/<experiment-dir>/<seed> and its checkpoints under INTO/checkpoints")


def rerun(run_dir: str | Path, into: str | Path | None = None) -> dict:
    """Run ``run_dir``'s config again into ``into`` (default ``RUN_DIR-rerun``); return the new summary."""
    source = RunDir(run_dir)
    config = source.read_config()
    where = str(source.file("config.json"))
    into = Path(into) if into is not None else Path(f"{Path(run_dir)}-rerun")
    if (into / "config.json").exists():
        raise ClicaError(f"{into} already holds a run; choose another folder with --into")
    command = run_command(config, where)
    print(f"rerunning the clica {command} run of {run_dir} (seed {config.get('seed')}) into {into}")
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


def run(args: argparse.Namespace) -> int:
    summary = rerun(args.run_dir, args.into)
    print("summary: " + json.dumps({k: v for k, v in summary.items() if not isinstance(v, (dict, list))}))
    return 0
