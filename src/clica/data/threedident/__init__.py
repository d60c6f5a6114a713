"""3DIdent datasets: folder validation, latent layouts, nearest-neighbour pair matching,
image loading (PNG or a memory-mapped uint8 cache) and normalisation.

Modules: :mod:`.folder` (the folder format and its checks), :mod:`.images` (PNG decoding,
normalisation statistics, batch loading), :mod:`.layout` (which latents, in which spaces),
:mod:`.latent_space` (the marginal and conditional pairs are drawn from), :mod:`.matching`
(nearest rendered latents), :mod:`.cache` (the uint8 image cache) and :mod:`.datasets`.

Training pairs are made as in the paper: sample z from the marginal and z~ from
the conditional of a latent space, then replace each by its nearest rendered
latent. Unlike the original (two faiss searches per item), a whole batch of z
and z~ is matched in a single search call (exact kd-tree by default, faiss
brute force or faiss's approximate IVF/HNSW index on request), and z~ never
lands on the image of z.

Everything here is usable from Python without the command line::

    from clica.data.threedident import ThreeDIdentFolder, ThreeDIdentPairs, latent_layout, latent_space_for
    layout = latent_layout(non_periodic_rotation_and_color=True)
    pairs = ThreeDIdentPairs("data/3dident64", latent_space_for(layout, "l2", 0.1), layout=layout)
    (z, z_tilde), (x, x_tilde) = pairs.sample(256, seed=0)
"""

from .cache import build_image_cache, cache_file, open_image_cache
from .datasets import ThreeDIdentPairs, ThreeDIdentSequential
from .folder import ThreeDIdentFolder, image_name_width, image_path
from .images import PUBLISHED_MEAN, PUBLISHED_STD, STATS_FILES, ImageLoader, decode_png, load_normalization
from .latent_space import latent_space_for
from .layout import LATENT_NAMES, LatentLayout, latent_layout
from .matching import LatentMatcher, faiss_threads

__all__ = [
    "LATENT_NAMES",
    "PUBLISHED_MEAN",
    "PUBLISHED_STD",
    "STATS_FILES",
    "image_name_width",
    "image_path",
    "decode_png",
    "ThreeDIdentFolder",
    "LatentLayout",
    "latent_layout",
    "latent_space_for",
    "faiss_threads",
    "LatentMatcher",
    "cache_file",
    "build_image_cache",
    "open_image_cache",
    "load_normalization",
    "ImageLoader",
    "ThreeDIdentPairs",
    "ThreeDIdentSequential",
]
