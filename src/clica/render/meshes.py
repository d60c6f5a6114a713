"""Object meshes of the 3DIdent scene: teapot (default), cube, sphere, cylinder, capsule.

Every mesh is centred on its bounding-box centre and scaled so that its largest
bounding-box side is 2 (the convention of the CLEVR shapes the original scene
appended); the scene then scales it by 1.5, so every object's largest extent is
3 — the ``max_object_size`` that places the ground plane and the objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import ClicaError
from .teapot import teapot_mesh

SHAPE_NAMES = ("Teapot", "Cube", "Sphere", "Cylinder", "Capsule")


@dataclass(frozen=True)
class Mesh:
    positions: np.ndarray   # (V, 3) float32
    normals: np.ndarray     # (V, 3) float32
    triangles: np.ndarray   # (T, 3) int32

    @property
    def radius(self) -> float:
        """Bounding-sphere radius about the origin (the mesh's centre)."""
        return float(np.linalg.norm(self.positions, axis=1).max())

    def interleaved(self) -> np.ndarray:
        """Per-triangle-corner vertex data ``(T*3, 6)``: position, normal."""
        idx = self.triangles.ravel()
        return np.concatenate([self.positions[idx], self.normals[idx]], 1).astype("f4")


def canonical_shape_name(name: str) -> str:
    """``"teapot"``/``"ShapeTeapot"`` → ``"Teapot"``; unknown names are a user error."""
    key = name.lower().removeprefix("shape")
    for shape in SHAPE_NAMES:
        if shape.lower() == key:
            return shape
    raise ClicaError(f"unknown shape name {name!r}; choose from {', '.join(SHAPE_NAMES)}")


def _normalise(positions: np.ndarray, normals: np.ndarray, triangles: np.ndarray) -> Mesh:
    lo, hi = positions.min(0), positions.max(0)
    positions = (positions - (lo + hi) / 2) * (2.0 / (hi - lo).max())
    return Mesh(positions.astype("f4"), normals.astype("f4"), triangles.astype("i4"))


def _cube() -> tuple:
    pos, nrm, tri = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            n = np.zeros(3)
            n[axis] = sign
            u, v = np.eye(3)[(axis + 1) % 3], np.eye(3)[(axis + 2) % 3]
            base = len(pos)
            for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                pos.append(n + a * u + b * v)
                nrm.append(n)
            quad = [[0, 1, 2], [0, 2, 3]] if sign > 0 else [[0, 2, 1], [0, 3, 2]]
            tri += [[base + i for i in t] for t in quad]
    return np.array(pos), np.array(nrm), np.array(tri)


def _sphere(n_lat: int = 16, n_lon: int = 32) -> tuple:
    th = np.linspace(0, np.pi, n_lat + 1)
    ph = np.linspace(0, 2 * np.pi, n_lon + 1)
    T, P = np.meshgrid(th, ph, indexing="ij")
    pos = np.stack([np.sin(T) * np.cos(P), np.sin(T) * np.sin(P), np.cos(T)], -1).reshape(-1, 3)
    g = np.arange(pos.shape[0]).reshape(n_lat + 1, n_lon + 1)
    a, b, c, d = g[:-1, :-1].ravel(), g[1:, :-1].ravel(), g[1:, 1:].ravel(), g[:-1, 1:].ravel()
    tri = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    e1, e2 = pos[tri[:, 1]] - pos[tri[:, 0]], pos[tri[:, 2]] - pos[tri[:, 0]]
    tri = tri[np.linalg.norm(np.cross(e1, e2), axis=1) > 1e-10]
    return pos, pos.copy(), tri


def _cylinder(n: int = 32) -> tuple:
    ph = np.linspace(0, 2 * np.pi, n + 1)[:-1]
    ring = np.stack([np.cos(ph), np.sin(ph)], 1)
    pos, nrm, tri = [], [], []
    # side
    for z in (-1.0, 1.0):
        for (x, y) in ring:
            pos.append((x, y, z))
            nrm.append((x, y, 0.0))
    for i in range(n):
        j = (i + 1) % n
        tri += [[i, j, n + j], [i, n + j, n + i]]
    # caps
    for z in (-1.0, 1.0):
        centre = len(pos)
        pos.append((0.0, 0.0, z))
        nrm.append((0.0, 0.0, z))
        for (x, y) in ring:
            pos.append((x, y, z))
            nrm.append((0.0, 0.0, z))
        for i in range(n):
            j = (i + 1) % n
            tri.append([centre, centre + 1 + i, centre + 1 + j] if z > 0
                       else [centre, centre + 1 + j, centre + 1 + i])
    return np.array(pos), np.array(nrm), np.array(tri)


def _capsule(n_cap: int = 8, n_lon: int = 32) -> tuple:
    """An upright capsule: a cylinder of radius 1/2 and height 1 between two hemispheres (height 2 in all)."""
    cap = np.linspace(0, np.pi / 2, n_cap + 1)              # top pole to equator, then equator to bottom pole
    t = np.concatenate([cap, cap + np.pi / 2])
    shift = np.repeat([0.5, -0.5], n_cap + 1)               # the hemispheres' centres; the side joins them
    ph = np.linspace(0, 2 * np.pi, n_lon + 1)
    T, P = np.meshgrid(t, ph, indexing="ij")
    nrm = np.stack([np.sin(T) * np.cos(P), np.sin(T) * np.sin(P), np.cos(T)], -1).reshape(-1, 3)
    pos = nrm * 0.5
    pos[:, 2] += np.repeat(shift, ph.size)
    g = np.arange(pos.shape[0]).reshape(t.size, ph.size)
    a, b, c, d = g[:-1, :-1].ravel(), g[1:, :-1].ravel(), g[1:, 1:].ravel(), g[:-1, 1:].ravel()
    tri = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    e1, e2 = pos[tri[:, 1]] - pos[tri[:, 0]], pos[tri[:, 2]] - pos[tri[:, 0]]
    tri = tri[np.linalg.norm(np.cross(e1, e2), axis=1) > 1e-10]
    return pos, nrm, tri


@lru_cache(maxsize=None)
def shape_mesh(name: str, resolution: int = 8) -> Mesh:
    """The normalised mesh of a shape (``resolution``: teapot patch subdivisions)."""
    name = canonical_shape_name(name)
    if name == "Teapot":
        return _normalise(*teapot_mesh(resolution))
    if name == "Cube":
        return _normalise(*_cube())
    if name == "Sphere":
        return _normalise(*_sphere())
    if name == "Capsule":
        return _normalise(*_capsule())
    return _normalise(*_cylinder())
