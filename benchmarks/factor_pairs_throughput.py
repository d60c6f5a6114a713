"""Pairs per second from a memory-mapped factor dataset: what ``clica kitti --dataset dsprites|mpi3d`` feeds training.

Writes a full-size dSprites-format file (737,280 binary 64×64 images on the published grid, a compressed
``.npz`` as published) and/or an MPI3D-format file (RGB 64×64, stored uncompressed as published, a cut of
the grid: ``--mpi3d-sizes``), loads it as ``clica kitti`` does (dSprites: a bit-packed ``.npy`` cache built
once; MPI3D: the ``.npz`` memory-mapped in place), then times :class:`clica.data.kitti_masks.PairLoader`
(transition + image gather + float conversion) for ``--seconds``. Example::

    python benchmarks/factor_pairs_throughput.py --folder /tmp/factor-bench --seconds 10
"""

from __future__ import annotations

import argparse
import itertools
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from clica.data.factor_datasets import SPECS, load_factor_dataset
from clica.data.kitti_masks import PairLoader

CHUNK = 16384


def _images(classes: np.ndarray, channels: int) -> np.ndarray:
    """Squares placed and sized by the last factors: sparse images like the real ones."""
    n = len(classes)
    out = np.zeros((n, 64, 64, channels) if channels > 1 else (n, 64, 64), dtype=np.uint8)
    y, x, s = classes[:, -1] % 48 + 4, classes[:, -2] % 48 + 4, 4 + 2 * (classes[:, 1] % 4)
    rows, cols = np.arange(64)[None, :, None], np.arange(64)[None, None, :]
    mask = (rows >= y[:, None, None]) & (rows < (y + s)[:, None, None]) & \
           (cols >= x[:, None, None]) & (cols < (x + s)[:, None, None])
    out[mask] = 1 if channels == 1 else 200
    return out


def write_npz(path: Path, sizes: tuple, channels: int, compressed: bool, color_column: bool) -> None:
    """An ``.npz`` with ``imgs``/``images`` written chunk by chunk (never the whole array in memory)."""
    n = int(np.prod(sizes))
    key = "imgs" if channels == 1 else "images"
    shape = (n, 64, 64) + ((channels,) if channels > 1 else ())
    mode = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=mode, compresslevel=1 if compressed else None) as zf:
        with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": shape})
            grid = itertools.product(*[range(s) for s in sizes])
            for start in range(0, n, CHUNK):
                classes = np.array(list(itertools.islice(grid, CHUNK)))
                fh.write(_images(classes, channels).tobytes())
        if color_column:
            classes = np.array(list(itertools.product(*[range(s) for s in sizes])))
            with zf.open("latents_classes.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.column_stack([np.zeros(n, np.int64), classes]))


def measure(name: str, folder: Path, seconds: float, pairs: int, **options) -> None:
    t0 = time.perf_counter()
    ds = load_factor_dataset(name, folder, **options)
    print(f"{ds.describe()}: loaded in {time.perf_counter() - t0:.1f} s "
          f"({'bit-packed cache' if ds.packed else 'memory-mapped in place'})")
    loader = PairLoader(ds, 2 * pairs, seed=0)
    for _ in range(20):  # warm the page cache and the allocator
        loader.next_batch()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        x, _ = loader.next_batch()
        n += len(x) // 2
    elapsed = time.perf_counter() - t0
    print(f"{name}: {n / elapsed:,.0f} pairs/s ({pairs} pairs per batch, images {tuple(x.shape[1:])}, "
          f"{torch.get_num_threads()} torch threads)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, required=True, help="where the files (and the cache) are written")
    ap.add_argument("--datasets", default="dsprites,mpi3d")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--pairs", type=int, default=32, help="pairs per batch (clica kitti: --batch-size / 2)")
    ap.add_argument("--mpi3d-sizes", default="6,6,2,3,3,20,20", help="the MPI3D grid cut written")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.datasets.split(","):
        folder = args.folder / name
        folder.mkdir(parents=True, exist_ok=True)
        if name == "dsprites":
            path = folder / SPECS["dsprites"].files[0]
            if not path.exists():
                write_npz(path, SPECS["dsprites"].factor_sizes, 1, compressed=True, color_column=True)
            measure(name, folder, args.seconds, args.pairs)
        elif name == "mpi3d":
            sizes = tuple(int(s) for s in args.mpi3d_sizes.split(","))
            path = folder / "mpi3d_toy.npz"
            if not path.exists():
                write_npz(path, sizes, 3, compressed=False, color_column=False)
            measure(name, folder, args.seconds, args.pairs, sizes=sizes)
        else:
            raise SystemExit(f"unknown dataset {name!r}: dsprites or mpi3d")


if __name__ == "__main__":
    main()
