"""The mixing g: a random invertible MLP (Hyvärinen-style, as in the original code).

Weights are square, column-normalised uniform matrices whose condition number
is at most a threshold: the ``cond_thresh_ratio`` quantile of a pool of
``n_iter_cond_thresh`` random matrices. The pool and the candidate search are
computed as batched tensors from one seed. Activations are invertible
(LeakyReLU with slope 0.2 by default), so g is injective.

The original searched until enough candidates met the threshold. At ratio 0 (the
experiments': the best of 25,000) that wait has no bound: for an unlucky pool a
candidate beats it once in millions of draws (``clica mlp --n 4 --seed 1`` had
not started after 300 s). The search here stops after :func:`search_budget`
draws (a few seconds) and completes the layers with the best-conditioned matrices
it has seen, pool included; every seed that finishes within the budget gets the
original's matrices, bit for bit.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable

import torch
from torch import nn

from .errors import ClicaError

__all__ = ["ACTIVATIONS", "SmoothLeakyReLU", "check_mixing", "invertible_mlp", "random_well_conditioned",
           "search_budget"]

# draws × (n² + 40) the search may spend: a draw costs about n² + 40 units (4096 draws and their condition
# numbers took 5, 18, 54 and 208 µs each at n = 4, 10, 20, 40 on one core), so the budget is ~4 s of one
# core at any n; 250,000 draws at n = 10, which the README's seeds 0, 1, 2 need (127k, 213k, 122k)
SEARCH_COST = 35_000_000
SAY_AFTER_S = 1.0


class SmoothLeakyReLU(nn.Module):
    """alpha·x + (1 - alpha)·softplus(x): a smooth, strictly increasing LeakyReLU."""

    def __init__(self, alpha: float = 0.2):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return self.alpha * x + (1 - self.alpha) * nn.functional.softplus(x)


ACTIVATIONS = {
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "smooth_leaky_relu": lambda: SmoothLeakyReLU(0.2),
    "elu": lambda: nn.ELU(1.0),
    "softplus": lambda: nn.Softplus(1.0),
    "relu": nn.ReLU,
}


def _column_normalised(shape, generator) -> torch.Tensor:
    a = torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1
    return a / a.norm(dim=-2, keepdim=True)


def search_budget(n: int) -> int:
    """How many candidates the search draws at most for n×n matrices: :data:`SEARCH_COST` / (n² + 40)."""
    return SEARCH_COST // (n * n + 40)


def random_well_conditioned(n: int, n_matrices: int, threshold: float, generator, max_draws: int | None = None,
                            seen: tuple[torch.Tensor, torch.Tensor] | None = None,
                            chunk: int = 4096) -> tuple[torch.Tensor, int, int]:
    """(matrices, how many met the threshold, candidates drawn): ``n_matrices`` column-normalised uniform
    n×n matrices with condition number ≤ ``threshold``, in the order drawn, as the original's rejection
    search. After ``max_draws`` candidates the best-conditioned ones not taken complete the set, lowest
    first, among the candidates drawn and ``seen`` (matrices and condition numbers drawn before)."""
    found: list[torch.Tensor] = []
    best = seen or (torch.empty(0, n, n, dtype=torch.float64), torch.empty(0, dtype=torch.float64))
    drawn = 0
    while len(found) < n_matrices and (max_draws is None or drawn < max_draws):
        cand = _column_normalised((chunk, n, n), generator)
        cond = torch.linalg.cond(cand)
        ok = cond <= threshold
        found.extend(cand[ok][: n_matrices - len(found)])
        best = _lowest(torch.cat([best[0], cand[~ok]]), torch.cat([best[1], cond[~ok]]), n_matrices)
        drawn += chunk
    return torch.stack(found + list(best[0][: n_matrices - len(found)])), len(found), drawn


def _lowest(matrices: torch.Tensor, cond: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` matrices of lowest condition number, lowest first."""
    order = cond.argsort()[:k]
    return matrices[order], cond[order]


@contextmanager
def _said_after(seconds: float, message: str, say: Callable[[str], None] | None):
    """``say(message)`` once if the block is still running after ``seconds``."""
    timer = threading.Timer(seconds, say, [message]) if say else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer:
            timer.cancel()


def check_mixing(n_layers: int, act_fct: str) -> None:
    """One-line errors for a mixing that cannot be built or would not be invertible."""
    if act_fct == "max_out":
        raise ClicaError("--act-fct max_out is not supported: a max-out layer halves the width, so the "
                         "mixing would not be invertible; choose one of " + ", ".join(ACTIVATIONS))
    if act_fct not in ACTIVATIONS:
        raise ClicaError(f"unknown activation '{act_fct}' for the mixing; choose one of " + ", ".join(ACTIVATIONS))
    if act_fct == "relu" and n_layers > 1:
        raise ClicaError("--act-fct relu makes the mixing non-invertible (it zeroes negative values); "
                         "use leaky_relu, smooth_leaky_relu, elu or softplus")
    if n_layers < 1:
        raise ClicaError(f"the mixing needs at least one layer, got {n_layers}")


def invertible_mlp(n: int, n_layers: int = 3, act_fct: str = "leaky_relu",
                   cond_thresh_ratio: float = 0.25, n_iter_cond_thresh: int = 10000,
                   seed: int | None = None, generator: torch.Generator | None = None,
                   say: Callable[[str], None] | None = print) -> nn.Sequential:
    """A frozen random invertible MLP R^n → R^n with ``n_layers`` linear layers.

    It records ``condition_threshold``, its layers' ``condition_numbers`` and how many ``fallback_layers``
    the bounded search completed with the best matrices it found (see the module docstring); ``say``
    gets a line when building takes over a second and when layers fall back.
    """
    check_mixing(n_layers, act_fct)
    if not 0.0 <= cond_thresh_ratio < 1.0:
        raise ClicaError(f"cond_thresh_ratio must be in [0, 1), got {cond_thresh_ratio}")
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    budget = search_budget(n)
    bar = "the best" if cond_thresh_ratio == 0 else f"the {cond_thresh_ratio:g} quantile"
    with _said_after(SAY_AFTER_S, f"building the mixing g: searching random {n}×{n} matrices with a condition "
                     f"number as low as {bar} of {n_iter_cond_thresh:,} (the original's search; at most {budget:,} "
                     "more draws, a few seconds)", say):
        pool = _column_normalised((n_iter_cond_thresh, n, n), generator)
        pool_cond = torch.linalg.cond(pool)
        threshold = pool_cond.sort().values[int(n_iter_cond_thresh * cond_thresh_ratio)].item()
        weights, found, drawn = random_well_conditioned(n, n_layers, threshold, generator, budget,
                                                        seen=_lowest(pool, pool_cond, n_layers))
    conds = torch.linalg.cond(weights).tolist()
    if found < n_layers and say:
        say(f"note: {drawn:,} draws found {found} of the {n_layers} mixing matrices with condition number "
            f"≤ {threshold:.4g}; the last {n_layers - found} are the best others seen (condition numbers "
            f"{', '.join(f'{c:.4g}' for c in conds)}), so this seed's mixing is not the original's")
    g = _frozen_mlp(weights, act_fct)
    g.condition_threshold, g.condition_numbers, g.fallback_layers = threshold, conds, n_layers - found
    return g


def _frozen_mlp(weights: torch.Tensor, act_fct: str) -> nn.Sequential:
    """Linear layers with ``weights`` (float32, no bias), ``act_fct`` between them, no gradients."""
    layers: list[nn.Module] = []
    for i, w in enumerate(weights):
        lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
        lin.weight.data = w.float()
        layers.append(lin)
        if i < len(weights) - 1:
            layers.append(ACTIVATIONS[act_fct]())
    g = nn.Sequential(*layers)
    for p in g.parameters():
        p.requires_grad_(False)
    return g
