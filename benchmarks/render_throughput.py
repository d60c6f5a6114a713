"""Throughput of `clica render images`: images per second, PNG writing included.

Writes latents for --n images into a temporary folder, renders them with
--workers processes at each --sizes, and prints one line per size (plus the
comparison with the original Blender/Cycles generator, ~43 s per image on this
CPU). Worker start-up and the GL set-up are included in the figure; latent
sampling is not. It also prints the CPU time spent per image (all processes)
and the rate that implies for --workers processes on otherwise idle cores —
the figure to compare when the machine is shared and the wall clock is not
the renderer's alone.

    python benchmarks/render_throughput.py                 # 2000 images at 224 and 64
    python benchmarks/render_throughput.py --n 200         # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time

BLENDER_SECONDS_PER_IMAGE = 43.0
BARS = {224: 50.0, 64: 200.0}


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        u = resource.getrusage(who)
        total += u.ru_utime + u.ru_stime
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="images per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 64])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--keep", type=str, default=None, help="render into this folder and keep it")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line too")
    args = parser.parse_args()

    from clica.render import LatentOptions, render_images, write_latents

    results = []
    for size in args.sizes:
        root = args.keep or tempfile.mkdtemp(prefix="clica-render-bench-")
        folder = os.path.join(root, f"size{size}")
        try:
            write_latents(folder, LatentOptions(n_points=args.n, seed=0), log=lambda *a: None)
            cpu0 = _cpu_seconds()
            t0 = time.perf_counter()
            r = render_images(folder, image_size=size, workers=args.workers, use_gpu=args.use_gpu,
                              progress=False)
            wall = time.perf_counter() - t0
            cpu = _cpu_seconds() - cpu0
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
        rate = r["rendered"] / wall
        bar = BARS.get(size)
        verdict = "" if bar is None else (f"  (bar {bar:.0f}/s: {'met' if rate >= bar else 'NOT met'})")
        print(f"{size}x{size}: {r['rendered']} images in {wall:.1f} s with {args.workers} worker(s) = "
              f"{rate:.1f} images/s, {1000 * wall / max(r['rendered'], 1):.1f} ms/image; "
              f"{rate * BLENDER_SECONDS_PER_IMAGE:,.0f}x Blender's {BLENDER_SECONDS_PER_IMAGE:.0f} s/image{verdict}",
              flush=True)
        cpu_ms = 1000 * cpu / max(r["rendered"], 1)
        idle_rate = args.workers * 1000 / cpu_ms if cpu_ms > 0 else float("inf")
        print(f"    CPU {cpu_ms:.1f} ms/image over all processes -> {idle_rate:.0f} images/s with "
              f"{args.workers} worker(s) on idle cores; load average now {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} CPUs; renderer {r['renderer'] or 'worker processes'}", flush=True)
        results.append({"size": size, "n": r["rendered"], "seconds": wall, "images_per_s": rate,
                        "cpu_ms_per_image": cpu_ms, "idle_images_per_s": idle_rate,
                        "workers": args.workers, "cpus": os.cpu_count()})
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
