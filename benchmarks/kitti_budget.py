"""MCC against training budget on synthetic KITTI Masks, for the contrastive model and SlowVAE.

Trains each (model, lr, augmentation, seed) with the library parts that
`clica kitti` uses and prints MCC (10,000 frames, Spearman, the original's
protocol) every --eval-every steps, with the wall time and process CPU time
spent training so far. Example (the README's figure, one CPU thread)::

    python benchmarks/kitti_budget.py --data /tmp/kitti_syn.pickle --steps 2000 \
        --eval-every 500 --seeds 0 1 2 --threads 1

The data file is made first if missing (`clica data kitti-masks --seed 0`).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from clica.data.kitti_masks import KittiMasks, PairLoader, generate_synthetic, write_kitti_pickle
from clica.experiments.kitti import build_model, evaluate_mcc
from clica.losses import LpInfoNCE
from clica.models import to_device
from clica.runs import seed_everything
from clica.slowvae import SlowVAELoss


def train(ds, model, lr, augment, seed, steps, eval_every, device, batch_size, p, box_norm, n_eval, log):
    args = argparse.Namespace(model=model, z_dim=10, box_norm=box_norm)
    seed_everything(seed)
    net = to_device(build_model(args), device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = SlowVAELoss(1.0, 10.0, 6.0) if model == "slowvae" else LpInfoNCE(p=p)
    loader = PairLoader(ds, batch_size, augment=augment, seed=seed, device=device)
    curve = []
    wall = cpu = 0.0
    for i in range(1, steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        x, _ = loader.next_batch()
        if model == "slowvae":
            out = loss_fn(x, *net(x))
        else:
            h = net(x)
            out = loss_fn(h[0::2], h[1::2])
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        if i % 100 == 0:
            print(f"  step {i}: loss {out.total.item():.4f}, train wall {wall:.0f} s, cpu {cpu:.0f} s", flush=True)
        if i % eval_every == 0 or i == steps:
            m = evaluate_mcc(net, ds, device, n_eval, "spearman", seed=0)
            rec = {"model": model, "lr": lr, "augment": augment, "seed": seed, "step": i,
                   "mcc": round(m["mcc"], 4), "per_factor": {k: round(v, 3) for k, v in m["per_factor"].items()},
                   "train_wall_s": round(wall, 1), "train_cpu_s": round(cpu, 1), "loss": round(out.total.item(), 4)}
            curve.append(rec)
            log(json.dumps(rec))
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/tmp/kitti_syn.pickle")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--models", nargs="+", default=["contrastive", "slowvae"])
    ap.add_argument("--lrs", nargs="+", type=float, default=[1e-3])
    ap.add_argument("--augment", nargs="+", type=int, default=[1])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--p", type=float, default=1.0)
    ap.add_argument("--box-norm", type=int, default=1)
    ap.add_argument("--n-eval", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="also write all records as JSON lines here")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if not os.path.exists(a.data):
        write_kitti_pickle(a.data, generate_synthetic(a.data_seed))
    device = torch.device(a.device)
    ds = KittiMasks.from_file(a.data, max_delta_t=1)
    print(f"data {a.data}: {ds.n_sequences} sequences, {ds.n_frames} frames; device {device}, "
          f"threads {torch.get_num_threads()}", flush=True)
    fh = open(a.out, "a") if a.out else None

    def log(line):
        print(line, flush=True)
        if fh:
            fh.write(line + "\n")
            fh.flush()

    final = {}
    for model in a.models:
        for lr in a.lrs:
            for aug in a.augment:
                for seed in a.seeds:
                    c = train(ds, model, lr, bool(aug), seed, a.steps, a.eval_every, device, a.batch_size,
                              a.p, a.box_norm, a.n_eval, log)
                    final.setdefault((model, lr, aug), []).append(c[-1])
    print("\nfinal MCC (mean ± std over seeds):")
    for (model, lr, aug), recs in final.items():
        s = np.array([r["mcc"] for r in recs])
        print(f"  {model:11s} lr {lr:g} augment {aug}: {s.mean():.4f} ± {s.std():.4f}  "
              f"per seed {[float(x) for x in s]}  steps {a.steps}, "
              f"train wall {np.mean([r['train_wall_s'] for r in recs]):.0f} s, "
              f"cpu {np.mean([r['train_cpu_s'] for r in recs]):.0f} s per seed")


if __name__ == "__main__":
    main()
