"""Seeds: their range, the seed a run uses, and seeding every generator with it."""

from __future__ import annotations

import os
import random

import numpy as np

from ..errors import ClicaError

# Seeds are whole numbers 0 … 2³² − 1 (NumPy's range; torch takes 64 bits, and derived stream seeds
# such as ``seed * 7919 + k`` must stay within them).
SEED_MAX = 2**32 - 1
EVALUATION_SEED = 0


def check_seed(seed: int | None, name: str = "--seed") -> None:
    """A one-line :class:`ClicaError` unless ``seed`` is ``None`` or a whole number in 0 … :data:`SEED_MAX`."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEED_MAX:
        raise ClicaError(f"{name} must be a whole number from 0 to {SEED_MAX}, got {seed}")


def resolve_seed(seed: int | None, evaluation: bool = False) -> int:
    """The seed to use: ``seed`` itself (checked by :func:`check_seed`); without one, :data:`EVALUATION_SEED`
    for a run that only evaluates (a measurement repeats: the same samples on every call) and a fresh
    random one for training (as the original drew one; it is recorded)."""
    if seed is None:
        return EVALUATION_SEED if evaluation else int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    check_seed(seed)
    return int(seed)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators with one seed."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
