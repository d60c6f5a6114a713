"""Score a finished `clica mlp` run near the origin and in the tails of its latent marginal.

Draws fresh latents from the run's marginal, encodes them with the run's trained encoder
(`unsupervised_f.pt`) and prints linear R² and MCC on all of them and on the share nearest the
origin (by max |z_i|). An encoder that is identified in the bulk but not in the tails shows
rising scores as the share shrinks (docs/mlp.md: the unbounded Laplace row).

Then, per band of max |z_i|, two diagnostics of why:
- slope: the linear map fitted on the nearest half, applied to the band, regressed on the true
  latents (1: the band is recovered on the bulk's scale; below 1: compressed towards the origin);
- force: the mean share of an anchor's InfoNCE softmax (logits -|h - h̃'|_p^p / τ over a batch
  of the run's size) off its positive; Lp rows only. The loss's gradient on an anchor scales
  with it: where it is small, the anchor barely trains.

    python benchmarks/mlp_scores_by_radius.py runs/real-laplace-l1 --samples 50000
"""

from __future__ import annotations

import argparse

import torch

from clica.errors import ClicaError
from clica.experiments.mlp import MLPConfig, build_encoder, build_mixing, scores
from clica.losses import pairwise_lp
from clica.runs import RunDir, load_module_state, load_torch_file


def band_slopes(z: torch.Tensor, h: torch.Tensor, radius: torch.Tensor, edges) -> list[float]:
    """Per band of ``radius``: slope of the nearest half's linear fit of z from h, against the true z."""
    bulk = radius <= radius.median()
    x = torch.cat([h, torch.ones(len(h), 1)], 1).double()
    fit = torch.linalg.lstsq(x[bulk], z[bulk].double()).solution
    z_hat = x @ fit
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (radius > lo) & (radius <= hi)
        out.append(float((z_hat[m] * z[m]).sum() / z[m].double().pow(2).sum()) if m.any() else float("nan"))
    return out


def negatives_share(cfg: MLPConfig, f, g, batches: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each anchor's softmax share off its positive, over ``batches`` fresh batches, with its max |z_i|."""
    space, shares, radii = cfg.latent_space(), [], []
    for i in range(batches):
        z, z_pos = space.sample_pair(cfg.batch_size, torch.Generator().manual_seed(seed + i))
        logits = -pairwise_lp(f(g(z)), f(g(z_pos)), cfg.p, pow=True) / cfg.tau
        shares.append(1 - logits.softmax(1).diagonal())
        radii.append(z.abs().amax(1))
    return torch.cat(shares), torch.cat(radii)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", help="a finished clica mlp run folder (config.json, unsupervised_f.pt)")
    ap.add_argument("--samples", type=int, default=50000)
    ap.add_argument("--shares", type=float, nargs="+", default=[1.0, 0.99, 0.9, 0.5],
                    help="shares of the samples nearest the origin to score")
    ap.add_argument("--seed", type=int, default=12345, help="seed of the fresh latents")
    args = ap.parse_args()

    run = RunDir(args.run_dir)
    cfg = MLPConfig.from_dict(run.read_config())
    path = run.file("unsupervised_f.pt")
    f = build_encoder(cfg, 1, "cpu")
    load_module_state(f, load_torch_file(path)["encoder"], path, "the unsupervised encoder")
    f.eval()
    g = build_mixing(cfg)
    z = cfg.latent_space().sample_marginal(args.samples, torch.Generator().manual_seed(args.seed), "cpu")
    with torch.no_grad():
        h = f(g(z))
        if cfg.p > 0:  # the force is for Lp rows; the dot-product rows print none
            share, share_radius = negatives_share(cfg, f, g, max(1, args.samples // cfg.batch_size), args.seed + 1)
        else:
            share, share_radius = torch.zeros(0), torch.zeros(0)
    radius = z.abs().amax(dim=1)
    print("share  max|z_i| ≤  linear R²  MCC")
    bounds = []
    for share_of_samples in args.shares:
        bound = float(torch.quantile(radius, share_of_samples))
        bounds.append(bound)
        keep = radius <= bound
        s = scores(z[keep], h[keep])
        print(f"{share_of_samples:5.2f}  {bound:10.2f}  {s['linear_r2']:9.4f}  {s['mcc']:.4f}")
    edges = [0.0, *sorted(b for b in bounds if b < float(radius.max())), float("inf")]
    print("\nband of max|z_i|  slope  force")
    for (lo, hi), slope in zip(zip(edges[:-1], edges[1:]), band_slopes(z, h, radius, edges)):
        m = (share_radius > lo) & (share_radius <= hi)
        force = f"{float(share[m].mean()):.5f}" if m.any() else "  —"
        print(f"({lo:5.2f}, {hi:5.2f}]  {slope:5.3f}  {force}")


if __name__ == "__main__":
    try:
        main()
    except ClicaError as exc:  # a folder that is not a finished run: one line, exit status 1
        raise SystemExit(f"mlp_scores_by_radius.py: error: {exc}") from None
