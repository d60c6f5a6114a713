"""KITTI Masks training throughput: clica's batched pair loader vs a per-sample loader like the original's.

The per-sample baseline does what the original code did per item: numpy frames
stacked into an RGB-like image, torchvision PIL transforms (RandomAffine with
2° and ±5/64 translation, RandomHorizontalFlip, ToTensor) per pair, a custom
collate, a torch DataLoader with ``--workers`` processes. clica's loader
gathers a whole batch from one packed tensor and augments it with one
``grid_sample`` call.

For each loader it prints batches/s of the loader alone and training steps/s
(conv encoder + Lp InfoNCE + Adam) at ``--batch-size`` images (half as many
pairs). Example::

    python benchmarks/kitti_throughput.py --seconds 20          # default data: 800 synthetic sequences
    python benchmarks/kitti_throughput.py --seconds 3 --sequences 60   # a quick check
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from clica.data.kitti_masks import (
    KittiMasks,
    PairLoader,
    Prefetcher,
    SyntheticConfig,
    generate_synthetic,
    load_kitti_pickle,
)
from clica.losses import LpInfoNCE
from clica.models import norm_layer
from clica.models.conv import ConvEncoderNet


class PerSamplePairs(Dataset):
    """One pair per __getitem__, augmented with PIL transforms (the original's way of loading)."""

    def __init__(self, masks, latents, max_delta_t=1, augment=True):
        self.masks, self.latents, self.max_delta_t = masks, latents, max_delta_t
        self.cum = np.cumsum([len(m) - 1 for m in masks])
        self.tf = transforms.Compose([
            transforms.RandomAffine(degrees=(2.0, 2.0), translate=(5 / 64.0, 5 / 64.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
        ]) if augment else None

    def __len__(self):
        return int(self.cum[-1])

    def __getitem__(self, i):
        s = int(np.searchsorted(self.cum, i, side="right"))
        t = i - (self.cum[s - 1] if s else 0)
        u = min(t + np.random.randint(1, self.max_delta_t + 1), len(self.masks[s]) - 1)
        a = self.masks[s][t].astype(np.uint8) * 255
        b = self.masks[s][u].astype(np.uint8) * 255
        if self.tf is not None:
            rgb = np.stack([a, b, np.full_like(a, 255)], axis=2)
            out = self.tf(Image.fromarray(rgb)).numpy()
            a, b = out[0:1], out[1:2]
        else:
            a, b = a[None].astype(np.float32) / 255, b[None].astype(np.float32) / 255
        return a, b, self.latents[s][t], self.latents[s][u]


def collate_pairs(items):
    xs, zs = [], []
    for a, b, za, zb in items:
        xs += [a, b]
        zs += [za, zb]
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(zs))


def _forever(loader):
    while True:
        yield from loader


def measure(next_batch, seconds, train=None, warmup=2):
    for _ in range(warmup):
        x, _ = next_batch()
        if train:
            train(x)
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        x, _ = next_batch()
        if train:
            train(x)
        n += 1
    wall = time.perf_counter() - t0
    return n / wall, (time.process_time() - c0) / max(n, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="a KITTI Masks pickle (default: synthetic, made in memory)")
    ap.add_argument("--sequences", type=int, default=800, help="synthetic sequences when --data is not given")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring time per setting")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers for the baseline")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.data:
        masks, latents = load_kitti_pickle(a.data)
    else:
        d = generate_synthetic(0, SyntheticConfig(n_sequences=a.sequences))
        masks, latents = d["pedestrians"], d["pedestrians_latents"]
    print(f"{len(masks)} sequences, {sum(map(len, masks))} frames; batch {a.batch_size} images; "
          f"torch threads {torch.get_num_threads()}; {os.cpu_count()} CPUs", flush=True)

    torch.manual_seed(0)
    net = ConvEncoderNet(10, 1, norm_layer("learnable_box", 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss = LpInfoNCE(p=1.0)

    def train(x):
        h = net(x)
        out = loss(h[0::2], h[1::2])
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        opt.step()

    rows = []
    ds = KittiMasks(masks, latents, max_delta_t=1)
    batched = PairLoader(ds, a.batch_size, augment=True, seed=0)
    rows.append(("clica batched loader", *measure(batched.next_batch, a.seconds),
                 *measure(batched.next_batch, a.seconds, train)))
    pre = Prefetcher(PairLoader(ds, a.batch_size, augment=True, seed=0), depth=2)
    rows.append(("clica batched + prefetch thread", *measure(pre.next_batch, a.seconds),
                 *measure(pre.next_batch, a.seconds, train)))
    pre.close()
    for w in a.workers:
        dl = DataLoader(PerSamplePairs(masks, latents), batch_size=a.batch_size // 2, shuffle=True,
                        num_workers=w, drop_last=True, collate_fn=collate_pairs, persistent_workers=w > 0)
        next_batch = _forever(dl).__next__
        rows.append((f"per-sample PIL loader, {w} workers", *measure(next_batch, a.seconds),
                     *measure(next_batch, a.seconds, train)))
        del next_batch, dl
    print(f"\n{'loader':36s} {'batches/s':>10s} {'cpu ms/batch':>13s} {'train steps/s':>14s} {'cpu ms/step':>12s}")
    for name, lb, lc, tb, tc in rows:
        print(f"{name:36s} {lb:10.1f} {lc * 1e3:13.1f} {tb:14.2f} {tc * 1e3:12.1f}")
    print("(cpu ms counts this process only; DataLoader workers' time is not included)")


if __name__ == "__main__":
    main()
