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


def sweep_latents(base: np.ndarray | None = None, steps: int = 7, ranges: dict | None = None) -> np.ndarray:
    """Latent rows ``(10 * steps, 10)``: row block ``k`` sweeps latent ``k`` over its range
    (``ranges``, name → (low, high); default :data:`SWEEP_RANGES`, the periodic variant's)."""
    base = BASE_LATENT if base is None else np.asarray(base, dtype=np.float64)
    ranges = SWEEP_RANGES if ranges is None else ranges
    rows = []
    for k, name in enumerate(LATENT_NAMES):
        lo, hi = ranges[name]
        periodic = hi - lo == 2 * np.pi
        values = np.linspace(lo, hi, steps, endpoint=not periodic)
        block = np.repeat(base[None], steps, 0)
        block[:, k] = values
        rows.append(block)
    return np.concatenate(rows)


def latent_ranges(latents: np.ndarray) -> dict:
    """Each render parameter's (low, high) over a dataset's latent rows (its first object's columns)."""
    latents = np.asarray(latents, dtype=np.float64)[:, :len(LATENT_NAMES)]
    return {name: (float(latents[:, k].min()), float(latents[:, k].max())) for k, name in enumerate(LATENT_NAMES)}


def base_within(ranges: dict) -> np.ndarray:
    """:data:`BASE_LATENT` moved into ``ranges``: the row a sweep holds fixed must be one the data holds."""
    lo, hi = (np.array([ranges[name][i] for name in LATENT_NAMES]) for i in (0, 1))
    return np.clip(BASE_LATENT, lo, hi)


#: the sweep rows magnified on the object: its pose and colour, small in the full frame
ZOOM_ROWS = ("alpha", "beta", "gamma", "object_hue")
POSITION_NAMES = ("x", "y", "z")


def latent_unit(name: str) -> str:
    """The unit a sweep shows a latent in: positions in scene units, angles and hues in degrees."""
    return "scene units" if name in POSITION_NAMES else "°"


def format_latent(name: str, value: float) -> str:
    """A render parameter as the sweep labels it: ``-1.5`` (position) or ``120°`` (angle, hue)."""
    if name in POSITION_NAMES:
        return f"{value:.1f}"
    return f"{np.degrees(value):.0f}°"


def object_pixel(latent: np.ndarray, image_size: int) -> tuple[float, float]:
    """(row, column) in pixels where the camera sees the centre of the first object of a latent row."""
    from . import scene

    centre = np.array([latent[0], latent[1], latent[2] + scene.MAX_OBJECT_SIZE / 2, 1.0])
    clip = scene.camera_view_projection() @ centre
    ndc = clip[:3] / clip[3]
    return (1 - ndc[1]) / 2 * image_size, (ndc[0] + 1) / 2 * image_size


def crop_around(images: np.ndarray, row: float, col: float, size: int) -> np.ndarray:
    """Square crops ``(N, size, size, 3)`` centred at (row, col), shifted to stay inside the images."""
    h, w = images.shape[1:3]
    r0 = int(np.clip(round(row - size / 2), 0, h - size))
    c0 = int(np.clip(round(col - size / 2), 0, w - size))
    return images[:, r0:r0 + size, c0:c0 + size]


def save_grid(images: np.ndarray, path, cols: int, row_labels=None, col_labels=None,
              title: str | None = None, compact: bool = True, cell_labels=None) -> Path:
    """Save images ``(N, S, S, 3)`` as a labelled grid PNG (matplotlib).

    ``row_labels`` go left of each row, ``col_labels`` above the first row and
    ``cell_labels`` (one per image) under each image.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..runs import atomic_write_bytes

    n = len(images)
    rows = int(np.ceil(n / cols))
    cell = max(1.3, images.shape[1] / 100 * 1.1)     # inches: show renders at about native size
    fig, axes = plt.subplots(rows, cols, squeeze=False, layout="constrained",
                             figsize=(cell * cols + (1.6 if row_labels else 0),
                                      (cell + (0.2 if cell_labels else 0)) * rows + (0.5 if title else 0.1)))
    for i, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
        if i < n:
            ax.imshow(images[i], interpolation="nearest")
            if cell_labels is not None and i < len(cell_labels):
                ax.set_xlabel(cell_labels[i], fontsize=8, labelpad=2)
        r, c = divmod(i, cols)
        if row_labels and c == 0 and r < len(row_labels):
            ax.set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=9)
        if col_labels and r == 0 and c < len(col_labels):
            ax.set_title(col_labels[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
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


def write_sweep(path, image_size: int = 128, steps: int = 7, base=None, zoom: int = 3, ranges: dict | None = None,
                **settings) -> Path:
    """The one-latent-at-a-time grid: one row per latent, ``steps`` values across its range
    (``ranges``: default the periodic variant's; :func:`latent_ranges` gives a dataset's own).

    Under each render is the latent's value (positions in scene units, angles
    and hues in degrees). The rows in :data:`ZOOM_ROWS` (rotations, object hue)
    show the object magnified ``zoom`` times: rendered at ``zoom * image_size``
    and cropped around it, so that a rotation is visible.
    """
    from . import render_latents_to_images

    if base is None:
        base = BASE_LATENT if ranges is None else base_within(ranges)
    base = np.asarray(base, dtype=np.float64)
    latents = sweep_latents(base, steps, ranges)
    images = render_latents_to_images(latents, image_size=image_size, **settings)
    zoomed = [k for k, name in enumerate(LATENT_NAMES) if name in ZOOM_ROWS] if zoom > 1 else []
    if zoomed:
        sel = np.concatenate([np.arange(k * steps, (k + 1) * steps) for k in zoomed])
        big = render_latents_to_images(latents[sel], image_size=image_size * zoom, **settings)
        row, col = object_pixel(base, image_size * zoom)
        images[sel] = crop_around(big, row, col, image_size)
    labels = [f"{name} ({latent_unit(name)})" + (f"\nzoom ×{zoom}" if k in zoomed else "")
              for k, name in enumerate(LATENT_NAMES)]
    values = [format_latent(LATENT_NAMES[i // steps], v)
              for i, v in enumerate(latents[np.arange(len(latents)), np.arange(len(latents)) // steps])]
    return save_grid(images, path, cols=steps, row_labels=labels, cell_labels=values,
                     title="3DIdent: one latent varied per row, the others fixed; its value under each render")


def write_grid(path, latents: np.ndarray, image_size: int = 128, cols: int = 8, labels=None,
               **settings) -> Path:
    """A grid of renders of the given latent rows, each labelled (e.g. with its row in latents.npy)."""
    from . import render_latents_to_images

    images = render_latents_to_images(latents, image_size=image_size, **settings)
    return save_grid(images, path, cols=min(cols, len(images)), cell_labels=labels)
