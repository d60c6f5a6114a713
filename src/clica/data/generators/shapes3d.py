"""3D Shapes on the published factor grid, rendered headless, written as a 3dshapes-format ``.h5``.

These follow the published factor grid and file layout but are not the published images: the scene
(a floor, a back wall, one object, a camera orbiting it) is clica's own, rasterised with OpenGL through
the renderer's EGL context and meshes (:mod:`clica.render`), with Lambert shading and no shadows.

Layout, as published: ``images`` uint8 ``(N, 64, 64, 3)`` and ``labels`` float64 ``(N, 6)`` holding the
factor values (floor_hue, wall_hue, object_hue, scale, shape, orientation), row-major (orientation
fastest). Values: each hue 0, 0.1, ..., 0.9; scale linspace(0.75, 1.25, 8); shape 0-3 (cube, cylinder,
sphere, capsule); orientation linspace(−30, 30, 15), the camera's azimuth in degrees.

Why it is fast: with Lambert shading a pixel's linear colour is a sum over the three surfaces of
(coverage × shading) times that surface's albedo. So only the 480 geometries (scale × shape ×
orientation) are rendered, each to three per-surface weight maps (4× multisampled, resolved in linear
light); every hue combination is then a 3 × 3 colour matrix applied to them and an sRGB lookup table.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...extras import need
from ...runs import atomic_path
from ..registry import SHAPES3D_VALUES, SPECS
from .grid import FactorGrid, SubGrid

FILE_NAME = SPECS["shapes3d"].files[0]   # the published name, as the loader looks for it
SHAPES = ("Cube", "Cylinder", "Sphere", "Capsule")
# the published factor names and label values: the ones the loader maps back to class indices
GRID = FactorGrid("3D Shapes", SPECS["shapes3d"].factor_names, SHAPES3D_VALUES)
SIZE = 64
SATURATION, VALUE = 0.85, 1.0       # HSV of every surface, the hue from its factor
OBJECT_SIZE = 1.5                   # the object's largest extent at scale 1 (the room's units)
WALL_X = -2.5                       # the back wall: the plane x = WALL_X, facing the camera
CAMERA_DISTANCE, CAMERA_ELEVATION, CAMERA_FOV = 5.2, math.radians(22.0), math.radians(42.0)
TARGET = np.array([0.0, 0.0, 0.6])
LIGHT = np.array([0.55, 0.35, 0.76]) / np.linalg.norm([0.55, 0.35, 0.76])
AMBIENT, DIFFUSE = 0.28, 0.75

_VS = """
#version 330
in vec3 in_pos;
in vec3 in_nrm;
uniform mat4 u_mvp;        // objects are only scaled and lifted: normals stay as they are
out vec3 v_nrm;
void main() { v_nrm = in_nrm; gl_Position = u_mvp * vec4(in_pos, 1.0); }
"""
_FS = """
#version 330
in vec3 v_nrm;
uniform vec3 u_light;
uniform vec3 u_surface;     // (1,0,0) floor, (0,1,0) wall, (0,0,1) object
out vec4 f_weight;
void main() {
    vec3 n = normalize(gl_FrontFacing ? v_nrm : -v_nrm);
    f_weight = vec4(u_surface * ({ambient} + {diffuse} * max(dot(n, u_light), 0.0)), 1.0);
}
"""


def camera(azimuth_deg: float) -> np.ndarray:
    """The camera's view-projection matrix at ``azimuth_deg`` around the object."""
    from ...render.scene import look_at, perspective

    a = math.radians(azimuth_deg)
    eye = TARGET + CAMERA_DISTANCE * np.array([math.cos(a) * math.cos(CAMERA_ELEVATION),
                                               math.sin(a) * math.cos(CAMERA_ELEVATION), math.sin(CAMERA_ELEVATION)])
    return perspective(CAMERA_FOV, 0.1, 50.0) @ look_at(eye, TARGET)


class WeightRenderer:
    """Renders the per-surface weight maps ``(64, 64, 3)`` (floor, wall, object) of one geometry."""

    def __init__(self):
        from ...render.meshes import shape_mesh
        from ...render.renderer import create_context

        self.ctx = ctx = create_context()
        fs = _FS.replace("{ambient}", f"{AMBIENT:.6f}").replace("{diffuse}", f"{DIFFUSE:.6f}")
        self.prog = ctx.program(vertex_shader=_VS, fragment_shader=fs)
        self.prog["u_light"].value = tuple(LIGHT)
        big = 20.0
        floor = _quad([[-big, -big, 0], [big, -big, 0], [big, big, 0], [-big, big, 0]], [0, 0, 1])
        wall = _quad([[WALL_X, -big, 0], [WALL_X, big, 0], [WALL_X, big, big], [WALL_X, -big, big]], [1, 0, 0])
        self.room = [(self._vao(*floor), (1.0, 0.0, 0.0), np.eye(4)), (self._vao(*wall), (0.0, 1.0, 0.0), np.eye(4))]
        self.meshes = []
        for name in SHAPES:
            m = shape_mesh(name)
            self.meshes.append((self._vao(m.positions, m.normals, m.triangles), float(-m.positions[:, 2].min())))
        self.msaa = ctx.framebuffer(color_attachments=[ctx.renderbuffer((SIZE, SIZE), 4, samples=4, dtype="f4")],
                                    depth_attachment=ctx.depth_renderbuffer((SIZE, SIZE), samples=4))
        self.resolved = ctx.framebuffer(color_attachments=[ctx.renderbuffer((SIZE, SIZE), 4, dtype="f4")])

    def _vao(self, positions, normals, triangles):
        ctx = self.ctx
        vbo = ctx.buffer(np.concatenate([positions, normals], 1).astype("f4").tobytes())
        ibo = ctx.buffer(np.asarray(triangles, dtype="i4").tobytes())
        return ctx.vertex_array(self.prog, [(vbo, "3f 3f", "in_pos", "in_nrm")], index_buffer=ibo)

    def render(self, scale: float, shape: int, azimuth_deg: float) -> np.ndarray:
        vp = camera(azimuth_deg)
        vao, lift = self.meshes[shape]
        k = OBJECT_SIZE * scale / 2                    # meshes are 2 wide in their largest extent
        model = np.diag([k, k, k, 1.0])
        model[2, 3] = lift * k                         # resting on the floor
        self.msaa.use()
        self.msaa.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.ctx.enable(self.ctx.DEPTH_TEST)
        for v, surface, m in self.room + [(vao, (0.0, 0.0, 1.0), model)]:
            self.prog["u_mvp"].write((vp @ m).T.astype("f4").tobytes())
            self.prog["u_surface"].value = surface
            v.render()
        self.ctx.copy_framebuffer(self.resolved, self.msaa)
        raw = self.resolved.read(components=4, dtype="f4")
        return np.frombuffer(raw, dtype=np.float32).reshape(SIZE, SIZE, 4)[::-1, :, :3]

    def release(self) -> None:
        self.ctx.release()


def _quad(corners, normal):
    positions = np.array(corners, dtype=np.float64)
    return positions, np.tile(np.array(normal, dtype=np.float64), (4, 1)), np.array([[0, 1, 2], [0, 2, 3]])


def _srgb_table(n: int = 16384) -> np.ndarray:
    """uint8 sRGB of linear values ``i / (n − 1)``."""
    c = np.linspace(0.0, 1.0, n)
    s = np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)
    return np.round(s * 255).astype(np.uint8)


def albedo(hue: np.ndarray) -> np.ndarray:
    from ...render.scene import hsv_to_rgb

    return hsv_to_rgb(np.asarray(hue), SATURATION, VALUE).astype(np.float32)


def blocks(sub: SubGrid):
    """The images of ``sub`` in row-major order, one block of all kept geometries per hue triple."""
    kf, kw, ko, kz, ks, ka = sub.kept
    r = WeightRenderer()
    try:
        weights = np.stack([r.render(GRID.values[3][z], int(s), GRID.values[5][a])
                            for z in kz for s in ks for a in ka])          # (G, 64, 64, 3), row-major
    finally:
        r.release()
    table = _srgb_table()
    top = len(table) - 1
    hues = GRID.values[0]
    for f in kf:
        for w in kw:
            base = weights[..., :1] * albedo(hues[f]) + weights[..., 1:2] * albedo(hues[w])
            for o in ko:
                linear = base + weights[..., 2:3] * albedo(hues[o])
                yield table[(np.clip(linear, 0.0, 1.0) * top + 0.5).astype(np.int32)]


def write_h5(path: str | Path, sub: SubGrid, progress=None, compression: int = 4) -> None:
    """Write ``sub`` as a 3dshapes-format ``.h5`` (``images``, ``labels``), streaming, atomically.

    ``compression`` is the gzip level of ``images``, in chunks of 16 images (small chunks keep random
    reads of single images fast); 0 writes them uncompressed and contiguous, which a loader can memory-map.
    """
    h5py = need("h5py")
    n = len(sub)
    layout = {"chunks": (min(n, 16), SIZE, SIZE, 3), "compression": "gzip", "compression_opts": compression} \
        if compression else {}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as fh:
            images = fh.create_dataset("images", (n, SIZE, SIZE, 3), dtype=np.uint8, **layout)
            fh.create_dataset("labels", data=sub.values())
            start = 0
            for block in blocks(sub):
                images[start:start + len(block)] = block
                start += len(block)
                if progress is not None:
                    progress.update(len(block))
