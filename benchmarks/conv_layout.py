"""Training-step time of the image encoders on the CPU, default (NCHW) layout against the
channels-last layout that ``clica.models.to_device`` uses there.

One step is forward, backward and an Adam step on random inputs. The two layouts
alternate step by step in one process, so background load hits both alike; the
figure is the median over ``--reps`` steps of each after two warm-up steps.

    python benchmarks/conv_layout.py                # all models, 2 threads
    python benchmarks/conv_layout.py --models rn18-64 --reps 20 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from clica.models import to_device
from clica.models.conv import ConvEncoderNet, ConvVAE
from clica.models.resnet import resnet_encoder

# name → (model factory, input shape, what the step's loss reads from the output)
MODELS = {
    "rn18-64": (lambda: resnet_encoder("rn18", 10), (128, 3, 64, 64), lambda out: out),  # 64 pairs at 64 px
    "rn18-224": (lambda: resnet_encoder("rn18", 10), (16, 3, 224, 224), lambda out: out),  # 8 pairs, release size
    "kitti-encoder": (lambda: ConvEncoderNet(10, nc=1), (64, 1, 64, 64), lambda out: out),
    "slowvae": (lambda: ConvVAE(10, nc=1), (64, 1, 64, 64), lambda out: out[0]),
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.reps} steps")
    print(f"{'model':14s} {'input':18s} {'NCHW s/step':>12s} {'channels-last':>14s} {'speed-up':>9s}")
    for name in args.models:
        factory, shape, read = MODELS[name]
        torch.manual_seed(0)
        x = torch.randn(shape)
        arms = {}
        for layout in ("nchw", "channels_last"):
            torch.manual_seed(0)
            net = factory() if layout == "nchw" else to_device(factory(), "cpu")
            arms[layout] = (net, torch.optim.Adam(net.parameters(), 1e-3), [])

        def step(layout):
            net, opt, times = arms[layout]
            t = time.perf_counter()
            loss = read(net(x)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)

        for _ in range(2):
            for layout in arms:
                step(layout)
        for layout in arms:
            arms[layout][2].clear()
        for _ in range(args.reps):
            for layout in arms:
                step(layout)
        a, b = (statistics.median(arms[k][2]) for k in ("nchw", "channels_last"))
        print(f"{name:14s} {'x'.join(map(str, shape)):18s} {a:12.4f} {b:14.4f} {a / b:8.2f}×")


if __name__ == "__main__":
    main()
