"""Nearest-neighbour matching of sampled latents to rendered ones (exact kd-tree, faiss brute force or
faiss's approximate IVF/HNSW index)."""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np
import torch

from ...errors import ClicaError
from ...extras import need


@contextmanager
def faiss_threads(n: int):
    """Run faiss calls with ``n`` OpenMP threads, then give torch its own count back.

    faiss and torch share one OpenMP runtime, so a global
    ``faiss.omp_set_num_threads`` also sets torch's threads: ``--faiss-omp-threads 1``
    made training single-threaded, the default 16 oversubscribed small machines.
    """
    faiss = need("faiss")
    own = torch.get_num_threads()
    faiss.omp_set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(own)


class LatentMatcher:
    """Nearest rendered latent for many query latents at once.

    Exact search by default, with one of two backends:

    * ``"kdtree"`` (default for exact search): scipy's cKDTree. Exact Euclidean
      nearest neighbours, and on these low-dimensional latents (3–11 columns)
      25–50× faster than a brute-force ``faiss.IndexFlatL2`` (measured in
      ``benchmarks/threedident_pipeline.py``: ~11k vs ~2k queries/s over 40k
      latents on one core).
    * ``"faiss"``: ``faiss.IndexFlatL2`` brute force, as the original.

    ``approximate=True`` builds the original's faiss IVF index with an HNSW
    coarse quantiser (``IVF{nlist}_HNSW32,Flat``, nprobe 10), ``nlist`` = 1024 for
    large folders and smaller for small ones (≥ 39 training points per list).
    ``threads`` (``--faiss-omp-threads``): kd-tree query workers, or faiss's
    OpenMP threads during its calls only (see :func:`faiss_threads`).
    """

    BACKENDS = ("kdtree", "faiss")

    def __init__(self, latents: np.ndarray, approximate: bool = False, backend: str = "kdtree",
                 threads: int = 1):
        self.latents = np.ascontiguousarray(latents, dtype=np.float32)
        n, d = self.latents.shape
        self.approximate = approximate
        if backend not in self.BACKENDS:
            raise ClicaError(f"unknown nearest-neighbour backend {backend!r}; choose one of {self.BACKENDS}")
        self.backend = "faiss" if approximate else backend
        self.threads = max(1, min(int(threads or 1), os.cpu_count() or 1))
        self.index = None
        self.tree = None
        if self.backend == "kdtree":
            from scipy.spatial import cKDTree

            self.tree = cKDTree(self.latents)
            return
        faiss = need("faiss")
        with faiss_threads(self.threads):
            if approximate:
                nlist = int(min(1024, max(1, n // 39)))
                index = faiss.index_factory(d, f"IVF{nlist}_HNSW32,Flat")
                index.train(self.latents)
                index.nprobe = min(10, nlist)
            else:
                index = faiss.IndexFlatL2(d)
            index.add(self.latents)
        self.index = index

    def search(self, queries: np.ndarray | torch.Tensor, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(squared distances, indices), each queries×k, in one search call."""
        if torch.is_tensor(queries):
            queries = queries.detach().cpu().numpy()
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if self.tree is not None:
            dist, idx = self.tree.query(q, k, workers=self.threads)
            dist, idx = np.asarray(dist).reshape(len(q), k), np.asarray(idx).reshape(len(q), k)
            return (dist ** 2).astype(np.float32), idx.astype(np.int64)
        with faiss_threads(self.threads):
            dist, idx = self.index.search(q, k)
        if self.approximate and (idx < 0).any():  # too few points in the probed lists
            rows = np.nonzero((idx < 0).any(1))[0]
            d2 = ((q[rows, None, :] - self.latents[None]) ** 2).sum(-1)
            order = np.argsort(d2, axis=1)[:, :k]
            idx[rows] = order
            dist[rows] = np.take_along_axis(d2, order, 1)
        return dist, idx

    def match_pairs(self, z, z_tilde) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the nearest rendered latents of ``z`` and ``z_tilde`` (both B×d).

        One search call for the whole batch (z and z~ stacked, k = 2); z~ takes
        its second-nearest neighbour whenever its nearest is the image of z, so a
        pair never shows the same image twice.
        """
        if torch.is_tensor(z):
            z = z.detach().cpu().numpy()
        if torch.is_tensor(z_tilde):
            z_tilde = z_tilde.detach().cpu().numpy()
        b = len(z)
        _, idx = self.search(np.concatenate([z, z_tilde], 0), 2)
        index_z = idx[:b, 0]
        candidates = idx[b:]
        index_tilde = np.where(candidates[:, 0] != index_z, candidates[:, 0], candidates[:, 1])
        return index_z.astype(np.int64), index_tilde.astype(np.int64)
