"""3DIdent data pipeline throughput: pairs per second (sampling + matching + loading + normalising).

Compares, on the same folder and latent space (non-periodic box, normal conditional):

* ``batched+cache``: clica's pipeline, one faiss search per batch, images gathered
  from the memory-mapped uint8 cache and normalised in one fused op;
* ``batched+png``:   the same with PNG decoding instead of the cache;
* components: sampling alone, sampling + exact kd-tree matching, sampling +
  faiss brute-force or approximate (IVF/HNSW) matching, gathering + normalising;
* ``per-item``:      the original's way: per item, sample (z, z~), two faiss
  searches, PIL decoding, ToTensor and Normalize (torchvision), then batch collation.

    python benchmarks/threedident_pipeline.py --data DIR64 [--data DIR224] --seconds 10 --threads 1

Prints one line per setting and a table at the end. Builds the cache if missing.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch


def _time(fn, seconds: float, per_call: int) -> tuple[float, int, float]:
    """(pairs per wall second, pairs, pairs per CPU second of this process).

    On a shared machine the CPU-time rate is the better estimate of what one
    uncontended core does (with --threads 1)."""
    fn()  # warm up
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += per_call
    return n / (time.perf_counter() - t0), n, n / max(time.process_time() - c0, 1e-9)


def bench_folder(root: str, batch_size: int, seconds: float, per_item_seconds: float) -> list[dict]:
    import torchvision
    from torchvision import transforms

    from clica.data import threedident as td

    layout = td.latent_layout(non_periodic_rotation_and_color=True)
    space = td.latent_space_for(layout, "l2", 0.1)
    folder = td.ThreeDIdentFolder.open(root)
    h, w = folder.image_shape()
    t0 = time.perf_counter()
    td.build_image_cache(folder)
    cache_s = time.perf_counter() - t0
    rows = []

    def add(name, rate, n, cpu_rate, extra=""):
        rows.append({"folder": root, "size": f"{h}x{w}", "n_images": folder.n, "setting": name,
                     "pairs_per_s": rate, "pairs": n, "pairs_per_cpu_s": cpu_rate})
        print(f"{h}x{w} N={folder.n} {name:<18} {rate:9.0f} pairs/s wall {cpu_rate:9.0f} pairs/CPU-s "
              f"({n} pairs){extra}", flush=True)

    cached = td.ThreeDIdentPairs(root, space, layout, batch_size=batch_size, cache="auto", folder=folder)
    it = iter(cached)
    add("batched+cache", *_time(lambda: next(it), seconds, batch_size), f"  cache built/opened in {cache_s:.1f}s")

    # components of the cached pipeline
    g = torch.Generator().manual_seed(0)
    add("  sample only", *_time(lambda: space.sample_pair(batch_size, generator=g), seconds, batch_size))
    add("  sample+match", *_time(lambda: cached.sample_indices(batch_size, generator=g), seconds, batch_size),
        "  (exact kd-tree)")
    for name, kw in (("faiss flat", dict(backend="faiss")), ("faiss IVF/HNSW", dict(approximate=True))):
        t0 = time.perf_counter()
        m = td.LatentMatcher(cached.latents, **kw)
        build = time.perf_counter() - t0

        def sm(m=m):
            z, zt = space.sample_pair(batch_size, generator=g)
            m.match_pairs(z, zt)
        add(f"  s+m {name}", *_time(sm, seconds, batch_size), f"  (index built in {build:.1f}s)")
    idx = np.random.default_rng(0).integers(0, folder.n, 2 * batch_size)
    add("  load+normalise", *_time(lambda: cached.loader.load(idx), seconds, batch_size))
    add("  load uint8 only", *_time(lambda: cached.loader.load_uint8(idx), seconds, batch_size),
        "  (what a GPU run copies; it normalises on the device)")

    png = td.ThreeDIdentPairs(root, space, layout, batch_size=batch_size, cache="off", folder=folder)
    it2 = iter(png)
    add("batched+png", *_time(lambda: next(it2), seconds, batch_size))

    # the original: one item at a time
    transform = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize(mean=td.PUBLISHED_MEAN, std=td.PUBLISHED_STD)])
    loader = torchvision.datasets.folder.pil_loader
    index = td.LatentMatcher(cached.latents, backend="faiss").index  # the original's IndexFlatL2
    lat = cached.latents
    paths = [str(folder.image_path(i)) for i in range(folder.n)]

    def item():
        z = space.sample_marginal(1)
        zt = space.sample_conditional(z)
        _, iz = index.search(z.numpy(), 1)
        _, it_ = index.search(zt.numpy(), 2)
        iz = iz[0, 0]
        it_ = it_[0, 0] if it_[0, 0] != iz else it_[0, 1]
        return (lat[iz], lat[it_]), (transform(loader(paths[iz])), transform(loader(paths[it_])))

    collate = torch.utils.data.default_collate
    per_batch = 64
    add("per-item (orig.)", *_time(lambda: collate([item() for _ in range(per_batch)]), per_item_seconds, per_batch))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", action="append", required=True, help="3DIdent folder (repeatable: 64x64, 224x224)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--seconds", type=float, default=10.0, help="time per setting")
    p.add_argument("--per-item-seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1, help="torch and faiss threads")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)  # faiss shares torch's OpenMP runtime, so this sets its threads too
    rows = []
    for root in a.data:
        rows += bench_folder(root, a.batch_size, a.seconds, a.per_item_seconds)
    print(f"\n| size | images | setting | pairs/s (wall) | pairs per CPU-second |  (batch {a.batch_size}, "
          f"{a.threads} thread(s))")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['n_images']} | {r['setting'].strip()} | {r['pairs_per_s']:.0f} | "
              f"{r['pairs_per_cpu_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
