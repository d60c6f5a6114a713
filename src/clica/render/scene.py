"""The 3DIdent scene: camera, lights, ground and how latents place objects.

It follows the original Blender scene (see ``docs`` of the 3DIdent
generator): camera at (8, 0, 8) looking at the origin through a 35 mm lens on
a 50 mm sensor; a weak sun shining straight down and an area light above; a
ground plane at ``z = -max_object_size``; each object scaled by 1.5 and placed
at ``(x, y, z + max_object_size / 2)`` with Euler-XYZ rotation ``(α, β, γ)``;
one spotlight per object at ``(4 sin θ, 4 cos θ, 6 + max_object_size)`` aimed
at it, 35° cone with blend 0.1; colours from HSV — object ``(h, 1, 1)``,
spotlight ``(h, 0.8, 1)``, ground ``(h, 0.6, 1)``. Only direct light.

Everything here is plain NumPy, vectorised over a batch of latent rows; the
renderer turns the arrays into GPU data.
"""

from __future__ import annotations

import numpy as np

OBJECT_SCALE = 1.5
MAX_OBJECT_SIZE = 2.0 * OBJECT_SCALE     # every normalised mesh is 2 wide, scaled by 1.5
GROUND_Z = -MAX_OBJECT_SIZE

CAMERA_POSITION = np.array([8.0, 0.0, 8.0])
CAMERA_TARGET = np.array([0.0, 0.0, 0.0])
CAMERA_UP = np.array([0.0, 0.0, 1.0])
LENS_MM, SENSOR_MM = 35.0, 50.0
CAMERA_FOV = 2.0 * np.arctan(SENSOR_MM / 2.0 / LENS_MM)   # ≈ 71.1°, square image
NEAR, FAR = 0.5, 120.0

SPOT_RADIUS = 4.0
SPOT_HEIGHT = 6.0 + MAX_OBJECT_SIZE
SPOT_SIZE = np.deg2rad(35.0)            # full cone angle
SPOT_BLEND = 0.1

# light strengths (linear RGB units reaching a surface facing the light);
# calibrated so that the image statistics match the published release's
# (per-channel mean ≈ 0.33, std ≈ 0.078; see `clica render stats`)
SUN_DIRECTION = np.array([0.0, 0.0, -1.0])     # pointing down
SUN_STRENGTH = 0.07
AREA_POSITION = np.array([0.0, 0.0, 12.0])
AREA_STRENGTH = 0.05                            # at the ground below it
AMBIENT = 0.025
SPOT_STRENGTH = 0.55


def hsv_to_rgb(h: np.ndarray, s: float, v: float) -> np.ndarray:
    """Vectorised ``colorsys.hsv_to_rgb`` with ``h`` in [0, 1) (wraps)."""
    h = np.mod(np.asarray(h, dtype=np.float64), 1.0)
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.astype(int) % 6
    vv = np.full_like(h, v)
    pp, qq, tt = np.broadcast_to(p, h.shape), q, t
    r = np.choose(i, [vv, qq, pp, pp, tt, vv])
    g = np.choose(i, [tt, vv, vv, qq, pp, pp])
    b = np.choose(i, [pp, pp, tt, vv, vv, qq])
    return np.stack([r, g, b], -1)


def hue_color(angle: np.ndarray, s: float, v: float = 1.0) -> np.ndarray:
    """RGB of a hue given as an angle in radians (period 2π)."""
    return hsv_to_rgb(np.asarray(angle) / (2 * np.pi), s, v)


def euler_xyz(angles: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` for Blender's Euler XYZ: ``Rz(γ) Ry(β) Rx(α)``."""
    a, b, g = (angles[..., i] for i in range(3))
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    R = np.empty(angles.shape[:-1] + (3, 3))
    R[..., 0, 0] = cg * cb
    R[..., 0, 1] = cg * sb * sa - sg * ca
    R[..., 0, 2] = cg * sb * ca + sg * sa
    R[..., 1, 0] = sg * cb
    R[..., 1, 1] = sg * sb * sa + cg * ca
    R[..., 1, 2] = sg * sb * ca - cg * sa
    R[..., 2, 0] = -sb
    R[..., 2, 1] = cb * sa
    R[..., 2, 2] = cb * ca
    return R


def look_at(eye: np.ndarray, target: np.ndarray, up=CAMERA_UP) -> np.ndarray:
    """View matrices ``(..., 4, 4)`` (OpenGL convention, camera looks down −z)."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    f = target - eye
    f = f / np.linalg.norm(f, axis=-1, keepdims=True)
    up = np.broadcast_to(np.asarray(up, float), f.shape)
    s = np.cross(f, up)
    # a light straight above its target: any horizontal right vector will do
    degenerate = np.linalg.norm(s, axis=-1) < 1e-6
    if np.any(degenerate):
        s = np.where(degenerate[..., None], np.cross(f, np.array([1.0, 0.0, 0.0])), s)
    s = s / np.linalg.norm(s, axis=-1, keepdims=True)
    u = np.cross(s, f)
    M = np.zeros(f.shape[:-1] + (4, 4))
    M[..., 0, :3], M[..., 1, :3], M[..., 2, :3] = s, u, -f
    M[..., 0, 3] = -np.sum(s * eye, -1)
    M[..., 1, 3] = -np.sum(u * eye, -1)
    M[..., 2, 3] = np.sum(f * eye, -1)
    M[..., 3, 3] = 1.0
    return M


def perspective(fov: float, near: float, far: float) -> np.ndarray:
    t = 1.0 / np.tan(fov / 2)
    P = np.zeros((4, 4))
    P[0, 0] = P[1, 1] = t
    P[2, 2] = (far + near) / (near - far)
    P[2, 3] = 2 * far * near / (near - far)
    P[3, 2] = -1.0
    return P


def orthographic(half_w: np.ndarray, half_h: np.ndarray, near: np.ndarray, far: np.ndarray) -> np.ndarray:
    half_w, half_h, near, far = np.broadcast_arrays(*(np.asarray(v, float) for v in (half_w, half_h, near, far)))
    P = np.zeros(half_w.shape + (4, 4))
    P[..., 0, 0] = 1 / half_w
    P[..., 1, 1] = 1 / half_h
    P[..., 2, 2] = -2 / (far - near)
    P[..., 2, 3] = -(far + near) / (far - near)
    P[..., 3, 3] = 1.0
    return P


def camera_view_projection() -> np.ndarray:
    return perspective(CAMERA_FOV, NEAR, FAR) @ look_at(CAMERA_POSITION, CAMERA_TARGET)


def object_params(latents: np.ndarray, object_radius: float) -> dict:
    """Per-image, per-object scene parameters from latent rows ``(B, 9n+1)``.

    Returns arrays with a leading ``(B, n)``: ``model`` (4×4 world matrices),
    ``color`` (object RGB), ``spot_pos``, ``spot_dir``, ``spot_color``,
    ``spot_vp`` (the spotlight's shadow-map view-projection), plus ``ground``
    (B, 3) and ``sun_vp`` (B, 4, 4).
    """
    latents = np.asarray(latents, dtype=np.float64)
    B = latents.shape[0]
    n = (latents.shape[1] - 1) // 9
    obj = latents[:, :9 * n].reshape(B, n, 9)
    centre = obj[..., 0:3] + np.array([0.0, 0.0, MAX_OBJECT_SIZE / 2])
    R = euler_xyz(obj[..., 3:6]) * OBJECT_SCALE
    model = np.zeros((B, n, 4, 4))
    model[..., :3, :3] = R
    model[..., :3, 3] = centre
    model[..., 3, 3] = 1.0

    theta = obj[..., 6]
    spot_pos = np.stack([SPOT_RADIUS * np.sin(theta), SPOT_RADIUS * np.cos(theta),
                         np.full_like(theta, SPOT_HEIGHT)], -1)
    spot_dir = centre - spot_pos
    spot_dir /= np.linalg.norm(spot_dir, axis=-1, keepdims=True)
    # the spot's shadow map: a frustum a little wider than the cone
    spot_fov = 2 * np.arctan(np.tan(SPOT_SIZE / 2) * 1.15)
    spot_vp = perspective(spot_fov, 0.5, 60.0) @ look_at(spot_pos, centre, up=np.array([1.0, 0.0, 0.0]))

    r = object_radius * OBJECT_SCALE
    # the sun's shadow map: an orthographic box over all objects, looking down
    lo = centre[..., :2].min(1) - r - 0.05
    hi = centre[..., :2].max(1) + r + 0.05
    mid = (lo + hi) / 2
    half = (hi - lo).max(-1) / 2
    top = centre[..., 2].max(1) + r + 1.0
    eye = np.concatenate([mid, top[:, None]], -1)
    sun_view = look_at(eye, eye + SUN_DIRECTION, up=np.array([1.0, 0.0, 0.0]))
    sun_vp = orthographic(half, half, 0.01, top - GROUND_Z + 1.0) @ sun_view

    return {
        "model": model,
        "color": hue_color(obj[..., 7], 1.0),
        "spot_pos": spot_pos,
        "spot_dir": spot_dir,
        "spot_color": hue_color(obj[..., 8], 0.8),
        "spot_vp": spot_vp,
        "ground": hue_color(latents[:, -1], 0.6),
        "sun_vp": sun_vp,
    }
