"""A 3DIdent dataset folder: its file names and the checks that it is one.

A folder (the published release and ``clica render`` output alike) holds ``raw_latents.npy`` (N×D, the
latents in the sampling space), ``latents.npy`` (N×10 render parameters) and ``images/{i}.png`` with
``i`` zero-padded to ``ceil(log10(N))`` digits.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ClicaError
from .images import decode_png


def image_name_width(n: int) -> int:
    """Digits in the image file names of an N-image folder: ``ceil(log10(N))``."""
    return int(math.ceil(math.log10(n))) if n > 1 else 0


def image_path(root: str | os.PathLike, index: int, n: int) -> Path:
    """``root/images/{index}.png`` with the published zero padding for N images."""
    return Path(root) / "images" / f"{str(index).zfill(image_name_width(n))}.png"


def _load_array(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise ClicaError(
            f"{path.parent} is not a 3DIdent dataset folder: {path.name} is missing "
            f"(expected raw_latents.npy, latents.npy and images/)")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # truncated, pickled object, not an .npy at all
        raise ClicaError(f"cannot read {path} ({what}): {str(exc).splitlines()[0]}") from None
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise ClicaError(f"{path} ({what}) must be a 2-D numeric array N×D, found shape "
                         f"{tuple(arr.shape)} and dtype {arr.dtype}")
    return arr


@dataclass
class ThreeDIdentFolder:
    """A validated 3DIdent dataset folder.

    ``open`` checks the layout and raises a one-line :class:`ClicaError` naming
    the problem: a missing folder or file, an unreadable or mis-shaped array,
    mismatched lengths, non-finite latents, missing or wrongly padded images.
    """

    root: Path
    raw_latents: np.ndarray  # float32 N×D, in memory
    n_render_latents: int
    has_images: bool
    _image_shape: tuple | None = field(default=None, repr=False)

    @classmethod
    def open(cls, root: str | os.PathLike, require_images: bool = True) -> "ThreeDIdentFolder":
        root = Path(root)
        if not root.exists():
            raise ClicaError(f"dataset folder {root} does not exist")
        if not root.is_dir():
            raise ClicaError(f"dataset path {root} is not a folder")
        raw = _load_array(root / "raw_latents.npy", "sampling-space latents")
        render = _load_array(root / "latents.npy", "render parameters")
        n = raw.shape[0]
        if n < 2:
            raise ClicaError(f"{root}/raw_latents.npy holds {n} latent(s); at least 2 are needed to make pairs")
        if render.shape[0] != n:
            raise ClicaError(f"{root}: raw_latents.npy has {n} rows but latents.npy has "
                             f"{render.shape[0]}; the folder is incomplete or mixed up")
        raw = np.ascontiguousarray(raw, dtype=np.float32)
        if not np.isfinite(raw).all():
            raise ClicaError(f"{root}/raw_latents.npy contains NaN or infinite values")
        images = root / "images"
        has_images = images.is_dir()
        folder = cls(root, raw, int(render.shape[1]), has_images)
        if require_images:
            folder.check_images()
        return folder

    def __len__(self) -> int:
        return self.raw_latents.shape[0]

    @property
    def n(self) -> int:
        return self.raw_latents.shape[0]

    @property
    def dim(self) -> int:
        return self.raw_latents.shape[1]

    def image_path(self, index: int) -> Path:
        return image_path(self.root, index, self.n)

    def check_images(self) -> None:
        """The images folder exists and the first and last images have the published names."""
        images = self.root / "images"
        if not images.is_dir():
            raise ClicaError(f"{self.root} is not a 3DIdent dataset folder: images/ is missing")
        for i in (0, self.n - 1):
            p = self.image_path(i)
            if not p.is_file():
                hint = ""
                if (images / f"{i}.png").is_file() and image_name_width(self.n) > len(str(i)):
                    hint = f" (found {i}.png: names must be zero-padded to {image_name_width(self.n)} digits)"
                raise ClicaError(f"{self.root}: image {p.name} is missing for {self.n} latents{hint}")
        extra = self.image_path(self.n)
        if extra.is_file():
            raise ClicaError(f"{self.root}: images/ holds more images than the {self.n} rows of raw_latents.npy "
                             f"(found {extra.name}); the latent files are incomplete or belong to other images")

    def image_shape(self) -> tuple[int, int]:
        """(height, width) of the images, read from the first one."""
        if self._image_shape is None:
            self._image_shape = decode_png(self.image_path(0)).shape[:2]
        return self._image_shape

    def render_latents(self) -> np.ndarray:
        return np.load(self.root / "latents.npy", mmap_mode="r")
