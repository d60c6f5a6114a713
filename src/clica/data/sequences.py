"""Positive pairs from sequences (videos, time series): the one place that says what a pair is.

Frames of all sequences are stored one after another (sequence 0's frames, then
sequence 1's, ...). A pair is (frame t, frame t + k) of one sequence with k
uniform in 1..max_delta_t, clipped at that sequence's last frame; every frame
except the last of its sequence can start a pair (a sequence of one frame
starts none). Used by :class:`clica.data.kitti_masks.KittiMasks` and
:class:`clica.ContrastiveICA`, which also share :class:`EpochSampler`, the order
the pairs are drawn in.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["EpochSampler", "SequencePairs"]


class SequencePairs:
    """Pair starts and their sequence ends for sequences of the given ``lengths``.

    Attributes: ``starts`` (int64 tensor) the global index of every frame that
    can start a pair; ``seq_last`` the global index of that frame's sequence's
    last frame; ``lengths`` the sequence lengths. ``len(pairs)`` is the number
    of pair starts.
    """

    def __init__(self, lengths: Sequence[int] | np.ndarray, max_delta_t: int = 1):
        lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if max_delta_t < 1:
            raise ValueError(f"max_delta_t must be at least 1, got {max_delta_t}")
        if (lengths < 0).any():
            raise ValueError("sequence lengths must be ≥ 0")
        self.max_delta_t = int(max_delta_t)
        self.lengths = lengths
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        seq_of_frame = np.repeat(np.arange(len(lengths)), lengths)
        last = offsets[1:] - 1
        is_start = np.ones(len(seq_of_frame), dtype=bool)
        is_start[last[lengths > 0]] = False
        self.starts = torch.from_numpy(np.nonzero(is_start)[0])
        self.seq_last = torch.from_numpy(last[seq_of_frame[is_start]])

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def n_frames(self) -> int:
        return int(self.lengths.sum())

    def pair_indices(self, idx: torch.Tensor, generator: torch.Generator | None = None):
        """Global frame indices (first, second) of the pairs starting at pair indices ``idx``."""
        first = self.starts[idx]
        k = torch.randint(1, self.max_delta_t + 1, (len(idx),), generator=generator)
        second = torch.minimum(first + k, self.seq_last[idx])
        return first, second


class EpochSampler:
    """Batches of ``batch`` indices of 0 … n-1, each epoch in a fresh random order from ``generator``
    (drawn when the first batch is asked for); the last incomplete batch of an epoch is dropped.

    ``state_dict()`` (the epoch's permutation and position; the generator is the caller's to save)
    resumes the order exactly.
    """

    def __init__(self, n: int, batch: int, generator: torch.Generator):
        self.n, self.batch, self.generator = n, batch, generator
        self.perm: torch.Tensor | None = None
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.perm is None or self.pos + self.batch > len(self.perm):
            self.perm, self.pos = torch.randperm(self.n, generator=self.generator), 0
        idx = self.perm[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return idx

    def state_dict(self) -> dict:
        return {"perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved state; a ValueError when it is not an order of these ``n`` pair starts."""
        perm, pos = state["perm"], int(state["pos"])
        if perm is not None:
            n = self.n
            if not (torch.is_tensor(perm) and perm.dtype == torch.int64 and perm.dim() == 1 and len(perm) == n
                    and torch.equal(perm.sort().values, torch.arange(n, device=perm.device))):
                raise ValueError(f"its permutation is not one of the {n} pair starts of this data")
            if not 0 <= pos <= n:
                raise ValueError(f"position {pos} outside the permutation")
        self.perm, self.pos = perm, pos
