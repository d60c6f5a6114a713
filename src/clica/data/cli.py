"""``clica data``: make offline datasets in the published formats.

``clica data kitti-masks --output FILE --seed S`` writes a synthetic KITTI Masks pickle
(:mod:`clica.data.kitti_masks`); ``clica data dsprites`` and ``clica data shapes3d`` write the
dSprites ``.npz`` and 3D Shapes ``.h5`` on the published factor grids (:mod:`clica.data.generators`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from ..errors import ClicaError

DESCRIPTION = ("Make offline datasets in the published formats: synthetic KITTI Masks (kitti_peds_v2.pickle), "
               "dSprites (.npz) and 3D Shapes (.h5) on the published factor grids. Generated data follow the "
               "published formats and factor grids but are not the published images.")
NOT_PUBLISHED = ("They follow the published factor grid, file layout, dtypes and row order, but are not the "
                 "published images: the {what} are drawn by clica.")
FACTOR_HELP = ("keep only some values of a factor, for small files: NAME=START:STOP[:STEP] or NAME=I,J,K over its "
               "class indices (several after one --factor, or --factor again; e.g. --factor {example}); rows stay "
               "row-major over the kept values and keep the published class indices and values")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..cli import HelpFormatter
    from .kitti_masks import SyntheticConfig

    d = SyntheticConfig()
    sub = parser.add_subparsers(dest="dataset", metavar="DATASET")
    k = sub.add_parser(
        "kitti-masks",
        help="synthetic KITTI Masks (walking pedestrian silhouettes with Laplace transitions)",
        description="Write a synthetic KITTI Masks pickle in the published format: a dict with "
                    "'pedestrians' (list of bool T×64×64 mask sequences) and 'pedestrians_latents' "
                    "(list of float32 T×3: centre of mass y, x and area, computed from the masks). "
                    "Deterministic from --seed. Use it with `clica kitti --data-dir FILE_OR_DIR`.",
        formatter_class=HelpFormatter,
    )
    k.add_argument("--output", "-o", required=True,
                   help="pickle to write (name it kitti_peds_v2.pickle inside a folder to use it as --data-dir)")
    k.add_argument("--seed", type=int, default=0, help="random seed")
    k.add_argument("--sequences", type=int, default=d.n_sequences, help="number of pedestrian tracks")
    k.add_argument("--mean-length", type=float, default=d.mean_length, help="mean frames per track (geometric)")
    k.add_argument("--max-length", type=int, default=d.max_length, help="longest track")
    k.add_argument("--min-height", type=float, default=d.height_range[0], help="smallest figure height (pixels)")
    k.add_argument("--max-height", type=float, default=d.height_range[1], help="largest figure height (pixels)")
    k.add_argument("--step-x", type=float, default=d.step_x, help="Laplace scale of horizontal steps (pixels/frame)")
    k.add_argument("--step-y", type=float, default=d.step_y, help="Laplace scale of vertical steps (pixels/frame)")
    k.add_argument("--step-log-h", type=float, default=d.step_log_h, help="Laplace scale of log-height steps per frame")
    k.add_argument("--preview", default=None, metavar="PNG", help="also save a grid of example sequences")
    k.add_argument("--force", action="store_true", help="overwrite --output if it exists")

    from .generators import dsprites, shapes3d

    ds = sub.add_parser(
        "dsprites", help="dSprites on the published factor grid (2-D sprites, 64×64 binary, .npz)",
        description="Write procedural dSprites as a dSprites-format .npz: imgs uint8 (N, 64, 64), "
                    "latents_classes int64 (N, 6) and latents_values float64 (N, 6) over color, shape "
                    "(square, ellipse, heart), scale (6), orientation (40), posX (32), posY (32); 737,280 images "
                    "in all, row-major as published. No pickled metadata is written. "
                    + NOT_PUBLISHED.format(what="sprites") + f" Name it {dsprites.FILE_NAME} inside a folder to "
                    "use the folder as --data-dir. Deterministic: the grid fixes every image.",
        formatter_class=HelpFormatter)
    s3 = sub.add_parser(
        "shapes3d", help="3D Shapes on the published factor grid (rendered headless, 64×64 RGB, .h5)",
        description="Render 3D Shapes with clica's headless OpenGL renderer and write a 3dshapes-format .h5: "
                    "images uint8 (N, 64, 64, 3) and labels float64 (N, 6) holding the factor values of "
                    "floor_hue, wall_hue, object_hue (10 each), scale (8), shape (cube, cylinder, sphere, capsule) "
                    "and orientation (15); 480,000 images in all, row-major as published. "
                    + NOT_PUBLISHED.format(what="scene and its lighting") + f" Name it {shapes3d.FILE_NAME} inside "
                    "a folder to use the folder as --data-dir. Needs the [render] and [datasets] extras.",
        formatter_class=HelpFormatter)
    for p, module, example in ((ds, dsprites, "posX=::4"), (s3, shapes3d, "object_hue=0:10:3")):
        p.add_argument("--output", "-o", required=True,
                       help=f"file to write (a folder: FOLDER/{module.FILE_NAME})")
        p.add_argument("--factor", action="extend", nargs="+", default=None, metavar="NAME=SEL",
                       help=FACTOR_HELP.format(example=example) + f"; names: {', '.join(module.GRID.names)}")
        p.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    s3.add_argument("--compression", type=int, default=4, choices=range(10), metavar="0-9",
                    help="gzip level of the images (0: uncompressed and contiguous, so a loader can memory-map "
                         "them: 5.5 GiB for the full grid)")


def _output(args, file_name: str) -> Path:
    """``--output``, with ``file_name`` inside it when it is a folder (or ends in /); refused when it exists
    without --force."""
    out = Path(args.output)
    if out.is_dir() or args.output.endswith(("/", os.sep)):
        out = out / file_name
    if out.exists() and not args.force:
        raise ClicaError(f"{out} exists; pass --force to overwrite it")
    return out


def run(args) -> int:
    dataset = getattr(args, "dataset", None)
    if dataset in ("dsprites", "shapes3d"):
        return _run_grid(args)
    if dataset != "kitti-masks":
        raise ClicaError("choose a dataset: clica data {kitti-masks,dsprites,shapes3d} --output FILE")
    from ..progress import Progress
    from .kitti_masks import PICKLE_NAME, SyntheticConfig, generate_synthetic, write_kitti_pickle

    out = _output(args, PICKLE_NAME)
    if not (0 < args.min_height < args.max_height):
        raise ClicaError(f"need 0 < --min-height < --max-height, got {args.min_height}, {args.max_height}")
    if args.max_height > 64:
        raise ClicaError(f"--max-height {args.max_height} exceeds the 64-pixel frame")
    for flag, v in (("--step-x", args.step_x), ("--step-y", args.step_y), ("--step-log-h", args.step_log_h)):
        if v < 0:
            raise ClicaError(f"{flag} must be ≥ 0, got {v}")
    if args.max_length < 2:
        raise ClicaError(f"--max-length must be at least 2, got {args.max_length}")
    cfg = SyntheticConfig(n_sequences=args.sequences, mean_length=args.mean_length, max_length=args.max_length,
                          height_range=(args.min_height, args.max_height), step_x=args.step_x,
                          step_y=args.step_y, step_log_h=args.step_log_h)
    with Progress(cfg.n_sequences, desc="kitti-masks", unit="seq") as bar:
        data = generate_synthetic(args.seed, cfg, progress=bar)
    write_kitti_pickle(out, data)
    masks, lat = data["pedestrians"], data["pedestrians_latents"]
    lengths = np.array([len(m) for m in masks])
    z = np.concatenate(lat)
    dz = np.concatenate([np.diff(a, axis=0) for a in lat])
    print(f"wrote {out}: {len(masks)} sequences, {lengths.sum()} frames "
          f"(length {lengths.min()}-{lengths.max()}, mean {lengths.mean():.1f}), "
          f"area {z[:, 2].min():.0f}-{z[:, 2].max():.0f} px")
    print("frame-to-frame changes (std, kurtosis; Laplace has kurtosis 6): " + ", ".join(
        f"{n} {dz[:, i].std():.2f} {((dz[:, i] - dz[:, i].mean()) ** 4).mean() / dz[:, i].var() ** 2:.1f}"
        for i, n in enumerate(("com_y", "com_x", "area"))))
    if args.preview:
        _preview(masks, args.preview)
        print(f"preview: {args.preview}")
    return 0


def _run_grid(args) -> int:
    """``clica data dsprites|shapes3d``: the (sub-)grid, written atomically with a progress bar."""
    import time

    from ..extras import require
    from ..progress import Progress, duration
    from .generators import dsprites, shapes3d

    module = dsprites if args.dataset == "dsprites" else shapes3d
    out = _output(args, module.FILE_NAME)
    grid = module.GRID.select(args.factor)
    if module is shapes3d:
        require("render")
        require("datasets")
    print(f"{args.dataset}: {grid.describe()} -> {out}")
    t0 = time.monotonic()
    with Progress(len(grid), desc=args.dataset, unit="img") as bar:
        if module is dsprites:
            dsprites.write_npz(out, grid, progress=bar)
        else:
            shapes3d.write_h5(out, grid, progress=bar, compression=args.compression)
    seconds = time.monotonic() - t0
    print(f"wrote {out}: {len(grid):,} images in {duration(seconds)} ({len(grid) / max(seconds, 1e-9):,.0f} images/s), "
          f"{out.stat().st_size / 2**20:,.1f} MiB")
    return 0


def _preview(masks, path, rows: int = 6, cols: int = 10) -> None:
    from ..plots import pyplot, save_figure

    fig, axes = pyplot().subplots(rows, cols, figsize=(cols * 1.1, rows * 1.15 + 0.5), layout="constrained")
    order = sorted(range(len(masks)), key=lambda i: -len(masks[i]))[:rows]
    for r, i in enumerate(order):
        seq = masks[i]
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(seq[min(c, len(seq) - 1)], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"seq {i}", fontsize=7)
            if r == rows - 1:
                ax.set_xlabel(f"frame {c}", fontsize=7)
    fig.suptitle("synthetic KITTI Masks: consecutive frames of the longest sequences", fontsize=9)
    save_figure(fig, path)
