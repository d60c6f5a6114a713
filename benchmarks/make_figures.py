"""Regenerate the pictures of the README and docs (``docs/img/``), each with the clica command that makes it.

    python benchmarks/make_figures.py                                  # everything (the headline run: minutes)
    python benchmarks/make_figures.py --headline-run runs/headline --table-dir runs/table   # reuse finished runs
    python benchmarks/make_figures.py --only 3dident kitti             # the fast ones

Without ``--headline-run`` it runs ``clica mlp --preset headline --seed 0``; without ``--table-dir`` it
runs the short table of ``TABLE`` (1 seed, few steps: the picture of a smoke run, as its caption says).
Each PNG is kept under 150 KB (fewer colours, then smaller, where needed).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

OUT = Path(__file__).resolve().parents[1] / "docs" / "img"
MAX_BYTES = 150_000
HEADLINE = ["mlp", "--preset", "headline", "--seed", "0"]
TABLE = ["table", "mlp", "--rows", "box-laplace-l1,box-normal-l2,real-normal-l2", "--seeds", "1", "--steps", "2000"]
FIGURES = ("headline", "table", "3dident", "kitti")


def clica(*argv: str) -> None:
    """Run ``clica ARGV`` as a user would, echoing the command."""
    print("$ clica " + " ".join(argv), flush=True)
    subprocess.run([sys.executable, "-m", "clica", *argv], check=True)


def small_png(source: Path, target: Path, max_bytes: int = MAX_BYTES) -> Path:
    """Copy ``source`` to ``target`` as a PNG under ``max_bytes``: as it is, else in 256 colours, else
    smaller by a quarter at a time."""
    image = Image.open(source).convert("RGB")
    for reduced in (image, image.quantize(256, method=Image.Quantize.MEDIANCUT)):
        buf = io.BytesIO()
        reduced.save(buf, "PNG", optimize=True)
        if buf.tell() <= max_bytes:
            break
    while buf.tell() > max_bytes:
        image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)
        buf = io.BytesIO()
        image.quantize(256, method=Image.Quantize.MEDIANCUT).save(buf, "PNG", optimize=True)
    target.write_bytes(buf.getvalue())
    print(f"wrote {target} ({buf.tell() // 1000} KB, {image.width}×{image.height})")
    return target


def headline(out: Path, tmp: Path, run: Path | None) -> None:
    if run is None:
        run = tmp / "headline"
        clica(*HEADLINE, "--save-dir", str(run))
    small_png(run / "latents_unsupervised.png", out / "headline_latents.png")


def table(out: Path, tmp: Path, table_dir: Path | None) -> None:
    if table_dir is None:
        table_dir = tmp / "table"
        clica(*TABLE, "--output-dir", str(table_dir))
    small_png(table_dir / "table.png", out / "table.png")


def threedident(out: Path, tmp: Path) -> None:
    clica("render", "preview", "--grid", str(tmp / "grid.png"), "--n", "16", "--image-size", "96", "--seed", "0")
    small_png(tmp / "grid.png", out / "3dident_grid.png")
    clica("render", "preview", "--sweep", str(tmp / "sweep.png"), "--image-size", "96")
    small_png(tmp / "sweep.png", out / "3dident_sweep.png")


def kitti(out: Path, tmp: Path) -> None:
    clica("data", "kitti-masks", "--output", str(tmp / "kitti_peds_v2.pickle"), "--seed", "0",
          "--preview", str(tmp / "kitti.png"))
    small_png(tmp / "kitti.png", out / "kitti_masks.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=OUT, help="where the PNGs go (default: docs/img)")
    p.add_argument("--only", nargs="+", choices=FIGURES, default=FIGURES, help="make only these pictures")
    p.add_argument("--headline-run", type=Path, default=None,
                   help="a finished `clica mlp --preset headline --seed 0` run folder (default: run it)")
    p.add_argument("--table-dir", type=Path, default=None,
                   help="a finished `clica table mlp` output folder (default: run the short table)")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clica-figures-") as tmp:
        tmp = Path(tmp)
        if "headline" in a.only:
            headline(a.out, tmp, a.headline_run)
        if "table" in a.only:
            table(a.out, tmp, a.table_dir)
        if "3dident" in a.only:
            threedident(a.out, tmp)
        if "kitti" in a.only:
            kitti(a.out, tmp)


if __name__ == "__main__":
    main()
