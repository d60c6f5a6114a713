"""The mixing g: a random invertible MLP (Hyvärinen-style, as in the original code).

Weights are square, column-normalised uniform matrices whose condition number
is at most a threshold: the ``cond_thresh_ratio`` quantile of a pool of
``n_iter_cond_thresh`` random matrices. The pool and the candidate search are
computed as batched tensors from one seed. Activations are invertible
(LeakyReLU with slope 0.2 by default), so g is injective.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import ClicaError

__all__ = ["ACTIVATIONS", "SmoothLeakyReLU", "check_mixing", "invertible_mlp", "random_well_conditioned"]


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


def random_well_conditioned(n: int, n_matrices: int, threshold: float, generator,
                            chunk: int = 4096) -> torch.Tensor:
    """``n_matrices`` column-normalised uniform n×n matrices with condition number ≤ ``threshold``."""
    found: list[torch.Tensor] = []
    while len(found) < n_matrices:
        cand = _column_normalised((chunk, n, n), generator)
        ok = torch.linalg.cond(cand) <= threshold
        found.extend(cand[ok][: n_matrices - len(found)])
    return torch.stack(found)


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
                   seed: int | None = None, generator: torch.Generator | None = None) -> nn.Sequential:
    """A frozen random invertible MLP R^n → R^n with ``n_layers`` linear layers."""
    check_mixing(n_layers, act_fct)
    if not 0.0 <= cond_thresh_ratio < 1.0:
        raise ClicaError(f"cond_thresh_ratio must be in [0, 1), got {cond_thresh_ratio}")
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    pool = torch.linalg.cond(_column_normalised((n_iter_cond_thresh, n, n), generator))
    threshold = pool.sort().values[int(n_iter_cond_thresh * cond_thresh_ratio)].item()
    weights = random_well_conditioned(n, n_layers, threshold, generator)
    layers: list[nn.Module] = []
    for i, w in enumerate(weights):
        lin = nn.Linear(n, n, bias=False)
        lin.weight.data = w.float()
        layers.append(lin)
        if i < n_layers - 1:
            layers.append(ACTIVATIONS[act_fct]())
    g = nn.Sequential(*layers)
    g.condition_threshold = threshold
    for p in g.parameters():
        p.requires_grad_(False)
    return g
