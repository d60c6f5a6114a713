"""The 3DIdent datasets: matched training pairs, and a folder's images in order."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ...errors import ClicaError
from .cache import build_image_cache, open_image_cache
from .folder import ThreeDIdentFolder
from .images import ImageLoader, load_normalization
from .layout import LatentLayout
from .matching import LatentMatcher


def _batch_seed(seed: int, index: int) -> int:
    return (int(seed) * 1_000_003 + int(index) * 7_919 + 12_345) % (2 ** 63 - 1)


class _FolderData:
    """Shared set-up: folder, used latent columns, image loader."""

    def __init__(self, root, layout: LatentLayout | None, images: bool, image_size, cache, cache_dir,
                 normalization, folder: ThreeDIdentFolder | None = None):
        self.folder = folder or ThreeDIdentFolder.open(root, require_images=images)
        self.layout = layout
        raw = self.folder.raw_latents
        self.latents = layout.select(raw, self.folder.root) if layout is not None else raw
        self.images = images
        self.loader = None
        self.normalization = None  # (mean, std) the images are normalised with
        if images:
            size = tuple(image_size) if image_size else self.folder.image_shape()
            arr = None
            if cache in ("auto", "build", True):
                if cache == "build" or cache is True:
                    build_image_cache(self.folder, size, cache_dir)
                arr = open_image_cache(self.folder, size, cache_dir)
            elif isinstance(cache, np.ndarray):
                arr = cache
            elif cache not in (None, False, "off"):
                raise ValueError(f"cache must be 'auto', 'build', 'off' or an array, not {cache!r}")
            if normalization is None:
                mean, std, self.normalization_source = load_normalization(self.folder.root)
            else:
                mean, std, *source = normalization  # (mean, std[, where they come from])
                self.normalization_source = source[0] if source else "given statistics"
            self.normalization = (tuple(mean), tuple(std))
            self.loader = ImageLoader(self.folder, size, arr, mean, std)

    @property
    def cached(self) -> bool:
        return self.loader is not None and self.loader.cache is not None


class ThreeDIdentPairs(_FolderData, torch.utils.data.IterableDataset):
    """Positive pairs ((z, z~), (x, x~)) matched to rendered latents, a batch at a time.

    ``sample(b, seed)`` returns one batch; iterating yields batch after batch of
    ``batch_size`` (batch i is seeded from (seed, i), so any batch can be
    reproduced and a resumed run sees the same data; with DataLoader workers the
    batches are split between them in order). Use it with
    ``DataLoader(pairs, batch_size=None, num_workers=k)``.

    ``uint8=True`` yields the images as uint8 (4× less to copy to a GPU);
    normalise them there with ``pairs.loader.normalize(x.to(device))``.
    ``images=False`` skips loading images (x and x~ are ``None``): for
    ``--dummy-mixing`` and the identity settings. ``cache``: ``"auto"`` uses a built
    uint8 cache if present, ``"build"`` builds it first, ``"off"`` decodes PNGs.
    """

    def __init__(self, root, latent_space, layout: LatentLayout | None = None, *, batch_size: int = 512,
                 approximate: bool = False, nn_backend: str = "kdtree", nn_threads: int = 1,
                 images: bool = True, image_size=None, cache="auto",
                 cache_dir=None, normalization=None, seed: int = 0, start_batch: int = 0,
                 uint8: bool = False, folder: ThreeDIdentFolder | None = None):
        _FolderData.__init__(self, root, layout, images, image_size, cache, cache_dir, normalization, folder)
        self.uint8 = uint8
        self.latent_space = latent_space
        if latent_space.dim != self.latents.shape[1]:
            raise ClicaError(f"the latent space has {latent_space.dim} dimensions but the selected "
                             f"latents of {self.folder.root} have {self.latents.shape[1]}")
        self.matcher = LatentMatcher(self.latents, approximate=approximate, backend=nn_backend,
                                     threads=nn_threads)
        self.batch_size, self.seed, self.start_batch = batch_size, seed, start_batch

    def sample_indices(self, batch_size: int, seed: int | None = None, generator=None):
        """Sample (z, z~) from the latent space and match them: two index arrays."""
        if generator is None:
            generator = torch.Generator()
            if seed is not None:
                generator.manual_seed(int(seed))
            else:
                generator.seed()
        z, z_tilde = self.latent_space.sample_pair(batch_size, generator=generator)
        return self.matcher.match_pairs(z, z_tilde)

    def get(self, index_z: np.ndarray, index_tilde: np.ndarray):
        z = torch.from_numpy(self.latents[index_z])
        z_tilde = torch.from_numpy(self.latents[index_tilde])
        if not self.images:
            return (z, z_tilde), (None, None)
        both = np.concatenate([index_z, index_tilde])
        x = self.loader.load_uint8(both) if self.uint8 else self.loader.load(both)
        b = len(index_z)
        return (z, z_tilde), (x[:b], x[b:])

    def sample(self, batch_size: int, seed: int | None = None, generator=None):
        """One batch ((z, z~), (x, x~)): z B×d float32, x B×3×H×W normalised."""
        return self.get(*self.sample_indices(batch_size, seed, generator))

    def batch(self, i: int):
        """The i-th batch of this dataset's stream (deterministic from ``seed`` and ``i``)."""
        g = torch.Generator().manual_seed(_batch_seed(self.seed, i))
        return self.get(*self.sample_indices(self.batch_size, generator=g))

    def __iter__(self) -> Iterator:
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        i = self.start_batch + worker
        while True:
            yield self.batch(i)
            i += n_workers


class ThreeDIdentSequential(_FolderData, torch.utils.data.Dataset):
    """All images of a folder in order, item i = (z_i, x_i) (test mode, evaluation).

    ``batches(b, shuffle, seed, limit)`` yields whole batches via the fast loader.
    """

    def __init__(self, root, layout: LatentLayout | None = None, *, images: bool = True, image_size=None,
                 cache="auto", cache_dir=None, normalization=None, folder: ThreeDIdentFolder | None = None):
        _FolderData.__init__(self, root, layout, images, image_size, cache, cache_dir, normalization, folder)

    def __len__(self) -> int:
        return self.folder.n

    def __getitem__(self, i: int):
        z = torch.from_numpy(self.latents[i])
        if not self.images:
            return z, None
        return z, self.loader.load(np.array([i]))[0]

    def get(self, indices: np.ndarray):
        z = torch.from_numpy(self.latents[indices])
        return z, (self.loader.load(indices) if self.images else None)

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                limit: int | None = None) -> Iterator:
        order = np.random.default_rng(seed).permutation(self.folder.n) if shuffle else np.arange(self.folder.n)
        if limit is not None:
            order = order[:limit]
        for s in range(0, len(order), batch_size):
            yield self.get(order[s:s + batch_size])
