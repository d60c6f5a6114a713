"""The Newell (Utah) teapot, tessellated from its 32 bicubic Bézier patches.

The patch data is Martin Newell's public-domain teapot (1975) in its compact
form: 127 control points and 10 base patches. Rim, body, lid and bottom are
given for one quadrant and mirrored across both the x = 0 and y = 0 planes;
the handle and spout are given for one half and mirrored across y = 0 only.
That yields the usual 32 patches. Coordinates are z-up, the pot standing on
z = 0 with the spout towards +x.
"""

from __future__ import annotations

import numpy as np

# 127 control points (x, y, z), flattened.
_CONTROL_POINTS = np.array([
    0.2, 0, 2.7, 0.2, -0.112, 2.7, 0.112, -0.2, 2.7, 0, -0.2, 2.7,
    1.3375, 0, 2.53125, 1.3375, -0.749, 2.53125, 0.749, -1.3375, 2.53125, 0, -1.3375, 2.53125,
    1.4375, 0, 2.53125, 1.4375, -0.805, 2.53125, 0.805, -1.4375, 2.53125, 0, -1.4375, 2.53125,
    1.5, 0, 2.4, 1.5, -0.84, 2.4, 0.84, -1.5, 2.4, 0, -1.5, 2.4,
    1.75, 0, 1.875, 1.75, -0.98, 1.875, 0.98, -1.75, 1.875, 0, -1.75, 1.875,
    2, 0, 1.35, 2, -1.12, 1.35, 1.12, -2, 1.35, 0, -2, 1.35,
    2, 0, 0.9, 2, -1.12, 0.9, 1.12, -2, 0.9, 0, -2, 0.9,
    -2, 0, 0.9,
    2, 0, 0.45, 2, -1.12, 0.45, 1.12, -2, 0.45, 0, -2, 0.45,
    1.5, 0, 0.225, 1.5, -0.84, 0.225, 0.84, -1.5, 0.225, 0, -1.5, 0.225,
    1.5, 0, 0.15, 1.5, -0.84, 0.15, 0.84, -1.5, 0.15, 0, -1.5, 0.15,
    -1.6, 0, 2.025, -1.6, -0.3, 2.025, -1.5, -0.3, 2.25, -1.5, 0, 2.25,
    -2.3, 0, 2.025, -2.3, -0.3, 2.025, -2.5, -0.3, 2.25, -2.5, 0, 2.25,
    -2.7, 0, 2.025, -2.7, -0.3, 2.025, -3, -0.3, 2.25, -3, 0, 2.25,
    -2.7, 0, 1.8, -2.7, -0.3, 1.8, -3, -0.3, 1.8, -3, 0, 1.8,
    -2.7, 0, 1.575, -2.7, -0.3, 1.575, -3, -0.3, 1.35, -3, 0, 1.35,
    -2.5, 0, 1.125, -2.5, -0.3, 1.125, -2.65, -0.3, 0.9375, -2.65, 0, 0.9375,
    -2, -0.3, 0.9, -1.9, -0.3, 0.6, -1.9, 0, 0.6,
    1.7, 0, 1.425, 1.7, -0.66, 1.425, 1.7, -0.66, 0.6, 1.7, 0, 0.6,
    2.6, 0, 1.425, 2.6, -0.66, 1.425, 3.1, -0.66, 0.825, 3.1, 0, 0.825,
    2.3, 0, 2.1, 2.3, -0.25, 2.1, 2.4, -0.25, 2.025, 2.4, 0, 2.025,
    2.7, 0, 2.4, 2.7, -0.25, 2.4, 3.3, -0.25, 2.4, 3.3, 0, 2.4,
    2.8, 0, 2.475, 2.8, -0.25, 2.475, 3.525, -0.25, 2.49375, 3.525, 0, 2.49375,
    2.9, 0, 2.475, 2.9, -0.15, 2.475, 3.45, -0.15, 2.5125, 3.45, 0, 2.5125,
    2.8, 0, 2.4, 2.8, -0.15, 2.4, 3.2, -0.15, 2.4, 3.2, 0, 2.4,
    0, 0, 3.15, 0.8, 0, 3.15, 0.8, -0.45, 3.15, 0.45, -0.8, 3.15, 0, -0.8, 3.15,
    0, 0, 2.85,
    1.4, 0, 2.4, 1.4, -0.784, 2.4, 0.784, -1.4, 2.4, 0, -1.4, 2.4,
    0.4, 0, 2.55, 0.4, -0.224, 2.55, 0.224, -0.4, 2.55, 0, -0.4, 2.55,
    1.3, 0, 2.55, 1.3, -0.728, 2.55, 0.728, -1.3, 2.55, 0, -1.3, 2.55,
    1.3, 0, 2.4, 1.3, -0.728, 2.4, 0.728, -1.3, 2.4, 0, -1.3, 2.4,
    0, 0, 0, 1.425, -0.798, 0, 1.5, 0, 0.075, 1.425, 0, 0,
    0.798, -1.425, 0, 0, -1.5, 0.075, 0, -1.425, 0, 1.5, -0.84, 0.075, 0.84, -1.5, 0.075,
], dtype=np.float64).reshape(127, 3)

# (indices of the 4x4 control points, mirrored across x = 0 as well as y = 0)
_PATCHES = [
    ("102 103 104 105 4 5 6 7 8 9 10 11 12 13 14 15", True),         # rim
    ("12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27", True),       # body, upper
    ("24 25 26 27 29 30 31 32 33 34 35 36 37 38 39 40", True),       # body, lower
    ("96 96 96 96 97 98 99 100 101 101 101 101 0 1 2 3", True),      # lid, knob
    ("0 1 2 3 106 107 108 109 110 111 112 113 114 115 116 117", True),  # lid
    ("118 118 118 118 124 122 119 121 123 126 125 120 40 39 38 37", True),  # bottom
    ("41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56", False),      # handle, upper
    ("53 54 55 56 57 58 59 60 61 62 63 64 28 65 66 67", False),      # handle, lower
    ("68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83", False),      # spout, base
    ("80 81 82 83 84 85 86 87 88 89 90 91 92 93 94 95", False),      # spout, tip
]


def patches() -> np.ndarray:
    """The 32 Bézier patches as an array (32, 4, 4, 3) of control points."""
    out = []
    for indices, both in _PATCHES:
        base = _CONTROL_POINTS[np.array(indices.split(), dtype=int)].reshape(4, 4, 3)
        mirrors = [(1, 1), (1, -1)] + ([(-1, 1), (-1, -1)] if both else [])
        for sx, sy in mirrors:
            out.append(base * np.array([sx, sy, 1.0]))
    return np.stack(out)


def _bernstein(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cubic Bernstein basis (k, 4) and its derivative at parameters ``t``."""
    s = 1.0 - t
    b = np.stack([s**3, 3 * t * s**2, 3 * t**2 * s, t**3], axis=1)
    db = np.stack([-3 * s**2, 3 * s**2 - 6 * t * s, 6 * t * s - 3 * t**2, 3 * t**2], axis=1)
    return b, db


def teapot_mesh(resolution: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangulate the teapot: ``(positions (V,3), normals (V,3), triangles (T,3))``.

    Each patch is evaluated on a ``(resolution+1)²`` grid; normals come from the
    patch derivatives (at collapsed patch edges, from a point just inside).
    Triangle winding follows ``dP/du × dP/dv``, the direction of the normals,
    so shading can flip both together for back faces (mirrored patches have
    the opposite orientation; the renderer lights both sides).
    """
    k = int(resolution)
    t = np.linspace(0.0, 1.0, k + 1)
    b, db = _bernstein(t)
    eps = 1e-3
    b_in, db_in = _bernstein(np.clip(t, eps, 1 - eps))
    P = patches()                                                    # (32,4,4,3)
    pos = np.einsum("ui,vj,pijc->puvc", b, b, P)
    du = np.einsum("ui,vj,pijc->puvc", db, b, P)
    dv = np.einsum("ui,vj,pijc->puvc", b, db, P)
    n = np.cross(du, dv)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    # degenerate points (a patch edge collapsed to a point): evaluate just inside
    du_in = np.einsum("ui,vj,pijc->puvc", db_in, b_in, P)
    dv_in = np.einsum("ui,vj,pijc->puvc", b_in, db_in, P)
    n_in = np.cross(du_in, dv_in)
    bad = norm[..., 0] < 1e-6
    n = np.where(bad[..., None], n_in, n)
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)

    n_patches = P.shape[0]
    grid = np.arange((k + 1) * (k + 1)).reshape(k + 1, k + 1)
    a, bb = grid[:-1, :-1].ravel(), grid[1:, :-1].ravel()
    c, d = grid[1:, 1:].ravel(), grid[:-1, 1:].ravel()
    quad = np.concatenate([np.stack([a, bb, c], 1), np.stack([a, c, d], 1)])
    offsets = (np.arange(n_patches) * (k + 1) ** 2)[:, None, None]
    tris = (quad[None] + offsets).reshape(-1, 3)
    positions = pos.reshape(-1, 3)
    normals = n.reshape(-1, 3)
    # drop triangles of zero area (collapsed patch edges)
    e1 = positions[tris[:, 1]] - positions[tris[:, 0]]
    e2 = positions[tris[:, 2]] - positions[tris[:, 0]]
    area = np.linalg.norm(np.cross(e1, e2), axis=1)
    tris = tris[area > 1e-10]
    return positions, normals, tris
