"""Preview figures: a grid of renders, and a sweep varying one latent at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .latents import LATENT_NAMES

# sweep ranges of the periodic variant's render parameters
SWEEP_RANGES = {
    "x": (-3.0, 3.0), "y": (-3.0, 3.0), "z": (0.0, 3.0),
    "alpha": (0.0, 2 * np.pi), "beta": (0.0, 2 * np.pi), "gamma": (0.0, 2 * np.pi),
    "spotlight_angle": (0.0, 2 * np.pi), "object_hue": (0.0, 2 * np.pi),
    "spotlight_hue": (0.0, 2 * np.pi), "background_hue": (0.0, 2 * np.pi),
}
#: a latent row in the middle of the ranges: object centred, upright, spotlight behind-left
BASE_LATENT = np.array([0.0, 0.0, 1.5, 0.0, 0.0, 0.0, np.pi / 4, 0.0, 2 * np.pi / 3, 4 * np.pi / 3])


def sweep_latents(base: np.ndarray | None = None, steps: int = 7) -> np.ndarray:
    """Latent rows ``(10 * steps, 10)``: row block ``k`` sweeps latent ``k`` over its range."""
    base = BASE_LATENT if base is None else np.asarray(base, dtype=np.float64)
    rows = []
    for k, name in enumerate(LATENT_NAMES):
        lo, hi = SWEEP_RANGES[name]
        periodic = hi - lo == 2 * np.pi
        values = np.linspace(lo, hi, steps, endpoint=not periodic)
        block = np.repeat(base[None], steps, 0)
        block[:, k] = values
        rows.append(block)
    return np.concatenate(rows)


def save_grid(images: np.ndarray, path, cols: int, row_labels=None, col_labels=None,
              title: str | None = None, compact: bool = True) -> Path:
    """Save images ``(N, S, S, 3)`` as a labelled grid PNG (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..runs import atomic_write_bytes

    n = len(images)
    rows = int(np.ceil(n / cols))
    cell = max(1.3, images.shape[1] / 100 * 1.1)     # inches: show renders at about native size
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols + (1.6 if row_labels else 0), cell * rows + 0.4),
                             squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
        if i < n:
            ax.imshow(images[i], interpolation="nearest")
        r, c = divmod(i, cols)
        if row_labels and c == 0 and r < len(row_labels):
            ax.set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=9)
        if col_labels and r == 0 and c < len(col_labels):
            ax.set_title(col_labels[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    if compact:   # a 256-colour palette: a third of the bytes, fine for a README
        from PIL import Image

        buf.seek(0)
        with Image.open(buf) as im:
            small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        buf = io.BytesIO()
        small.save(buf, format="PNG", optimize=True)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def write_sweep(path, image_size: int = 96, steps: int = 7, base=None, **settings) -> Path:
    """The one-latent-at-a-time grid: one row per latent, ``steps`` values across its range."""
    from . import render_latents_to_images

    latents = sweep_latents(base, steps)
    images = render_latents_to_images(latents, image_size=image_size, **settings)
    labels = [f"{name}" for name in LATENT_NAMES]
    return save_grid(images, path, cols=steps, row_labels=labels,
                     col_labels=[f"step {i + 1}" for i in range(steps)],
                     title="3DIdent: one latent varied per row (others fixed)")


def write_grid(path, latents: np.ndarray, image_size: int = 128, cols: int = 8, **settings) -> Path:
    """A grid of renders of the given latent rows."""
    from . import render_latents_to_images

    images = render_latents_to_images(latents, image_size=image_size, **settings)
    return save_grid(images, path, cols=min(cols, len(images)))
