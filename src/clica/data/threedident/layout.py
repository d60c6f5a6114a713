"""Latent layouts: which columns of ``raw_latents.npy`` a run uses and in which spaces they live
(the original's table of flags)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import ClicaError

#: The 10 render parameters of ``latents.npy`` (and of ``raw_latents.npy`` in the
#: non-periodic variant), in the published order.
LATENT_NAMES = (
    "pos_x", "pos_y", "pos_z",
    "rot_alpha", "rot_beta", "rot_gamma",
    "spotlight_angle", "object_hue", "spotlight_hue", "background_hue",
)


@dataclass(frozen=True)
class LatentLayout:
    """Which latents a run uses and in which spaces they live.

    ``dimensions``: the columns of ``raw_latents.npy`` used (``None``: all of them,
    and then the folder must have exactly ``dim`` columns). ``parts``: the latent
    space as (kind, size) blocks, kind ``"box"`` ([-1, 1]^size) or ``"sphere"``
    (unit sphere in R^size), in column order. The first ``n_non_angular``
    latents are non-periodic (box), the remaining ``n_angular`` periodic (sphere).
    ``n_columns``: the column count a folder must have when ``dimensions`` is set
    (``None``: any that holds those columns). The non-periodic layouts need the
    10-column release: columns 3–9 of an 11-column periodic render are sphere
    coordinates, not angles, so picking them by index would score the wrong targets.
    """

    dimensions: tuple[int, ...] | None
    parts: tuple[tuple[str, int], ...]
    names: tuple[str, ...]
    n_columns: int | None = None

    @property
    def dim(self) -> int:
        return sum(size for _, size in self.parts)

    @property
    def n_non_angular(self) -> int:
        return sum(size for kind, size in self.parts if kind == "box")

    @property
    def n_angular(self) -> int:
        return sum(size for kind, size in self.parts if kind == "sphere")

    def select(self, raw_latents: np.ndarray, root="dataset") -> np.ndarray:
        """The used columns of ``raw_latents`` (checked against the layout), contiguous float32."""
        d = raw_latents.shape[1]
        if self.dimensions is None:
            if d != self.dim:
                raise ClicaError(
                    f"{root}/raw_latents.npy has {d} columns but the chosen latent space has {self.dim} "
                    f"({self.describe()}); "
                    + ("a 10-column release is non-periodic: pass --non-periodic-rotation-and-color"
                       if d == 10 and self.n_angular else "render the dataset with the matching flags"))
            return np.ascontiguousarray(raw_latents, dtype=np.float32)
        if self.n_columns is not None and d != self.n_columns:
            raise ClicaError(
                f"{root}/raw_latents.npy has {d} columns but --non-periodic-rotation-and-color needs the "
                f"{self.n_columns}-column non-periodic release; "
                + ("this looks like a periodic render: drop the flag or render with it"
                   if d == 11 else "render the dataset with --non-periodic-rotation-and-color"))
        if max(self.dimensions) >= d:
            raise ClicaError(f"{root}/raw_latents.npy has {d} columns but the chosen latents need "
                             f"columns {list(self.dimensions)}")
        return np.ascontiguousarray(raw_latents[:, list(self.dimensions)], dtype=np.float32)

    def describe(self) -> str:
        return " + ".join(f"{kind}({size})" for kind, size in self.parts)


def latent_layout(
    *,
    position_only: bool = False,
    rotation_and_color_only: bool = False,
    rotation_only: bool = False,
    color_only: bool = False,
    no_spotlight_position: bool = False,
    no_spotlight_color: bool = False,
    no_spotlight: bool = False,
    non_periodic_rotation_and_color: bool = False,
) -> LatentLayout:
    """The latent dimensions and spaces for a flag combination, by the original's rules.

    Contradictory combinations (which the original asserted on or crashed with)
    raise a :class:`ClicaError` that says which flags clash.
    """
    if no_spotlight:
        no_spotlight_position = no_spotlight_color = True
    only = [name for name, on in (("--position-only", position_only),
                                  ("--rotation-and-color-only", rotation_and_color_only),
                                  ("--rotation-only", rotation_only),
                                  ("--color-only", color_only)) if on]
    if len(only) > 1:
        raise ClicaError(f"{' and '.join(only)} contradict each other: choose at most one")
    if position_only and (non_periodic_rotation_and_color or no_spotlight_color or no_spotlight_position):
        clash = [n for n, on in (("--non-periodic-rotation-and-color", non_periodic_rotation_and_color),
                                 ("--no-spotlight-position/--no-spotlight", no_spotlight_position),
                                 ("--no-spotlight-color/--no-spotlight", no_spotlight_color)) if on]
        raise ClicaError(f"--position-only uses no rotation or colour latents, so it cannot be "
                         f"combined with {', '.join(clash)}")
    spot_pos = 0 if no_spotlight_position else 1
    spot_col = 0 if no_spotlight_color else 1

    if non_periodic_rotation_and_color:
        if rotation_and_color_only:
            dims = [3, 4, 5, 6, 7, 8, 9]
            parts = [("box", 4 + spot_col + spot_pos + 1)]
        elif rotation_only:
            dims = [3, 4, 5, 6]
            parts = [("box", 3 + spot_pos)]
        elif color_only:
            dims = [7, 8, 9]
            parts = [("box", 1 + spot_col + 1)]
        else:
            dims = list(range(10))
            parts = [("box", 3), ("box", 4 + spot_col + spot_pos + 1)]
        if no_spotlight_position:
            dims = [d for d in dims if d != 6]
        if no_spotlight_color:
            dims = [d for d in dims if d != 8]
        names = tuple(LATENT_NAMES[d] for d in dims)
        parts = [("box", sum(s for _, s in parts))]
        assert len(dims) == parts[0][1]
        return LatentLayout(tuple(dims), tuple(parts), names, n_columns=len(LATENT_NAMES))

    if no_spotlight_position or no_spotlight_color:
        flag = "--no-spotlight-position" if no_spotlight_position else "--no-spotlight-color"
        if no_spotlight_position and no_spotlight_color:
            flag = "--no-spotlight"
        raise ClicaError(f"{flag} is only supported with --non-periodic-rotation-and-color "
                         "(the periodic latents are embedded jointly on a sphere)")
    n_rot_col = 4 + spot_col + spot_pos + 1  # 7 angles: rotation 3, spotlight, 3 hues
    if position_only:
        return LatentLayout((0, 1, 2), (("box", 3),), LATENT_NAMES[:3])
    if rotation_and_color_only:
        dims = tuple(range(3, 3 + n_rot_col + 1))
        return LatentLayout(dims, (("sphere", n_rot_col + 1),),
                            tuple(f"sphere_{i}" for i in range(n_rot_col + 1)))
    if rotation_only:  # the original selects no columns: the folder must hold exactly these
        return LatentLayout(None, (("sphere", 3 + 1),), tuple(f"sphere_{i}" for i in range(4)))
    if color_only:
        return LatentLayout(None, (("sphere", 3 + 1 + 1),), tuple(f"sphere_{i}" for i in range(5)))
    return LatentLayout(None, (("box", 3), ("sphere", n_rot_col + 1)),
                        LATENT_NAMES[:3] + tuple(f"sphere_{i}" for i in range(n_rot_col + 1)))
