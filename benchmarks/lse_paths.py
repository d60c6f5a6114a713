"""Forward + backward time of the InfoNCE negative term on the CPU: the fused numba kernels against
the chunked torch path (cdist), per batch shape, on 1 and on all torch threads.

    python benchmarks/lse_paths.py

Prints a Markdown table of medians over 30 repetitions (n = 10, float32) for the L1, L2 and L3
losses (p = 1, 2, 3, each as a p-th power); it is what sets where clica.losses uses the kernels.
"""

from __future__ import annotations

import time

import torch

import clica.losses as L

SHAPES = [(64, 64), (128, 128), (256, 256), (256, 512), (512, 512), (512, 1024), (1024, 1024)]


def median_ms(a, b, p: float, kernels: bool, reps: int = 30) -> float:
    use = L._use_kernels
    L._use_kernels = lambda *args: kernels
    try:
        times = []
        for _ in range(reps + 3):
            t = time.perf_counter()
            L.negative_logsumexp(a, b, p, True, 0.2, exclude_diagonal=True).sum().backward()
            times.append(time.perf_counter() - t)
    finally:
        L._use_kernels = use
    return sorted(times[3:])[reps // 2] * 1000


def main() -> None:
    print("| p | threads | rows × columns | torch (ms) | kernels (ms) | ratio |\n|---|---|---|---|---|---|")
    for p in (1.0, 2.0, 3.0):
        for threads in sorted({1, torch.get_num_threads()}):
            torch.set_num_threads(threads)
            for m, n in SHAPES:
                a, b = torch.randn(m, 10, requires_grad=True), torch.randn(n, 10, requires_grad=True)
                t, k = median_ms(a, b, p, False), median_ms(a, b, p, True)
                print(f"| {p:g} | {threads} | {m} × {n} | {t:.2f} | {k:.2f} | {t / k:.1f}× |", flush=True)


if __name__ == "__main__":
    main()
