"""``clica render``: make a 3DIdent dataset — latents, images, previews, statistics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import ClicaError
from ..extras import require

# the subcommands that render images, with the [render] extra's OpenGL
RENDERING = ("dataset", "images", "preview")

DESCRIPTION = """Generate the 3DIdent dataset in the published folder format:
`dataset` does it all in one go (latents, images, stats; rerun it to finish an interrupted one),
`latents` samples raw_latents.npy and latents.npy (the original generator's flags),
`images` renders images/{i}.png with a fast headless OpenGL rasteriser (sharded, resumable,
parallel), `preview` draws grids of renders, `stats` stores the per-channel mean/std."""


def _latent_flags(p: argparse.ArgumentParser) -> None:
    """The flags of the original latent generator (``clica render latents`` and ``dataset``)."""
    p.add_argument("--n-points", default=1000000, type=int, help="number of latent rows (images)")
    p.add_argument("--n-objects", default=1, type=int,
                   help="objects per scene (each has 9 latents: position, rotation, spotlight, hues; "
                        "plus one background hue per scene)")
    p.add_argument("--position-only", action="store_true", help="fix rotation, spotlight and hues")
    p.add_argument("--rotation-and-color-only", action="store_true", help="fix the position at the origin")
    p.add_argument("--rotation-only", action="store_true",
                   help="fix position and hues (non-periodic variant only, as in the original)")
    p.add_argument("--color-only", action="store_true",
                   help="fix position, rotation and spotlight angle (non-periodic variant only)")
    p.add_argument("--fixed-spotlight", action="store_true",
                   help="fix spotlight angle and hue (non-periodic variant only)")
    p.add_argument("--non-periodic-rotation-and-color", action="store_true",
                   help="angles and hues uniform in [-pi/2, pi/2] instead of on a sphere")


def _image_flags(p: argparse.ArgumentParser) -> None:
    """How images are rendered (``clica render images`` and ``dataset``)."""
    p.add_argument("--no-spotlights", action="store_true",
                   help="render without the objects' spotlights (their latents are then ignored)")
    p.add_argument("--use-gpu", action="store_true", help="render on the GPU's EGL device, not Mesa's CPU rasteriser")
    p.add_argument("--material-names", nargs="+", type=str, default=["Rubber"],
                   help="per object (or one for all): Rubber, MyMetal, Crystal")
    p.add_argument("--shape-names", nargs="+", type=str, default=["Teapot"],
                   help="per object (or one for all): Teapot, Cube, Sphere, Cylinder, Capsule")
    p.add_argument("--image-size", default=224, type=int, help="image width and height in pixels")
    p.add_argument("--workers", default=1, type=int, help="local rendering processes")
    p.add_argument("--batch-size", default=None, type=int,
                   help="images per GL batch (default: as many as the atlas holds)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..cli import HelpFormatter

    sub = parser.add_subparsers(dest="render_command", metavar="SUBCOMMAND")
    fmt = HelpFormatter

    p = sub.add_parser("dataset", help="a whole dataset in one go: latents, images, stats (resumable)",
                       formatter_class=fmt,
                       description="Write a complete 3DIdent dataset into --output-folder: the latents "
                       "(`clica render latents`), every image (`clica render images`) and stats.json "
                       "(`clica render stats`). Rerunning the same command finishes an interrupted "
                       "dataset: only the missing images are rendered.")
    p.add_argument("--output-folder", required=True, type=str,
                   help="the dataset folder (created if needed): new, empty or a 3DIdent dataset; a folder "
                        "holding anything else is refused")
    p.add_argument("--seed", default=0, type=int, help="sampling seed of the latents")
    _latent_flags(p)
    _image_flags(p)
    p.set_defaults(_render=_dataset)

    p = sub.add_parser("latents", help="sample raw_latents.npy and latents.npy", formatter_class=fmt,
                       description="Sample the latents (generate_clevr_dataset_latents.py's flags).")
    p.add_argument("--output-folder", required=True, type=str,
                   help="folder to write raw_latents.npy and latents.npy into (created if needed): new, empty "
                        "or a 3DIdent dataset; a folder holding anything else is refused")
    p.add_argument("--seed", default=0, type=int, help="sampling seed")
    _latent_flags(p)
    p.set_defaults(_render=_latents)

    p = sub.add_parser("images", help="render images/{i}.png for the folder's latents", formatter_class=fmt,
                       description="Render the images (generate_clevr_dataset_images.py's flags). "
                       "Existing images are skipped, so rerunning resumes an interrupted render.")
    p.add_argument("--output-folder", required=True, type=str, help="folder holding latents.npy")
    p.add_argument("--n-batches", default=1, type=int, help="number of shards")
    p.add_argument("--batch-index", default=0, type=int, help="the shard to render, 0..n-batches-1")
    _image_flags(p)
    p.add_argument("--seed", default=None, type=int,
                   help="recorded in render_config.json; rendering itself has no randomness")
    p.set_defaults(_render=_images)

    p = sub.add_parser("preview", help="PNG grids of renders and of one-latent-at-a-time sweeps",
                       formatter_class=fmt,
                       description="Write a grid of renders (latents from --from-folder / --latents-file, "
                       "else random ones) and/or a grid varying one latent at a time.")
    p.add_argument("--grid", type=str, default=None, help="write the grid of renders here (PNG)")
    p.add_argument("--sweep", type=str, default=None, help="write the one-latent-at-a-time grid here (PNG)")
    p.add_argument("--from-folder", type=str, default=None,
                   help="take latents from this folder's latents.npy (the sweep: their ranges)")
    p.add_argument("--latents-file", type=str, default=None,
                   help="take latents from this .npy file (the sweep: their ranges)")
    p.add_argument("--n", default=16, type=int, help="number of renders in the grid")
    p.add_argument("--steps", default=7, type=int, help="values per latent in the sweep")
    p.add_argument("--image-size", default=128, type=int, help="pixels per render (width and height)")
    p.add_argument("--zoom", default=3, type=int,
                   help="the sweep's rotation and object-hue rows show the object magnified this many "
                        "times (rendered at ZOOM × --image-size, cropped around the object); 1: no zoom")
    p.add_argument("--seed", default=0, type=int, help="picks the random latents / rows")
    p.add_argument("--no-spotlights", action="store_true", help="render without the objects' spotlights")
    p.add_argument("--shape-names", nargs="+", type=str, default=["Teapot"],
                   help="per object (or one for all): Teapot, Cube, Sphere, Cylinder, Capsule")
    p.add_argument("--material-names", nargs="+", type=str, default=["Rubber"],
                   help="per object (or one for all): Rubber, MyMetal, Crystal")
    p.set_defaults(_render=_preview)

    p = sub.add_parser("stats", help="per-channel image mean/std into stats.json", formatter_class=fmt,
                       description="Compute the per-channel mean and std of the folder's images "
                       "(get_mean_std.py) and store them in stats.json for the loader.")
    p.add_argument("--output-folder", required=True, type=str, help="folder holding latents.npy and images/")
    p.set_defaults(_render=_stats)


def run(args) -> int:
    handler = getattr(args, "_render", None)
    if handler is None:
        raise ClicaError("choose a subcommand: dataset, latents, images, preview or stats (see clica render -h)")
    if args.render_command in RENDERING:
        require("render")
    return int(handler(args) or 0)


def _latents(args) -> int:
    from .dataset import write_latents
    from .latents import LatentOptions

    options = LatentOptions(
        n_points=args.n_points, n_objects=args.n_objects, position_only=args.position_only,
        rotation_and_color_only=args.rotation_and_color_only, rotation_only=args.rotation_only,
        color_only=args.color_only, fixed_spotlight=args.fixed_spotlight,
        non_periodic_rotation_and_color=args.non_periodic_rotation_and_color, seed=args.seed)
    write_latents(args.output_folder, options)
    return 0


def _dataset(args) -> int:
    from .dataset import make_dataset

    folder = make_dataset(args.output_folder, n_points=args.n_points, image_size=args.image_size,
                          seed=args.seed, n_objects=args.n_objects,
                          non_periodic_rotation_and_color=args.non_periodic_rotation_and_color,
                          position_only=args.position_only,
                          rotation_and_color_only=args.rotation_and_color_only,
                          rotation_only=args.rotation_only, color_only=args.color_only,
                          fixed_spotlight=args.fixed_spotlight, shape_names=args.shape_names,
                          material_names=args.material_names, spotlights=not args.no_spotlights,
                          workers=args.workers, use_gpu=args.use_gpu, batch_size=args.batch_size,
                          stats=True, progress=True)
    print(f"dataset ready: {folder} ({args.n_points} images, {args.image_size}x{args.image_size})")
    return 0


def _images(args) -> int:
    from .dataset import render_images

    r = render_images(args.output_folder, n_batches=args.n_batches, batch_index=args.batch_index,
                      image_size=args.image_size, shape_names=args.shape_names,
                      material_names=args.material_names, spotlights=not args.no_spotlights,
                      use_gpu=args.use_gpu, workers=args.workers, batch_size=args.batch_size,
                      seed=args.seed, progress=True)
    if r["rendered"]:
        print(f"rendered {r['rendered']} images in {r['seconds']:.1f} s ({r['images_per_s']:.1f} images/s), "
              f"skipped {r['skipped']} already there; OpenGL renderer: {r['renderer']}")
        if args.use_gpu and "llvmpipe" in str(r["renderer"]).lower():
            print("note: --use-gpu found no GPU EGL device; the images were rendered on the CPU")
    else:
        print(f"nothing to render: all {r['skipped']} images of this shard are there")
    return 0


def _preview(args) -> int:
    from .latents import LatentOptions, generate_latents
    from .preview import latent_ranges, write_grid, write_sweep

    if not args.grid and not args.sweep:
        raise ClicaError("give --grid PATH and/or --sweep PATH")
    if args.sweep:
        if args.steps < 2:
            raise ClicaError(f"--steps must be at least 2, got {args.steps}")
        if args.zoom < 1:
            raise ClicaError(f"--zoom must be at least 1, got {args.zoom}")
        if args.zoom * args.image_size > 4096:
            raise ClicaError(f"--zoom {args.zoom} × --image-size {args.image_size} exceeds the largest "
                             f"render (4096 px); lower one of them")
    if args.grid and args.n < 1:
        raise ClicaError(f"--n must be at least 1, got {args.n}")
    settings = dict(shape_names=args.shape_names, material_names=args.material_names,
                    spotlights=not args.no_spotlights)
    given = _given_latents(args)
    if args.grid:
        latents = given if given is not None else generate_latents(LatentOptions(n_points=args.n, seed=args.seed))[1]
        rows = np.arange(len(latents))
        if len(latents) > args.n:
            rows = np.sort(np.random.default_rng(args.seed).choice(len(latents), args.n, replace=False))
            latents = latents[rows]
        labels = [f"row {i}" for i in rows] if given is not None else None
        print(f"wrote {write_grid(args.grid, latents, image_size=args.image_size, labels=labels, **settings)}")
    if args.sweep:  # over the given latents' own ranges, else the periodic variant's
        ranges = latent_ranges(given) if given is not None else None
        path = write_sweep(args.sweep, image_size=args.image_size, steps=args.steps, zoom=args.zoom, ranges=ranges,
                           **settings)
        print(f"wrote {path}")
    return 0


def _given_latents(args) -> np.ndarray | None:
    """The latent rows of --from-folder or --latents-file, or ``None`` where neither is given."""
    from .dataset import load_render_latents
    from .latents import n_objects_of

    if args.from_folder and args.latents_file:
        raise ClicaError("give only one of --from-folder and --latents-file")
    if args.from_folder:
        return np.asarray(load_render_latents(args.from_folder))
    if not args.latents_file:
        return None
    path = Path(args.latents_file)
    if not path.exists():
        raise ClicaError(f"--latents-file {path} does not exist")
    try:
        latents = np.atleast_2d(np.load(path))
    except Exception as exc:
        raise ClicaError(f"cannot read --latents-file {path}: {exc}") from None
    n_objects_of(latents)
    return latents


def _stats(args) -> int:
    from .dataset import compute_stats

    s = compute_stats(args.output_folder, progress=True)
    mean = ", ".join(f"{v:.4f}" for v in s["mean"])
    std = ", ".join(f"{v:.4f}" for v in s["std"])
    print(f"mean [{mean}]  std [{std}]  over {s['n_images']} images -> "
          f"{Path(args.output_folder) / 'stats.json'}")
    return 0


if __name__ == "__main__":
    from ..cli import main

    sys.exit(main(["render", *sys.argv[1:]]))
