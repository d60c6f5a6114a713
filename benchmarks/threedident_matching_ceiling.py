"""How well can the matched pairs of a 3DIdent folder identify the latents, with a perfect renderer?

Positives in 3DIdent are not drawn from p(z~ | z): z and z~ are snapped to their nearest
rendered latents, so with few renders the pairs are much farther apart than --sigma says.
This diagnostic replaces the images by a random invertible MLP of the matched latents
(like --dummy-mixing) and trains the fast MLP recipe of `clica mlp --preset fast`
(LayerNorm encoder, τ 0.2, self weight 0.01, lr 3e-3 cosine, batch 512). The R² it reaches
is a ceiling for image encoders trained on the same pairs (MCC is not expected to reach 1
with the l2 loss: the Normal conditional identifies the latents up to a rotation).

    python benchmarks/threedident_matching_ceiling.py --data data/3di64 --steps 5000
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from clica import metrics, mixing
from clica.data import threedident as td
from clica.experiments.mlp import PRESETS, MLPConfig, build_encoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="3DIdent folder with raw_latents.npy (10-column release)")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--sigma", type=float, default=0.1, help="scale of the Normal conditional (as --sigma)")
    ap.add_argument("--self-weight", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    bs = 512
    cfg = MLPConfig(n=10, p=2, seed=0, **{**PRESETS["fast"], "batch_size": bs, "n_steps": a.steps,
                                          "self_weight": a.self_weight})
    layout = td.latent_layout(non_periodic_rotation_and_color=True)
    pairs = td.ThreeDIdentPairs(a.data, td.latent_space_for(layout, "l2", a.sigma), layout, batch_size=bs,
                                images=False, seed=0)
    g = mixing.invertible_mlp(10, 3, "leaky_relu", cond_thresh_ratio=0.0, n_iter_cond_thresh=25000, seed=0)
    f = build_encoder(cfg, 0)
    opt = torch.optim.Adam(f.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.steps)
    loss_fn = cfg.loss()
    z_eval = torch.from_numpy(pairs.latents[pairs.sample_indices(4096, seed=12345)[0]])
    x_eval = g(z_eval)
    gaps, t0 = [], time.time()
    for i, ((z1, z2), _) in zip(range(1, a.steps + 1), pairs):
        gaps.append((z1 - z2).norm(dim=1).mean().item())
        with torch.no_grad():
            x = g(torch.cat([z1, z2]))
        h = f(x)
        loss = loss_fn(h[:bs], h[bs:]).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if i % 500 == 0 or i == a.steps:
            with torch.no_grad():
                h_eval = f(x_eval)
            print(json.dumps({"step": i, "time_s": round(time.time() - t0),
                              "r2": round(metrics.linear_r2(z_eval, h_eval), 4),
                              "mcc": round(metrics.mcc(z_eval, h_eval).score, 4),
                              "positive_distance": round(float(np.mean(gaps)), 3)}), flush=True)
    print(f"{pairs.folder.n} renders: matched positives {np.mean(gaps):.3f} apart "
          f"(σ·√10 = {a.sigma * 10 ** 0.5:.3f} without matching)")


if __name__ == "__main__":
    main()
