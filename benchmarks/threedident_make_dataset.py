"""Render a 3DIdent-format folder for the 3DIdent benchmarks and the CPU example.

Uses ``clica.render.make_dataset`` (latents, images, stats.json; resumable),
falling back to the render package's latent sampler and rasteriser directly.
The folder has the published format: raw_latents.npy, latents.npy,
images/{i:0Nd}.png. ``clica render latents/images/stats`` does the same from
the command line.

    python benchmarks/threedident_make_dataset.py data/3dident64 --n-points 40000 --image-size 64 --seed 0
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np


def make_dataset(folder, n_points: int, image_size: int = 64, seed: int = 0, non_periodic: bool = True,
                 chunk: int = 512) -> Path:
    from PIL import Image

    from clica.data.threedident import image_name_width
    from clica.progress import Progress
    from clica.render.latents import LatentOptions, generate_latents
    from clica.render.renderer import Renderer, RenderSettings
    from clica.runs import atomic_write_bytes

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    raw, lat = generate_latents(LatentOptions(n_points=n_points, non_periodic_rotation_and_color=non_periodic,
                                              seed=seed))
    np.save(folder / "raw_latents.npy", raw)
    np.save(folder / "latents.npy", lat)
    renderer = Renderer(RenderSettings.make(image_size=image_size))
    w = image_name_width(n_points)
    with Progress(n_points, desc=f"render {folder.name}", unit="img") as bar:
        for s in range(0, n_points, chunk):
            todo = [i for i in range(s, min(s + chunk, n_points))
                    if not (folder / "images" / f"{str(i).zfill(w)}.png").exists()]
            if todo:
                images = renderer.render(lat[todo])
                for i, im in zip(todo, images):
                    buf = io.BytesIO()
                    Image.fromarray(im).save(buf, format="PNG", compress_level=1)
                    atomic_write_bytes(folder / "images" / f"{str(i).zfill(w)}.png", buf.getvalue())
            bar.update(min(s + chunk, n_points) - s)
    return folder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--n-points", type=int, default=40000)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--periodic", action="store_true", help="periodic variant (11-column raw latents)")
    p.add_argument("--workers", type=int, default=1, help="render processes")
    a = p.parse_args(argv)
    t = time.monotonic()
    try:  # the render package's one-call API: latents, images (parallel, resumable), stats.json
        from clica.render import make_dataset as render_dataset
    except ImportError:
        render_dataset = None
    if render_dataset is not None:
        render_dataset(a.folder, a.n_points, image_size=a.image_size, seed=a.seed,
                       non_periodic_rotation_and_color=not a.periodic, workers=a.workers, stats=True,
                       progress=True)
    else:
        make_dataset(a.folder, a.n_points, a.image_size, a.seed, non_periodic=not a.periodic)
    print(f"{a.n_points} images at {a.image_size}x{a.image_size} in {time.monotonic() - t:.0f}s -> {a.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
