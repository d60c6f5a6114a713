"""Which encoder a grid row's batch loss prefers: the true latents, or a rotation or compression of them.

Evaluates the row's InfoNCE loss (its τ, self weight and batch size: `clica table mlp --list`) on
oracle encoders, functions of the true latents z:
- identity: h = a·z, what the theory says the loss is minimised by (up to permutation and sign);
- rotations: h = a·zR, R a small (entries about 0.05 or 0.2) or a random rotation;
- compressions: h = a·z / (1 + |z|/c) per coordinate, the tails pulled in (c = 16, 8, 4).

The encoder chooses its own output scale, so each oracle is scored by its lowest loss over a grid
of scales a, and the table gives its excess over the identity's. A positive excess is the push
training gets towards the identity; a negative one means the batch loss prefers that oracle
over the true latents, which no amount of training at these settings undoes. An L2 row shows
no excess for rotations (its loss is rotation-invariant), which checks the method. "no
information" (positives swapped between anchors) shows how much the true latents gain at all.
Dot-product (sphere) rows have no free scale and are rotation-invariant: they show the identity,
a random rotation (the check) and "no information".

    python benchmarks/mlp_oracle_loss.py box-laplace-l1 box-gennorm-l3 real-laplace-l1
    python benchmarks/mlp_oracle_loss.py real-laplace-l1 --batch-size 4096
    python benchmarks/mlp_oracle_loss.py sphere-vmf1 sphere-vmf10
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from clica import metrics
from clica.errors import ClicaError
from clica.experiments.mlp import MLPConfig
from clica.experiments.table import select_rows

COMPRESSIONS = (16, 8, 4)
SCALES = tuple(float(a) for a in np.geomspace(0.1, 1.6, 49).round(3))


def rotation(n: int, angle: float | None, seed: int) -> torch.Tensor:
    """exp(A), A a random skew-symmetric matrix with entries of size about ``angle``.

    ``angle`` None: a random orthogonal matrix.
    """
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    if angle is None:
        return torch.linalg.qr(a).Q.float()
    return torch.matrix_exp((a - a.T) * angle / 2 ** 0.5).float()


def oracles(n: int, compressions) -> dict:
    """name → function of the true latents: the identity, rotations, and one compression per c."""
    out = {"identity": lambda z: z}
    for name, angle in (("rotation 0.05", 0.05), ("rotation 0.2", 0.2), ("random rotation", None)):
        out[name] = lambda z, r=rotation(n, angle, 1): z @ r
    for c in compressions:
        out[f"compression c={c:g}"] = lambda z, c=c: z / (1 + z.abs() / c)
    return out


def best_losses(cfg: MLPConfig, scales, compressions, batches: int, seed: int) -> dict:
    """{oracle: (its lowest mean loss over ``scales``, the scale, its MCC)} on ``batches`` fresh batches.

    "no information" is the identity with each positive swapped for another anchor's: the loss of
    an encoder whose positives tell it nothing, the reference for how much the true latents gain.
    """
    space, loss = cfg.latent_space(), cfg.loss()
    gen = torch.Generator().manual_seed(seed)
    pairs = [space.sample_pair(cfg.batch_size, gen, "cpu") for _ in range(batches)]
    shuffled = [(z, zt[torch.randperm(len(zt), generator=gen)]) for z, zt in pairs]
    # rotate and compress about the marginal's centre; the sphere's latents stay on it
    centre = 0.0 if cfg.p == 0 else sum(z.mean(0) for z, _ in pairs) / batches
    z_all = torch.cat([z for z, _ in pairs]) - centre
    out = {}
    with torch.no_grad():
        for name, f, data in [*((k, f, pairs) for k, f in oracles(cfg.n, compressions).items()),
                              ("no information", lambda z: z, shuffled)]:
            means = [sum(loss(a * f(z - centre), a * f(zt - centre)).total.item() for z, zt in data) / batches
                     for a in scales]
            i = int(np.argmin(means))
            mcc = metrics.mcc(z_all, f(z_all)).score if data is pairs else float("nan")
            out[name] = (means[i], scales[i], mcc)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rows", nargs="+", help="names of rows of clica table mlp")
    ap.add_argument("--scales", type=float, nargs="+", default=SCALES, help="output scales a to search")
    ap.add_argument("--compressions", type=float, nargs="+", default=COMPRESSIONS, help="compression oracles' c")
    ap.add_argument("--self-weight", type=float, default=None, help="override the rows' self weight")
    ap.add_argument("--batch-size", type=int, default=None, help="override the rows' batch size")
    ap.add_argument("--pairs", type=int, default=20480, help="latent pairs to average over (whole batches, at least "
                                                             "one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:  # an unknown row or a bad override: one line, exit status 1
        configs = []
        for row in select_rows("mlp", ",".join(args.rows)):
            settings = row.config()
            for key in ("self_weight", "batch_size"):
                if getattr(args, key) is not None:
                    settings[key] = getattr(args, key)
            cfg = MLPConfig(**settings, device="cpu")
            cfg.validate()
            configs.append((row, cfg))
    except ClicaError as exc:
        raise SystemExit(f"mlp_oracle_loss.py: error: {exc}") from None
    for row, cfg in configs:
        # the dot-product rows' encoders output onto the sphere: no free scale, and no compression on it
        scales, compressions = ((1.0,), ()) if cfg.p == 0 else (args.scales, args.compressions)
        best = best_losses(cfg, scales, compressions, max(1, args.pairs // cfg.batch_size), args.seed)
        ident = best["identity"][0]
        loss_name = "dot product" if cfg.p == 0 else f"L{cfg.p:g}"
        print(f"\n{row.name}: {loss_name}, tau {cfg.tau:g}, self weight {cfg.self_weight:g}, batch {cfg.batch_size}")
        print(f"{'oracle':<20} {'MCC':>6} {'lowest loss':>11} {'at scale':>8}  excess over the identity")
        for name, (value, a, mcc) in best.items():
            shown = "—" if math.isnan(mcc) else f"{mcc:.4f}"
            print(f"{name:<20} {shown:>6} {value:11.5f} {a:8.3f}  {(value - ident) / ident:+8.2%}")


if __name__ == "__main__":
    main()
