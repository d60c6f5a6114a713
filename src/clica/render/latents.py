"""3DIdent latents: sampling (``raw_latents.npy``) and render parameters (``latents.npy``).

Per object the render parameters are, in the published order,
``x, y, z`` position, rotation ``α, β, γ`` (Euler XYZ, radians), spotlight
angle ``θ``, object hue and spotlight hue; one background hue ends the row
(so ``D = 9 * n_objects + 1``).

Two variants, as in the original latent generator:

* **periodic** (default): positions are uniform in the box ``[-1, 1]^(3n)`` and
  the ``6n + 1`` angular variables are uniform on the unit sphere
  ``S^(6n+1) ⊂ R^(6n+2)``. ``raw_latents`` holds the box coordinates followed
  by the sphere's Cartesian coordinates (``D_raw = 9n + 2``). The render
  parameters take x, y ∈ [-3, 3], z ∈ [0, 3] and the hyperspherical angles
  of the sphere point, the first ``6n`` of them doubled from [0, π] to
  [0, 2π] and the last already in [0, 2π).
* **non-periodic** (``non_periodic=True``): all ``9n + 1`` variables are uniform
  in ``[-1, 1]``; positions are scaled by 3 and angles/hues by π/2.

The ``*_only`` flags and ``fixed_spotlight`` fix some variables to constants,
exactly as the original did — including that ``rotation_only``, ``color_only``
and ``fixed_spotlight`` have an effect only in the non-periodic variant.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ClicaError

LATENT_NAMES = ("x", "y", "z", "alpha", "beta", "gamma", "spotlight_angle",
                "object_hue", "spotlight_hue", "background_hue")


@dataclass(frozen=True)
class LatentOptions:
    n_points: int = 1000
    n_objects: int = 1
    position_only: bool = False
    rotation_and_color_only: bool = False
    rotation_only: bool = False
    color_only: bool = False
    fixed_spotlight: bool = False
    non_periodic_rotation_and_color: bool = False
    seed: int = 0

    def validate(self) -> None:
        if self.n_points < 1:
            raise ClicaError(f"--n-points must be at least 1, got {self.n_points}")
        if self.n_objects < 1:
            raise ClicaError(f"--n-objects must be at least 1, got {self.n_objects}")
        if self.position_only and self.rotation_and_color_only:
            raise ClicaError("only one of --position-only and --rotation-and-color-only can be set")
        if (self.position_only or self.rotation_and_color_only) and self.n_objects != 1:
            raise ClicaError("--position-only / --rotation-and-color-only need --n-objects 1")
        if self.non_periodic_rotation_and_color and self.n_objects != 1 and (
                self.rotation_only or self.color_only or self.fixed_spotlight):
            raise ClicaError("--rotation-only / --color-only / --fixed-spotlight need --n-objects 1")

    def ignored_flags(self) -> list[str]:
        """Flags that, as in the original, have no effect in the periodic variant."""
        if self.non_periodic_rotation_and_color:
            return []
        return [f"--{name.replace('_', '-')}" for name in ("rotation_only", "color_only", "fixed_spotlight")
                if getattr(self, name)]

    def as_dict(self) -> dict:
        return asdict(self)


def spherical_to_cartesian(phi: np.ndarray, r: float = 1.0) -> np.ndarray:
    """Hyperspherical angles ``(…, d-1)`` → Cartesian ``(…, d)``.

    ``x_1 = cos φ_1``, ``x_k = sin φ_1 ⋯ sin φ_{k-1} cos φ_k``, ``x_d = sin φ_1 ⋯ sin φ_{d-1}``.
    """
    phi = np.asarray(phi, dtype=np.float64)
    sin_prod = np.cumprod(np.concatenate([np.ones(phi.shape[:-1] + (1,)), np.sin(phi)], -1), -1)
    cos = np.concatenate([np.cos(phi), np.ones(phi.shape[:-1] + (1,))], -1)
    return r * sin_prod * cos


def cartesian_to_spherical(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cartesian ``(N, d)`` → radius ``(N,)`` and angles ``(N, d-1)``.

    ``φ_k = arccos(x_k / ‖x_k..x_d‖)`` ∈ [0, π]; the last angle is mapped to
    ``2π − φ`` where ``x_d <= 0``, so it covers [0, 2π).
    """
    x = np.asarray(x, dtype=np.float64)
    tail = np.sqrt(np.cumsum((x**2)[:, ::-1], axis=1)[:, ::-1])   # ‖x_k..x_d‖
    tail = np.where(tail == 0, 1.0, tail)
    phi = np.arccos(np.clip(x / tail, -1.0, 1.0))[:, :-1]
    last = phi[:, -1]
    phi[:, -1] = np.where(x[:, -1] <= 0, 2 * np.pi - last, last)
    return tail[:, 0], phi


def _box(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, size=(n, d))


def _sphere(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    z = rng.standard_normal(size=(n, d))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def generate_latents(options: LatentOptions) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``(raw_latents, latents)`` as float32 arrays, deterministic from ``options.seed``."""
    options.validate()
    o = options
    n, k = o.n_points, o.n_objects
    n_angular = 6 * k + 1
    n_position = 3 * k
    rng = np.random.default_rng(o.seed)

    if o.non_periodic_rotation_and_color:
        raw = _box(rng, n, n_position + n_angular)
        if o.position_only:
            raw[:, n_position:] = [-1, -0.66, -0.33, 0, 0.33, 0.66, 1]
        if o.rotation_and_color_only or o.rotation_only or o.color_only:
            raw[:, :n_position] = 0.0
        if o.rotation_only:            # additionally fix the three hues
            raw[:, -3:] = [-1.0, 0.0, 1.0]
        if o.color_only:               # additionally fix rotation and spotlight angle
            raw[:, n_position:n_position + 4] = [-1.0, -0.5, 0.5, 1.0]
        if o.fixed_spotlight:          # spotlight angle and spotlight hue
            raw[:, [-4, -2]] = 0.0
        raw = raw.astype(np.float32)
        angular = raw[:, n_position:].astype(np.float64) * (np.pi / 2)
        position = raw[:, :n_position].astype(np.float64) * 3
    else:
        raw = np.concatenate([_box(rng, n, n_position), _sphere(rng, n, n_angular + 1)], 1)
        if o.position_only:
            fixed = [np.pi / 4, np.pi / 4, np.pi / 4, np.pi / 2, np.pi / 2, 0, 1.5 * np.pi]
            raw[:, n_position:] = spherical_to_cartesian(np.array(fixed))
        if o.rotation_and_color_only:
            raw[:, :n_position] = 0.0
        raw = raw.astype(np.float32)
        angular = cartesian_to_spherical(raw[:, n_position:])[1]
        angular[:, :-1] *= 2           # [0, π] → [0, 2π]; the last angle is in [0, 2π) already
        position = raw[:, :n_position].astype(np.float64)
        position[:, 2::3] = (position[:, 2::3] + 1) / 2    # z: [-1, 1] → [0, 1]
        position *= 3

    columns = []
    for i in range(k):
        columns.append(position[:, 3 * i:3 * i + 3])
        columns.append(angular[:, 6 * i:6 * i + 6])
    columns.append(angular[:, -1:])
    latents = np.concatenate(columns, 1).astype(np.float32)
    return raw, latents


def n_objects_of(latents: np.ndarray) -> int:
    """Number of objects encoded in a latents array of width ``9 n + 1``."""
    if latents.ndim != 2 or (latents.shape[1] - 1) % 9 or latents.shape[1] < 10:
        raise ClicaError(f"latents have shape {tuple(latents.shape)}; expected (N, 9 * n_objects + 1)")
    return (latents.shape[1] - 1) // 9
