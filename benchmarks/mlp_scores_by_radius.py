"""Score a finished `clica mlp` run near the origin and in the tails of its latent marginal.

Draws fresh latents from the run's marginal, encodes them with the run's trained encoder
(`unsupervised_f.pt`) and prints linear R² and MCC on all of them and on the share nearest the
origin (by max |z_i|). An encoder that is identified in the bulk but not in the tails shows
rising scores as the share shrinks (docs/mlp.md: the unbounded Laplace row).

    python benchmarks/mlp_scores_by_radius.py runs/real-laplace-l1 --samples 50000
"""

from __future__ import annotations

import argparse

import torch

from clica.errors import ClicaError
from clica.experiments.mlp import MLPConfig, build_encoder, build_mixing, scores
from clica.runs import RunDir, load_module_state, load_torch_file


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
    z = cfg.latent_space().sample_marginal(args.samples, torch.Generator().manual_seed(args.seed), "cpu")
    with torch.no_grad():
        h = f(build_mixing(cfg)(z))
    radius = z.abs().amax(dim=1)
    print("share  max|z_i| ≤  linear R²  MCC")
    for share in args.shares:
        bound = torch.quantile(radius, share)
        keep = radius <= bound
        s = scores(z[keep], h[keep])
        print(f"{share:5.2f}  {bound:10.2f}  {s['linear_r2']:9.4f}  {s['mcc']:.4f}")


if __name__ == "__main__":
    try:
        main()
    except ClicaError as exc:  # a folder that is not a finished run: one line, exit status 1
        raise SystemExit(f"mlp_scores_by_radius.py: error: {exc}") from None
