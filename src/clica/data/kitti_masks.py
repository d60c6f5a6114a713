"""KITTI Masks: pedestrian-mask video sequences, their loader and a synthetic generator.

The published file ``kitti_peds_v2.pickle`` (Zenodo record 3931823) is a dict::

    {"pedestrians":         [bool array T_i x 64 x 64, ...],   # one per sequence
     "pedestrians_latents": [float array T_i x 3, ...]}        # (com_y, com_x, area)

where ``com_y, com_x`` are the mask's centre of mass (row, column; in pixels,
as ``scipy.ndimage.center_of_mass``) and ``area`` its number of pixels.

A training *pair* is (frame t, frame t+k) of one sequence with k uniform in
1..max_delta_t, clipped at the sequence's last frame; every frame except the
last of its sequence can start a pair. :class:`KittiMasks` keeps all frames
in one packed ``uint8`` tensor, so a batch of pairs is one gather, and
:func:`augment_pairs` applies the original's random affine + horizontal flip
to a whole batch at once (the same transform for both frames of a pair). The
original defined it but never switched it on, so :class:`PairLoader` leaves it
off unless asked (``augment=True``, ``clica kitti --augment``).

:func:`generate_synthetic` writes the same format offline: walking
pedestrian silhouettes (head, torso, arms, legs with a gait cycle) whose
position and log-size change frame to frame by Laplace-distributed steps.
"""

from __future__ import annotations

import importlib
import os
import pickle
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ClicaError
from ..runs import atomic_write_bytes
from .sequences import EpochSampler, SequencePairs

__all__ = [
    "PICKLE_NAME",
    "ZENODO_URL",
    "FACTOR_NAMES",
    "default_data_dir",
    "resolve_pickle_path",
    "validate_kitti_dict",
    "load_kitti_pickle",
    "mask_latents",
    "KittiMasks",
    "PairLoader",
    "Prefetcher",
    "augment_pairs",
    "SyntheticConfig",
    "generate_synthetic",
    "render_pedestrians",
    "write_kitti_pickle",
]

PICKLE_NAME = "kitti_peds_v2.pickle"
ZENODO_URL = "https://zenodo.org/record/3931823/files/kitti_peds_v2.pickle?download=1"
FACTOR_NAMES = ("com_y", "com_x", "area")
IMAGE_SIZE = 64


# --------------------------------------------------------------------------- files

def default_data_dir() -> Path:
    """``$CLICA_DATA_DIR`` when set, else ``./data/kitti`` (the original's default folder)."""
    return Path(os.environ.get("CLICA_DATA_DIR") or "data/kitti")


def resolve_pickle_path(data_dir: str | os.PathLike | None = None) -> Path:
    """``DIR/kitti_peds_v2.pickle``; ``data_dir`` may also name a pickle file directly."""
    path = Path(data_dir) if data_dir else default_data_dir()
    if path.suffix in (".pickle", ".pkl") or path.is_file():
        return path
    return path / PICKLE_NAME


def missing_message(path: Path) -> str:
    """The one line for a missing KITTI Masks file at ``path``: where it is published, and the offline command."""
    return (
        f"KITTI Masks file not found: {path}. Download kitti_peds_v2.pickle from Zenodo record "
        f"3931823 ({ZENODO_URL.split('?')[0]}) and put it at {path} (or pass --data-dir DIR / set "
        f"CLICA_DATA_DIR=DIR), or make synthetic data offline with "
        f"`clica data kitti-masks --output {path}`"
    )


def validate_kitti_dict(data, source: str = "data") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Check the published structure; return (masks, latents) as lists of arrays.

    Raises :class:`ClicaError` with a one-line reason when the structure is wrong.
    """
    if not isinstance(data, dict):
        raise ClicaError(f"{source} is not a KITTI Masks file: expected a dict, got {type(data).__name__}")
    for key in ("pedestrians", "pedestrians_latents"):
        if key not in data:
            raise ClicaError(f"{source} is not a KITTI Masks file: key {key!r} is missing "
                             f"(found {sorted(map(str, data))[:5]})")
    masks, latents = data["pedestrians"], data["pedestrians_latents"]
    if not isinstance(masks, (list, tuple)) or not isinstance(latents, (list, tuple)):
        raise ClicaError(f"{source}: 'pedestrians' and 'pedestrians_latents' must be lists of arrays")
    if len(masks) != len(latents):
        raise ClicaError(f"{source}: {len(masks)} mask sequences but {len(latents)} latent sequences")
    if not masks:
        raise ClicaError(f"{source}: the file holds no sequences")
    out_m, out_l = [], []
    for i, (m, z) in enumerate(zip(masks, latents)):
        m, z = np.asarray(m), np.asarray(z)
        if m.ndim != 3 or m.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ClicaError(f"{source}: sequence {i} has mask shape {m.shape}, expected T x 64 x 64")
        if z.shape != (m.shape[0], 3):
            raise ClicaError(f"{source}: sequence {i} has latents of shape {z.shape}, expected {(m.shape[0], 3)}")
        if m.shape[0] < 2:
            raise ClicaError(f"{source}: sequence {i} has {m.shape[0]} frame(s); pairs need at least 2")
        if m.dtype != np.bool_ and not (np.issubdtype(m.dtype, np.number) and ((m == 0) | (m == 1)).all()):
            values = np.unique(m)[:4] if np.issubdtype(m.dtype, np.number) else m.dtype
            raise ClicaError(f"{source}: sequence {i} masks are not binary (dtype {m.dtype}, values such as "
                             f"{values}); masks hold 0 and 1 only")
        if not np.issubdtype(z.dtype, np.number) or not np.isfinite(z).all():
            raise ClicaError(f"{source}: sequence {i} latents are not finite numbers")
        out_m.append(m)
        out_l.append(z)
    return out_m, out_l


# The only globals a KITTI Masks pickle needs: numpy arrays (rebuilt by _reconstruct for
# pickle protocols 0-4, by _frombuffer for protocol 5), their dtypes and numpy scalars, with
# module names of numpy 1 (numpy.core) and numpy 2 (numpy._core); _codecs.encode makes the
# bytes of arrays in protocols 0-2. Dicts, lists, strings and numbers need no global.
_PICKLE_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    *((f"numpy.{core}.multiarray", name) for core in ("core", "_core") for name in ("_reconstruct", "scalar")),
    *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
})


class _DataUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays, dicts and lists, and refuses every other global:
    a pickle cannot make it import or call anything else, so loading a file runs no code."""

    def __init__(self, fh, path: Path):
        super().__init__(fh)
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_GLOBALS:
            raise ClicaError(f"{self.path} is not a KITTI Masks pickle: it refers to {module}.{name}, which "
                             f"is not numpy array data; refused, nothing was loaded")
        if module.startswith("numpy.core."):  # numpy 2 keeps these under numpy._core (numpy.core warns)
            try:
                return getattr(importlib.import_module("numpy._core" + module[len("numpy.core"):]), name)
            except (ImportError, AttributeError):
                pass
        return getattr(importlib.import_module(module), name)

    def persistent_load(self, pid):
        raise ClicaError(f"{self.path} is not a KITTI Masks pickle: it holds a persistent reference; "
                         f"refused, nothing was loaded")


def load_kitti_pickle(path: str | os.PathLike) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read and validate a KITTI Masks pickle (published or synthetic).

    The file is read by an unpickler that only rebuilds numpy arrays, dicts and
    lists (see :class:`_DataUnpickler`): a pickle that refers to anything else
    is refused with a one-line :class:`ClicaError` naming what it refers to.
    """
    path = Path(path)
    if not path.exists():
        raise ClicaError(missing_message(path))
    try:
        with open(path, "rb") as fh:
            data = _DataUnpickler(fh, path).load()
    except ClicaError:
        raise
    except Exception as exc:  # truncated, not a pickle, ...
        lines = str(exc).strip().splitlines()
        raise ClicaError(f"cannot read {path} as a KITTI Masks pickle: {type(exc).__name__}: "
                         f"{lines[0] if lines else ''}") from None
    return validate_kitti_dict(data, source=str(path))


def mask_latents(masks: np.ndarray) -> np.ndarray:
    """(T, 3) float32 ground truth of masks (T, H, W): centre of mass row, column; area.

    The same values as ``scipy.ndimage.center_of_mass`` and ``mask.sum()``, the
    published data's definition (an empty mask gets NaN centre of mass).
    """
    m = np.asarray(masks, dtype=np.float64)
    area = m.sum(axis=(1, 2))
    rows = np.arange(m.shape[1], dtype=np.float64)
    cols = np.arange(m.shape[2], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        com_y = (m.sum(axis=2) * rows).sum(axis=1) / area
        com_x = (m.sum(axis=1) * cols).sum(axis=1) / area
    return np.stack([com_y, com_x, area], axis=1).astype(np.float32)


# --------------------------------------------------------------------------- dataset

class KittiMasks:
    """All frames of a KITTI Masks file, packed for batched pair sampling.

    Attributes: ``frames`` uint8 (N, 64, 64) in {0, 1}; ``latents`` float32
    (N, 3); ``starts`` the global index of every frame that can start a pair;
    ``seq_last`` the global index of that frame's sequence's last frame.
    ``len(dataset)`` is the number of possible pair starts, as the original.
    """

    title = "KITTI Masks"
    factor_names = FACTOR_NAMES
    channels = 1

    def __init__(self, masks: list[np.ndarray], latents: list[np.ndarray], max_delta_t: int = 1):
        if max_delta_t < 1:
            raise ClicaError(f"--kitti-max-delta-t must be at least 1, got {max_delta_t}")
        self.max_delta_t = int(max_delta_t)
        self.n_sequences = len(masks)
        self.frames = torch.from_numpy(np.concatenate([np.asarray(m, dtype=np.uint8) for m in masks]))
        self.latents = torch.from_numpy(np.concatenate(latents).astype(np.float32))
        self.pairs = SequencePairs([len(m) for m in masks], max_delta_t)
        self.starts, self.seq_last, self.lengths = self.pairs.starts, self.pairs.seq_last, self.pairs.lengths

    @classmethod
    def from_file(cls, path: str | os.PathLike, max_delta_t: int = 1) -> "KittiMasks":
        masks, latents = load_kitti_pickle(path)
        return cls(masks, latents, max_delta_t=max_delta_t)

    @classmethod
    def from_dict(cls, data: dict, max_delta_t: int = 1) -> "KittiMasks":
        masks, latents = validate_kitti_dict(data)
        return cls(masks, latents, max_delta_t=max_delta_t)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    def describe(self) -> str:
        return f"KITTI Masks: {self.n_sequences} sequences, {self.n_frames} frames"

    def pair_indices(self, idx: torch.Tensor, generator: torch.Generator | None = None):
        """Global frame indices (first, second) of the pairs starting at pair indices ``idx``."""
        return self.pairs.pair_indices(idx, generator)

    def images(self, frame_idx: torch.Tensor, device=None) -> torch.Tensor:
        """Float images (n, 1, 64, 64) in {0, 1} for global frame indices."""
        x = self.frames[frame_idx]
        if device is not None:
            x = x.to(device, non_blocking=True)
        return x.unsqueeze(1).float()

    def sample_pairs(self, idx: torch.Tensor, generator: torch.Generator | None = None, device=None):
        """(x1, x2, z1, z2) for pair starts ``idx``: images (B,1,64,64) and latents (B,3)."""
        first, second = self.pair_indices(idx, generator)
        return (self.images(first, device), self.images(second, device),
                self.latents[first], self.latents[second])

    def eval_indices(self, n: int = 10_000, seed: int = 0) -> np.ndarray:
        """Indices of ``n`` evaluation frames: pair starts drawn uniformly, as the original's MCC."""
        rs = np.random.RandomState(seed)
        return self.starts.numpy()[rs.randint(0, len(self.starts), size=n)]


def augment_pairs(x1: torch.Tensor, x2: torch.Tensor, generator: torch.Generator | None = None,
                  degrees: tuple[float, float] = (2.0, 2.0), translate: float = 5 / 64.0,
                  flip_p: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The original's augmentation, batched: the same transform for both frames of each pair.

    Per pair: rotation by an angle uniform in ``degrees`` (the original's
    ``RandomAffine(degrees=(2, 2))``, i.e. always 2°), a translation of an
    integer number of pixels uniform in ±``translate``·64 on each axis, nearest
    neighbour resampling with zero fill, then a horizontal flip with
    probability ``flip_p``. ``x1, x2``: (B, 1, H, W) float.
    """
    b, _, h, w = x1.shape
    dev = x1.device
    u = torch.rand(b, 4, generator=generator)
    angle = torch.deg2rad(degrees[0] + (degrees[1] - degrees[0]) * u[:, 0])
    tx = torch.round((2 * u[:, 1] - 1) * translate * w)
    ty = torch.round((2 * u[:, 2] - 1) * translate * h)
    flip = u[:, 3] < flip_p
    # output pixel -> input pixel: p_in = R(-angle) (p_out - t), in normalised coordinates
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos, sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = -sin * w / h, cos
    t = torch.stack([2 * tx / w, 2 * ty / h], dim=1)
    theta[:, :, 2] = -(theta[:, :, :2] @ t.unsqueeze(2)).squeeze(2)
    both = torch.cat([x1, x2], dim=1)
    grid = F.affine_grid(theta.to(dev), list(both.shape), align_corners=False)
    out = F.grid_sample(both, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    out = torch.where(flip.to(dev)[:, None, None, None], out.flip(-1), out)
    c = x1.shape[1]
    return out[:, :c], out[:, c:]


class PairLoader:
    """Batches of pairs, shuffled each epoch (drop_last), as the original's DataLoader.

    ``batch_size`` counts images, as the original's ``--batch-size``: a batch
    holds ``batch_size // 2`` pairs. Iterating yields ``(x, z)`` with the pair
    frames interleaved (x[0::2] first frames, x[1::2] second frames), images
    (batch_size, 1, 64, 64) on ``device`` and latents (batch_size, 3).
    """

    def __init__(self, dataset: KittiMasks, batch_size: int = 64, augment: bool = False,
                 seed: int = 0, device=None):
        if batch_size < 2 or batch_size % 2:
            raise ClicaError(f"--batch-size must be an even number ≥ 2 (pairs of frames), got {batch_size}")
        self.n_pairs = batch_size // 2
        if len(dataset) < self.n_pairs:
            raise ClicaError(f"the data has {len(dataset)} pair starts, fewer than one batch of "
                             f"{self.n_pairs} pairs (--batch-size {batch_size})")
        self.dataset, self.augment, self.device = dataset, augment, device
        self.generator = torch.Generator().manual_seed(int(seed))
        self.order = EpochSampler(len(dataset), self.n_pairs, self.generator)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), **self.order.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.order.load_state_dict(state)
        self.generator.set_state(state["generator"])

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.order.next()
        # one gather of the interleaved frames: no copy to interleave them afterwards
        both = torch.stack(self.dataset.pair_indices(idx, self.generator), dim=1).flatten()
        x, z = self.dataset.images(both, self.device), self.dataset.latents[both]
        if self.augment:
            x1, x2 = augment_pairs(x[0::2], x[1::2], self.generator)
            x = torch.stack([x1, x2], dim=1).flatten(0, 1)
        return x, z

    def __iter__(self):
        while True:
            yield self.next_batch()


class Prefetcher:
    """Batches of a :class:`PairLoader` made ahead by one background thread, in the same order.

    ``depth`` batches are kept ready. ``state_dict()`` is the loader's state
    right after the last batch handed out, so a checkpoint resumes exactly as
    without prefetching. Call ``close()`` when done.
    """

    def __init__(self, loader: PairLoader, depth: int = 2):
        self.loader = loader
        self.q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()
        self.state = loader.state_dict()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="kitti-prefetch", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        try:
            while not self.stop.is_set():
                x, z = self.loader.next_batch()
                item = (x, z, self.loader.state_dict())
                while not self.stop.is_set():
                    try:
                        self.q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # re-raised in the consumer
            self.error = exc
            self.stop.set()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        while True:
            try:
                x, z, self.state = self.q.get(timeout=0.1)
                return x, z
            except queue.Empty:
                if self.error is not None:
                    raise self.error
                if not self.thread.is_alive():
                    raise RuntimeError("the prefetch thread has stopped")

    def state_dict(self) -> dict:
        return self.state

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def __iter__(self):
        while True:
            yield self.next_batch()


# --------------------------------------------------------------------------- synthetic data

@dataclass
class SyntheticConfig:
    """Statistics of the synthetic pedestrian videos (all lengths in pixels of the 64×64 frame).

    Each sequence: a walking figure of height ``h`` (log-uniform in
    ``height_range``) centred at (``y``, ``x``); per frame, x, y and log h take
    independent Laplace steps with scales ``step_x``, ``step_y``, ``step_log_h``
    (heavy tailed: most steps are small, a few are large), reflected at the
    limits that keep the whole figure inside the frame (``margin`` pixels
    from the border; the limits shrink as the figure grows). Body proportions
    (width, head size, arm and leg swing) vary per sequence and the gait phase
    advances every frame: nuisance variation that is not part of the factors.
    Sequence lengths are ``2 + Geometric(1 / (mean_length - 1))``, capped at
    ``max_length``. As the published pipeline, frames whose mask has fewer
    than ``min_area`` pixels split a sequence and are dropped, and pieces
    shorter than 2 frames are discarded.
    """

    n_sequences: int = 800
    mean_length: float = 16.0
    max_length: int = 80
    height_range: tuple[float, float] = (14.0, 48.0)
    step_x: float = 2.5
    step_y: float = 1.0
    step_log_h: float = 0.06
    margin: float = 1.0
    min_area: int = 30


def _segment_distance2(px, py, ax, ay, bx, by):
    """Squared distance of points (px, py) to segments a-b (broadcasting)."""
    dx, dy = bx - ax, by - ay
    t = ((px - ax) * dx + (py - ay) * dy) / np.maximum(dx * dx + dy * dy, 1e-9)
    t = np.clip(t, 0.0, 1.0)
    qx, qy = ax + t * dx - px, ay + t * dy - py
    return qx * qx + qy * qy


def render_pedestrians(x, y, h, phase, body, size: int = IMAGE_SIZE) -> np.ndarray:
    """Binary silhouettes (T, size, size) of walking figures.

    ``x, y``: centre (column, row) of the figure's bounding box; ``h``: height;
    ``phase``: gait phase (radians); ``body``: dict of per-sequence
    proportions ``width, head, leg_swing, arm_swing, limb`` (fractions of h).
    Arrays of length T; pixel centres are at integer coordinates.
    """
    x, y, h, phase = (np.asarray(a, dtype=np.float64)[:, None, None] for a in (x, y, h, phase))
    rr = np.arange(size, dtype=np.float64)[None, :, None]
    cc = np.arange(size, dtype=np.float64)[None, None, :]
    top = y - h / 2
    half_w = body["width"] * h / 2
    # head: disc
    head_r = body["head"] * h
    head_cy = top + head_r
    mask = (cc - x) ** 2 + (rr - head_cy) ** 2 <= head_r ** 2
    # torso: ellipse from the neck to the hips
    t_top, t_bot = head_cy + head_r * 0.9, top + 0.56 * h
    t_cy, t_ry = (t_top + t_bot) / 2, (t_bot - t_top) / 2
    mask |= ((cc - x) / np.maximum(half_w, 0.5)) ** 2 + ((rr - t_cy) / np.maximum(t_ry, 0.5)) ** 2 <= 1.0
    # legs and arms: capsules swinging in anti-phase
    limb_r2 = np.maximum(body["limb"] * h, 0.6) ** 2
    hip_y, leg_len = top + 0.52 * h, 0.48 * h
    sh_y, arm_len = t_top + 0.08 * h, 0.36 * h
    for sign in (-1.0, 1.0):
        a = sign * body["leg_swing"] * np.sin(phase)
        hx = x + sign * 0.25 * half_w
        mask |= _segment_distance2(cc, rr, hx, hip_y, hx + leg_len * np.sin(a), hip_y + leg_len * np.cos(a)) <= limb_r2
        a = -sign * body["arm_swing"] * np.sin(phase)
        sx = x + sign * 0.8 * half_w
        arm = _segment_distance2(cc, rr, sx, sh_y, sx + arm_len * np.sin(a), sh_y + arm_len * np.cos(a))
        mask |= arm <= limb_r2 * 0.7
    return mask


def _reflect(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = hi - lo
    w = np.mod(v - lo, 2 * span)
    return lo + np.where(w > span, 2 * span - w, w)


def generate_synthetic(seed: int, config: SyntheticConfig | None = None, progress=None) -> dict:
    """A KITTI Masks dict in the published format, deterministic from ``seed``.

    Returns ``{"pedestrians": [bool T×64×64], "pedestrians_latents": [float32 T×3]}``,
    exactly the published keys and types.
    """
    cfg = config or SyntheticConfig()
    if cfg.n_sequences < 1:
        raise ClicaError("--sequences must be at least 1")
    if cfg.mean_length < 2:
        raise ClicaError("--mean-length must be at least 2")
    rng = np.random.default_rng(seed)
    lo_h, hi_h = np.log(cfg.height_range[0]), np.log(cfg.height_range[1])
    m = cfg.margin
    masks_out, latents_out = [], []
    for s in range(cfg.n_sequences):
        p = 1.0 / max(cfg.mean_length - 1.0, 1.0)
        T = int(min(2 + rng.geometric(p) - 1, cfg.max_length))
        body = {
            "width": rng.uniform(0.28, 0.36),
            "head": rng.uniform(0.07, 0.085),
            "leg_swing": rng.uniform(0.2, 0.4),
            "arm_swing": rng.uniform(0.15, 0.35),
            "limb": rng.uniform(0.05, 0.065),
        }
        steps = rng.laplace(0.0, 1.0, size=(T, 3)) * [cfg.step_x, cfg.step_y, cfg.step_log_h]
        x, y, h = np.empty(T), np.empty(T), np.empty(T)
        lh = rng.uniform(lo_h, hi_h)
        hx = hy = None
        for t in range(T):
            if t:
                lh = float(_reflect(np.array(lh + steps[t, 2]), lo_h, hi_h))
            h[t] = np.exp(lh)
            # the figure (height h, width ≤ 0.5 h with swinging limbs) stays inside the frame
            ry = (m + h[t] / 2, 63 - m - h[t] / 2)
            rx = (m + 0.3 * h[t], 63 - m - 0.3 * h[t])
            if t == 0:
                hx, hy = rng.uniform(*rx), rng.uniform(*ry)
            else:
                hx = float(_reflect(np.array(hx + steps[t, 0]), *rx))
                hy = float(_reflect(np.array(hy + steps[t, 1]), *ry))
            x[t], y[t] = hx, hy
        phase = rng.uniform(0, 2 * np.pi) + rng.uniform(0.25, 0.7) * np.arange(T)
        masks = render_pedestrians(x, y, h, phase, body)
        keep = masks.sum(axis=(1, 2)) >= cfg.min_area
        # split at dropped frames, keep pieces of ≥ 2 frames (as the published pipeline)
        start = None
        for t in range(T + 1):
            if t < T and keep[t]:
                start = t if start is None else start
            elif start is not None:
                if t - start >= 2:
                    piece = masks[start:t]
                    masks_out.append(piece)
                    latents_out.append(mask_latents(piece))
                start = None
        if progress is not None:
            progress.update(1)
    if not masks_out:
        raise ClicaError("the synthetic generator produced no sequence; raise --sequences")
    return {"pedestrians": masks_out, "pedestrians_latents": latents_out}


def write_kitti_pickle(path: str | os.PathLike, data: dict) -> None:
    """Validate and write a KITTI Masks dict atomically."""
    validate_kitti_dict(data)
    atomic_write_bytes(path, pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
