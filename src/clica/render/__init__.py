"""3DIdent generation: latents, a fast headless renderer, the published folder format.

``make_dataset(folder, n_points, image_size=64, seed=0, ...)`` writes a whole
dataset in one call (``clica render dataset`` on the command line);
``clica render {latents,images,preview,stats}`` do the steps one by one. The
GL renderer is imported lazily (``clica.render.renderer``).
"""

from .dataset import (
    compute_stats,
    image_name,
    image_name_width,
    image_path,
    load_render_latents,
    make_dataset,
    render_images,
    shard_indices,
    write_latents,
)
from .latents import LATENT_NAMES, LatentOptions, generate_latents

__all__ = ["make_dataset", "write_latents", "render_images", "compute_stats", "generate_latents",
           "LatentOptions", "LATENT_NAMES", "image_name", "image_name_width", "image_path",
           "load_render_latents", "shard_indices", "render_latents_to_images"]


def render_latents_to_images(latents, image_size: int = 64, **settings):
    """Render latent rows ``(N, 9n+1)`` in memory → ``uint8`` array ``(N, S, S, 3)``."""
    import numpy as np

    from .latents import n_objects_of
    from .renderer import Renderer, RenderSettings

    latents = np.atleast_2d(np.asarray(latents, dtype=np.float64))
    r = Renderer(RenderSettings.make(image_size=image_size, n_objects=n_objects_of(latents), **settings))
    try:
        return r.render(latents)
    finally:
        r.release()
