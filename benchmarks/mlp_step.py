"""One MLP-mixing training step at the original's default batch (6144, n = 10, p = 1):
clica's step against a re-implementation of the original script's step, side by side.

The reference step does what the original ``main_mlp.py`` did: the Lp distances
of all pairs as a B×B×n broadcast difference reduced with ``torch.norm``, the
encoder called separately on each view, and the box rejection resampling
copied candidate by candidate. Each variant runs in its own process so that
its peak memory (max RSS) is its own.

    python benchmarks/mlp_step.py            # median of 5 steps after 1 warm-up step
    python benchmarks/mlp_step.py --steps 3 --batch-size 2048
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch


def reference_truncated(sampler, low, high, size, n, rej_mult):
    """The original's rejection resampling: full buffers, copied buffer by buffer."""
    result = torch.full((size, n), float("nan"))
    done = torch.zeros((size, n), dtype=torch.bool)
    while done.sum() < size * n:
        buf = sampler(size * rej_mult).view(rej_mult, size, n)
        ok = (buf >= low) & (buf <= high)
        for i in range(rej_mult):
            mask = ok[i] & ~done
            result[mask] = buf[i][mask]
            done[mask] = True
    return result


def reference_loss(h1, h2, h3, p=1.0, tau=1.0):
    neg = torch.norm(h1.unsqueeze(1) - h3.unsqueeze(0), p=p, dim=-1).pow(p)
    pos = torch.norm(h1 - h2, p=p, dim=-1).pow(p)
    lneg = torch.logsumexp(torch.cat((neg, pos.unsqueeze(1)), 1).neg() / tau, 1)
    return (pos / tau + lneg).mean()


def run_variant(variant: str, batch: int, steps: int, n: int = 10) -> dict:
    from clica.experiments.mlp import MLPConfig, build_encoder
    from clica.mixing import invertible_mlp

    cfg = MLPConfig(n=n, p=1, c_p=1, batch_size=batch, seed=0)
    g = invertible_mlp(n, 3, n_iter_cond_thresh=1000, seed=0)
    f = build_encoder(cfg, 0)
    opt = torch.optim.Adam(f.parameters(), lr=1e-4)
    latent = cfg.latent_space()
    gen = torch.Generator().manual_seed(0)

    if variant == "clica":
        loss_fn = cfg.loss()

        def step():
            z, zt = latent.sample_pair(batch, gen)
            with torch.no_grad():
                x = g(torch.cat([z, zt]))
            h = f(x)
            loss = loss_fn(h[:batch], h[batch:]).total
            opt.zero_grad()
            loss.backward()
            opt.step()
    else:
        lap = torch.distributions.Laplace(torch.zeros(n), 0.05)

        def step():
            z = torch.rand(batch, n)
            zt = reference_truncated(lambda s: lap.sample((s,)) + z.repeat(s // batch, 1), 0.0, 1.0, batch, n, 3)
            h1, h2 = f(g(z)), f(g(zt))
            loss = reference_loss(h1, h2, torch.roll(h1, 1, 0))
            opt.zero_grad()
            loss.backward()
            opt.step()

    step()  # warm-up (and numba compilation)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return {"variant": variant, "batch": batch, "threads": torch.get_num_threads(),
            "median_s": statistics.median(times), "times_s": times,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=6144)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--variant", choices=("clica", "original"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.batch_size, args.steps)))
        return
    results = {}
    for variant in ("clica", "original"):
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--batch-size", str(args.batch_size),
                              "--steps", str(args.steps)], capture_output=True, text=True, check=True)
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[variant]
        print(f"{variant:9s} batch {r['batch']}: median {r['median_s']:.3f} s/step "
              f"({r['threads']} threads), peak memory {r['peak_rss_mb']:.0f} MB", flush=True)
    ratio = results["original"]["median_s"] / results["clica"]["median_s"]
    print(f"speed-up: {ratio:.1f}x")


if __name__ == "__main__":
    main()
