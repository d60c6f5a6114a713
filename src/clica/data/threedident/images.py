"""Images of a 3DIdent folder: PNG decoding, the normalisation statistics and batch loading."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ...errors import ClicaError

if TYPE_CHECKING:
    from .folder import ThreeDIdentFolder

#: Per-channel statistics of the published 224×224 release (the original's constants).
PUBLISHED_MEAN = (0.3292, 0.3278, 0.3215)
PUBLISHED_STD = (0.0778, 0.0776, 0.0771)

#: Files in a dataset folder that may hold its image statistics, tried in order.
#: Each is JSON with ``mean`` and ``std`` lists of 3 floats (in [0, 1] pixel units).
STATS_FILES = ("stats.json", "image_stats.json", "mean_std.json", "normalization.json")


_CONVERTED_MODES: set = set()  # image modes already reported as converted to RGB (said once per process)


def decode_png(path: Path, size: tuple[int, int] | None = None,
               native: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one image to an H×W×3 uint8 array, optionally resized to ``size`` = (H, W).

    ``native`` is the folder's image size: an image of another size is refused (a folder
    holds one size; resizing it silently would mix scales). Greyscale or palette images
    are converted to RGB, said once per mode.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            if native is not None and im.size != (native[1], native[0]):
                raise ClicaError(f"image {path} is {im.size[0]}x{im.size[1]} but the folder's images are "
                                 f"{native[1]}x{native[0]}: a dataset folder holds one image size")
            if im.mode != "RGB" and im.mode not in _CONVERTED_MODES:
                _CONVERTED_MODES.add(im.mode)
                print(f"note: {path} is a {im.mode} image; images of mode {im.mode} are converted to RGB")
            im = im.convert("RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except ClicaError:
        raise
    except FileNotFoundError:
        raise ClicaError(f"image {path} is missing") from None
    except Exception as exc:
        raise ClicaError(f"cannot decode image {path}: {exc}") from None


def load_normalization(root: str | os.PathLike) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    """(mean, std, source): the folder's stored image statistics, else the published constants."""
    root = Path(root)
    for name in STATS_FILES:
        p = root / name
        if p.is_file():
            try:
                data = json.loads(p.read_text())
                mean = tuple(float(v) for v in data["mean"])
                std = tuple(float(v) for v in data["std"])
            except Exception as exc:
                raise ClicaError(f"{p} is malformed ({exc}); it must be JSON with 'mean' and 'std' lists of 3 "
                                 f"floats") from None
            if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
                raise ClicaError(f"{p} must hold 3 means and 3 positive stds, found {mean}, {std}")
            if max(mean) > 1.5:  # stored in 0..255 pixel units
                mean = tuple(m / 255 for m in mean)
                std = tuple(s / 255 for s in std)
            return mean, std, str(p)
    return PUBLISHED_MEAN, PUBLISHED_STD, "published constants"


class ImageLoader:
    """Loads batches of images by index as normalised float tensors B×3×H×W.

    From the memory-mapped uint8 cache when one is given (fast: one gather, one
    fused normalisation), else by decoding PNGs (optionally resized to ``size``).
    """

    def __init__(self, folder: ThreeDIdentFolder, size: tuple[int, int] | None = None,
                 cache: np.ndarray | None = None, mean=PUBLISHED_MEAN, std=PUBLISHED_STD):
        self.folder = folder
        self.cache = cache
        self.size = tuple(size) if size else (tuple(cache.shape[2:]) if cache is not None else None)
        m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        # x_norm = (u8 / 255 - mean) / std = u8 * scale + shift
        self._scale = 1.0 / (255.0 * s)
        self._shift = -m / s

    def load_uint8(self, indices: np.ndarray) -> torch.Tensor:
        indices = np.asarray(indices, dtype=np.int64)
        if self.cache is not None:
            order = np.argsort(indices, kind="stable")
            gathered = self.cache[indices[order]]  # sorted reads: forward through the file, fast
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
            return torch.from_numpy(gathered)[torch.from_numpy(inverse)]
        return torch.from_numpy(np.stack(
            [decode_png(self.folder.image_path(int(i)), self.size, self.folder.image_shape()).transpose(2, 0, 1)
             for i in indices]))

    def normalize(self, u8: torch.Tensor) -> torch.Tensor:
        """uint8 B×3×H×W → float32 (x/255 − mean)/std, in place in one new tensor."""
        out = torch.empty(u8.shape, dtype=torch.float32, device=u8.device)
        out.copy_(u8)
        return out.mul_(self._scale.to(u8.device)).add_(self._shift.to(u8.device))

    def load(self, indices: np.ndarray) -> torch.Tensor:
        return self.normalize(self.load_uint8(indices))
