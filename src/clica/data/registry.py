"""Every dataset ``clica kitti --dataset`` reads: its files, where they are published, the ``clica data``
command that makes one offline, and the function that finds them.

One place for this knowledge: the loaders (:mod:`clica.data.factor_datasets`), the generators
(:mod:`clica.data.generators`) and ``clica table kitti --datasets`` all read it from here. KITTI Masks
and Natural Sprites keep their file names in their own modules (:mod:`clica.data.kitti_masks`,
:mod:`clica.data.natural_sprites`); :func:`locate` asks them. Importing this module loads neither
torch nor any loader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ClicaError

__all__ = ["FactorSpec", "SPECS", "DATASETS", "SHAPES3D_VALUES", "where", "resolve_data_path", "locate"]


@dataclass(frozen=True)
class FactorSpec:
    """What a dataset is: its files, where they are published, and its factor grid."""

    name: str                      # the --dataset value
    title: str
    files: tuple[str, ...]         # the file looked for in DIR (first found); () for a folder of files
    url: str
    default_dir: str               # the SlowVAE code's folder, used without --data-dir / $CLICA_DATA_DIR
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    categorical: tuple[bool, ...]
    channels: int
    scored: tuple[int, ...] | None = None  # factors scored by MCC (None: all)
    offline: str = ""              # the `clica data` command that writes files[0] offline ("": none)


SPECS = {s.name: s for s in (
    FactorSpec("dsprites", "dSprites", ("dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz", "dsprites.npz"),
               "https://github.com/deepmind/dsprites-dataset", "data/dsprites",
               ("shape", "scale", "orientation", "pos_x", "pos_y"), (3, 6, 40, 32, 32),
               (True, False, False, False, False), 1, offline="clica data dsprites"),
    FactorSpec("shapes3d", "3D Shapes", ("3dshapes.h5",), "https://storage.googleapis.com/3d-shapes/3dshapes.h5",
               "data/shapes3d", ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"),
               (10, 10, 10, 8, 4, 15), (False, False, False, False, True, False), 3,
               offline="clica data shapes3d"),
    FactorSpec("mpi3d", "MPI3D", ("mpi3d_real.npz", "mpi3d_realistic.npz", "mpi3d_toy.npz"),
               "https://github.com/rr-learning/disentanglement_dataset", "data/mpi3d_real",
               ("object_color", "object_shape", "object_size", "camera_height", "background_color",
                "horizontal_axis", "vertical_axis"), (6, 6, 2, 3, 3, 40, 40),
               (False, True, False, False, False, False, False), 3),
    FactorSpec("cars3d", "Cars3D", (), "http://www.scottreed.info/files/nips2015-analogy-data.tar.gz", "data/cars",
               ("elevation", "azimuth", "car"), (4, 24, 183), (False, False, True), 3),
    FactorSpec("smallnorb", "SmallNORB", (), "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/", "data/smallNORB",
               ("category", "instance", "elevation", "azimuth", "lighting"), (5, 10, 9, 18, 6),
               (True, True, False, False, False), 1, scored=(0, 2, 3, 4)),
)}

# every --dataset value, in the order the original's help lists them here
DATASETS = ("kittimasks", *SPECS, "natural")

# 3D Shapes label values of the published grid, per factor (the published file's `labels` hold these)
SHAPES3D_VALUES = (np.arange(10) / 10, np.arange(10) / 10, np.arange(10) / 10, np.linspace(0.75, 1.25, 8),
                   np.arange(4.0), np.linspace(-30, 30, 15))


def where(spec: FactorSpec, what: str) -> str:
    """How to get ``what`` (files of ``spec``): its download, and the offline command where there is one."""
    hint = f" or make one offline with `{spec.offline} --output DIR`" if spec.offline else ""
    return f"download {what} from {spec.url} and pass --data-dir DIR (or set CLICA_DATA_DIR=DIR){hint}"


def _default_dir(spec: FactorSpec) -> Path:
    env = os.environ.get("CLICA_DATA_DIR")
    return Path(env) if env else Path(spec.default_dir)


def resolve_data_path(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The file (dSprites, 3D Shapes, MPI3D) or folder (Cars3D, SmallNORB) of dataset ``name``: in
    ``data_dir`` (which may also name the file), else ``$CLICA_DATA_DIR``, else the SlowVAE folder."""
    spec = SPECS[name]
    base = Path(data_dir) if data_dir else _default_dir(spec)
    if not spec.files:
        if not base.is_dir():
            raise ClicaError(f"{spec.title} folder not found: {base}; {where(spec, 'the files')}")
        return base
    if base.is_file():
        return base
    for file in spec.files:
        if (base / file).is_file():
            return base / file
    others = f" (nor {', '.join(spec.files[1:])})" if len(spec.files) > 1 else ""
    raise ClicaError(f"{spec.title} file not found: {base / spec.files[0]}{others}; {where(spec, spec.files[0])}")


def locate(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The file or folder that ``clica kitti --dataset NAME --data-dir DATA_DIR`` reads (``data_dir``
    None: ``$CLICA_DATA_DIR``, else the original's folder), or a one-line :class:`ClicaError` naming the
    file expected, where it is published and the ``clica data`` command that makes one offline."""
    if name == "kittimasks":
        from .kitti_masks import missing_message, resolve_pickle_path

        path = resolve_pickle_path(data_dir)
        if not path.is_file():
            raise ClicaError(missing_message(path))
        return path
    if name == "natural":
        from .natural_sprites import resolve_csv_path

        return resolve_csv_path(data_dir)
    if name not in SPECS:
        raise ClicaError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    return resolve_data_path(name, data_dir)
