"""A fast batched rasteriser for the 3DIdent scene (OpenGL 3.3 through ``moderngl``).

One :class:`Renderer` owns one headless GL context (EGL; Mesa's llvmpipe on a
CPU, the GPU's EGL with ``use_gpu=True``) and renders a *batch* of latent rows
per call into a tiled atlas: every image of the batch is one tile of a single
framebuffer, so a batch costs a handful of draw calls and one pixel read-back.

Per batch:

1. **shadow maps** — a depth atlas with one tile per (image, light): the sun
   (orthographic, looking straight down over the objects) and, per object, its
   spotlight (perspective, aimed at the object). Objects are the only casters.
2. **ground** — one screen-sized quad per tile; the fragment shader intersects
   the camera ray with the ground plane analytically.
3. **objects** — instanced over the batch, depth-tested, 4× multisampled.

Shading (both sides of every surface): Lambert plus a material-dependent
Blinn–Phong highlight, from a weak downward sun (shadowed), an area light
above (unshadowed, inverse-square), a faint ambient term and the spotlights
(35° cone, Blender's smoothstep blend, constant falloff, shadowed with 4-tap
PCF). Output is sRGB-encoded 8-bit RGB. Latent rows go through
:func:`clica.render.scene.object_params`, so the scene geometry is defined in
one place.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from ..errors import ClicaError
from ..extras import need
from . import scene
from .meshes import canonical_shape_name, shape_mesh

MATERIALS = {
    # name: (diffuse weight, specular weight, shininess, specular tinted by albedo)
    "Rubber": (1.0, 0.04, 12.0, 0.0),
    "MyMetal": (0.45, 0.9, 48.0, 1.0),
    "Crystal": (0.7, 0.6, 96.0, 0.0),
}


def canonical_material_name(name: str) -> str:
    for m in MATERIALS:
        if m.lower() == name.lower() or (m == "MyMetal" and name.lower() == "metal"):
            return m
    raise ClicaError(f"unknown material name {name!r}; choose from {', '.join(MATERIALS)}")


_COMMON = """
#version 330
#define N_OBJ {n_obj}
#define N_LIGHTS {n_lights}
#define PCF_TAPS {pcf_taps}
#define DATA_W {data_w}
layout(std140) uniform SceneData { vec4 u_d[{data_len}]; };
vec4 D(int img, int t) { return u_d[img * DATA_W + t]; }
mat4 M4(int img, int t) { return mat4(D(img, t), D(img, t + 1), D(img, t + 2), D(img, t + 3)); }
int OBJ(int k) { return 5 + 12 * k; }
"""

_TILE_VS = """
uniform ivec2 u_grid;      // atlas columns, rows
uniform float u_tile;      // tile size in pixels
vec4 to_tile(vec4 clip, int tile, out vec4 bounds) {
    int col = tile % u_grid.x;
    int row = u_grid.y - 1 - tile / u_grid.x;
    vec2 atlas = vec2(u_grid) * u_tile;
    vec2 s = vec2(u_tile) / atlas;
    vec2 o = 2.0 * vec2(col, row) * u_tile / atlas + s - 1.0;
    bounds = vec4(vec2(col, row) * u_tile, vec2(col + 1, row + 1) * u_tile);
    return vec4(clip.xy * s + o * clip.w, clip.zw);
}
"""

_SHADOW_VS = """
in vec3 in_pos;
uniform int u_obj;
flat out vec4 v_bounds;
void main() {
    int img = gl_InstanceID / N_LIGHTS;
    int light = gl_InstanceID % N_LIGHTS;
    mat4 vp = light == 0 ? M4(img, 1) : M4(img, OBJ(light - 1) + 8);
    vec4 clip = vp * M4(img, OBJ(u_obj)) * vec4(in_pos, 1.0);
    gl_Position = to_tile(clip, img * N_LIGHTS + light, v_bounds);
}
"""

_SHADOW_FS = """
flat in vec4 v_bounds;
void main() {
    if (gl_FragCoord.x < v_bounds.x || gl_FragCoord.y < v_bounds.y ||
        gl_FragCoord.x > v_bounds.z || gl_FragCoord.y > v_bounds.w) discard;
}
"""

_OBJECT_VS = """
in vec3 in_pos;
in vec3 in_nrm;
uniform int u_obj;
uniform mat4 u_vp;
out vec3 v_world;
out vec3 v_nrm;
flat out int v_img;
flat out vec4 v_bounds;
void main() {
    int img = gl_InstanceID;
    mat4 model = M4(img, OBJ(u_obj));
    vec4 world = model * vec4(in_pos, 1.0);
    v_world = world.xyz;
    v_nrm = mat3(model) * in_nrm;      // rotation times a uniform scale
    v_img = img;
    gl_Position = to_tile(u_vp * world, img, v_bounds);
}
"""

_GROUND_VS = """
in vec2 in_corner;
out vec2 v_ndc;
flat out int v_img;
flat out vec4 v_bounds;
void main() {
    v_ndc = in_corner;
    v_img = gl_InstanceID;
    gl_Position = to_tile(vec4(in_corner, 0.0, 1.0), gl_InstanceID, v_bounds);
}
"""

_SHADE_FS = """
uniform sampler2DShadow u_shadow;
uniform ivec2 u_shadow_grid;   // shadow atlas columns, rows
uniform float u_shadow_tile;   // shadow map size in pixels
uniform vec3 u_eye;
uniform vec4 u_material[N_OBJ + 1];   // last: the ground
uniform float u_spots_on;
const vec3 SUN_L = vec3(0.0, 0.0, 1.0);
const float SUN = {sun};
const vec3 AREA_POS = vec3({area_x}, {area_y}, {area_z});
const float AREA = {area};
const float AREA_H2 = {area_h2};
const float AMBIENT = {ambient};
const float SPOT = {spot};
const float SPOT_COS = {spot_cos};
const float SPOT_SMOOTH = {spot_smooth};

float shadow(int img, int light, mat4 vp, vec3 P, vec3 N) {
    vec4 c = vp * vec4(P + N * {normal_offset}, 1.0);
    vec3 ndc = c.xyz / c.w;
    if (abs(ndc.x) >= 1.0 || abs(ndc.y) >= 1.0 || ndc.z >= 1.0) return 1.0;
    int tile = img * N_LIGHTS + light;
    vec2 origin = vec2(tile % u_shadow_grid.x, u_shadow_grid.y - 1 - tile / u_shadow_grid.x) * u_shadow_tile;
    vec2 atlas = vec2(u_shadow_grid) * u_shadow_tile;
    vec2 px = origin + (ndc.xy * 0.5 + 0.5) * u_shadow_tile;
    float d = ndc.z * 0.5 + 0.5 - {bias};
#if PCF_TAPS == 4
    float s = 0.0;
    for (int i = 0; i < 4; i++) {
        vec2 off = vec2((i & 1) == 0 ? -0.75 : 0.75, i < 2 ? -0.75 : 0.75);
        vec2 q = clamp(px + off, origin + 0.5, origin + u_shadow_tile - 0.5);
        s += texture(u_shadow, vec3(q / atlas, d));
    }
    return s * 0.25;
#else
    vec2 q = clamp(px, origin + 0.5, origin + u_shadow_tile - 0.5);
    return texture(u_shadow, vec3(q / atlas, d));
#endif
}

vec3 brdf(vec3 N, vec3 L, vec3 V, vec3 albedo, vec4 m) {
    float ndl = max(dot(N, L), 0.0);
    vec3 c = ndl * albedo * m.x;
    if (m.y > 0.0 && ndl > 0.0) {
        vec3 H = normalize(L + V);
        c += m.y * pow(max(dot(N, H), 0.0), m.z) * mix(vec3(1.0), albedo, m.w);
    }
    return c;
}

vec3 shade(int img, vec3 P, vec3 N, vec3 albedo, vec4 m) {
    vec3 V = normalize(u_eye - P);
    vec3 col = AMBIENT * albedo * m.x;
    col += SUN * brdf(N, SUN_L, V, albedo, m) * shadow(img, 0, M4(img, 1), P, N);
    vec3 A = AREA_POS - P;
    float a2 = dot(A, A);
    col += AREA * AREA_H2 / a2 * brdf(N, A * inversesqrt(a2), V, albedo, m);
    if (u_spots_on > 0.5) {
        for (int k = 0; k < N_OBJ; k++) {
            int b = OBJ(k);
            vec3 S = D(img, b + 5).xyz - P;
            vec3 L = normalize(S);
            float t = dot(-L, D(img, b + 6).xyz) - SPOT_COS;
            if (t <= 0.0) continue;
            float mask = t < SPOT_SMOOTH ? smoothstep(0.0, SPOT_SMOOTH, t) : 1.0;
            float sh = shadow(img, k + 1, M4(img, b + 8), P, N);
            col += SPOT * mask * sh * D(img, b + 7).rgb * brdf(N, L, V, albedo, m);
        }
    }
    return col;
}

vec3 srgb(vec3 c) {
    c = clamp(c, 0.0, 1.0);
    return mix(c * 12.92, 1.055 * pow(c, vec3(1.0 / 2.4)) - 0.055, step(0.0031308, c));
}
"""

_OBJECT_FS = """
in vec3 v_world;
in vec3 v_nrm;
flat in int v_img;
flat in vec4 v_bounds;
uniform int u_obj;
out vec4 f_color;
void main() {
    if (gl_FragCoord.x < v_bounds.x || gl_FragCoord.y < v_bounds.y ||
        gl_FragCoord.x > v_bounds.z || gl_FragCoord.y > v_bounds.w) discard;
    vec3 N = normalize(gl_FrontFacing ? v_nrm : -v_nrm);
    vec3 albedo = D(v_img, OBJ(u_obj) + 4).rgb;
    f_color = vec4(srgb(shade(v_img, v_world, N, albedo, u_material[u_obj])), 1.0);
}
"""

_GROUND_FS = """
in vec2 v_ndc;
flat in int v_img;
flat in vec4 v_bounds;
uniform vec3 u_fwd;
uniform vec3 u_right;
uniform vec3 u_up;
uniform float u_tan;
out vec4 f_color;
void main() {
    vec3 dir = normalize(u_fwd + u_tan * (v_ndc.x * u_right + v_ndc.y * u_up));
    float t = ({ground_z} - u_eye.z) / min(dir.z, -1e-4);
    vec3 P = u_eye + t * dir;
    vec3 albedo = D(v_img, 0).rgb;
    f_color = vec4(srgb(shade(v_img, P, vec3(0.0, 0.0, 1.0), albedo, u_material[N_OBJ])), 1.0);
}
"""


def _fill(source: str, **values) -> str:
    """Substitute ``{name}`` placeholders (GLSL braces are left alone)."""
    for key, value in values.items():
        source = source.replace("{" + key + "}", str(value))
    return source


def slot_batches(slots: np.ndarray, capacity: int, max_len: int | None = None) -> list[np.ndarray]:
    """Split positions ``0..len(slots)-1`` into batches whose slots are distinct (in order)."""
    batches, current, used = [], [], set()
    limit = max_len or capacity
    for pos, slot in enumerate(np.asarray(slots).tolist()):
        if slot in used or len(current) >= limit:
            batches.append(np.array(current, dtype=np.int64))
            current, used = [], set()
        current.append(pos)
        used.add(slot)
    if current:
        batches.append(np.array(current, dtype=np.int64))
    return batches


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return cols, math.ceil(n / cols)


def default_batch_size(image_size: int) -> int:
    """Images per batch: keeps the atlas around 1000 pixels wide."""
    return int(max(1, min(64, (1024 // image_size) ** 2)))


def atlas_capacity(image_size: int, n_objects: int = 1) -> int:
    """Tiles in the atlas: the most images one draw renders (and the number of *slots*).

    The tile an image is drawn in shifts float rounding in rasterisation by a
    hair, so bit-identical datasets need each image in a fixed slot: the
    dataset writer renders image ``i`` in slot ``i % atlas_capacity``.
    """
    max_batch = max(1, 4000 // (5 + 12 * n_objects))       # 64 KiB of uniform data
    return min(default_batch_size(image_size), max_batch)


@dataclass(frozen=True)
class RenderSettings:
    image_size: int = 224
    n_objects: int = 1
    shape_names: tuple[str, ...] = ("Teapot",)
    material_names: tuple[str, ...] = ("Rubber",)
    spotlights: bool = True
    use_gpu: bool = False
    batch_size: int | None = None
    samples: int = 4
    tessellation: int | None = None     # teapot patch subdivisions; None: by image size

    @classmethod
    def make(cls, image_size=224, n_objects=1, shape_names=None, material_names=None,
             spotlights=True, use_gpu=False, batch_size=None, samples=4) -> "RenderSettings":
        """Validated settings; a single shape/material name applies to every object."""
        if image_size < 8 or image_size > 4096:
            raise ClicaError(f"--image-size must be between 8 and 4096, got {image_size}")
        shapes = [canonical_shape_name(s) for s in (shape_names or ["Teapot"])]
        materials = [canonical_material_name(m) for m in (material_names or ["Rubber"])]
        for what, names in (("--shape-names", shapes), ("--material-names", materials)):
            if len(names) not in (1, n_objects):
                raise ClicaError(f"{what} has {len(names)} names but the latents describe "
                                 f"{n_objects} object(s); give 1 or {n_objects}")
        if len(shapes) == 1:
            shapes = shapes * n_objects
        if len(materials) == 1:
            materials = materials * n_objects
        if batch_size is not None and batch_size < 1:
            raise ClicaError(f"batch size must be positive, got {batch_size}")
        return cls(int(image_size), int(n_objects), tuple(shapes), tuple(materials),
                   bool(spotlights), bool(use_gpu), batch_size, int(samples))


CONTEXTS_CREATED = 0   # GL contexts made in this process (a process with one must not fork)
IN_RENDER_WORKER = False   # set in the dataset writer's worker processes


def _load_tritons_llvm_first() -> None:
    """Import ``triton`` (when installed) before Mesa loads its own LLVM.

    llvmpipe links LLVM; triton (pulled in by ``import torchvision``) bundles
    another copy. Loaded in the order Mesa → triton, the two collide and the
    process segfaults on the later ``import torchvision``; in the order
    triton → Mesa both work. Costs ~0.3 s once; skipped in render workers,
    which never import torchvision.
    """
    import importlib.util
    import sys

    if IN_RENDER_WORKER or "triton" in sys.modules:
        return
    try:
        if importlib.util.find_spec("triton") is not None:
            import triton  # noqa: F401
    except Exception:  # a broken triton install is not the renderer's business
        pass


def create_context(use_gpu: bool = False):
    """A headless OpenGL 3.3+ context through EGL.

    Without ``use_gpu`` Mesa's software rasteriser is requested (identical
    images on every machine); with it the default EGL device (a GPU where one
    is present). Failure is a :class:`ClicaError`.
    """
    moderngl = need("moderngl")
    _load_tritons_llvm_first()
    if not use_gpu:
        os.environ.setdefault("LIBGL_ALWAYS_SOFTWARE", "1")
        os.environ.setdefault("LP_NUM_THREADS", "0")     # rasterise in the calling thread
    global CONTEXTS_CREATED
    try:
        ctx = moderngl.create_context(standalone=True, backend="egl", require=330)
        CONTEXTS_CREATED += 1
        return ctx
    except Exception as exc:  # no EGL, no GL 3.3
        raise ClicaError(f"cannot create a headless OpenGL context through EGL: {exc}") from None


class Renderer:
    """Renders batches of 3DIdent latent rows to ``uint8`` RGB images."""

    def __init__(self, settings: RenderSettings, ctx=None):
        self.settings = s = settings
        self.size = s.image_size
        n = s.n_objects
        # The atlas layout depends on the image size only, never on the batch size asked for.
        self.capacity = atlas_capacity(s.image_size, n)
        self.batch_size = min(s.batch_size or self.capacity, self.capacity)
        self.ctx = ctx or create_context(s.use_gpu)
        ctx = self.ctx
        self.renderer_name = ctx.info.get("GL_RENDERER", "?")
        n = s.n_objects
        self.n_lights = 1 + n     # sun, then one spotlight per object (drawn black when off)
        resolution = s.tessellation or (3 if s.image_size <= 96 else 6)
        meshes = [shape_mesh(name, resolution) for name in s.shape_names]
        self.object_radius = max(m.radius for m in meshes)

        self.data_width = 5 + 12 * n
        fmt = dict(n_obj=n, n_lights=self.n_lights, data_w=self.data_width,
                   data_len=self.data_width * self.capacity, pcf_taps=1)
        common = _fill(_COMMON, **fmt)
        consts = dict(
            sun=scene.SUN_STRENGTH, area=scene.AREA_STRENGTH, ambient=scene.AMBIENT,
            area_x=scene.AREA_POSITION[0], area_y=scene.AREA_POSITION[1], area_z=scene.AREA_POSITION[2],
            area_h2=(scene.AREA_POSITION[2] - scene.GROUND_Z) ** 2, spot=scene.SPOT_STRENGTH,
            spot_cos=math.cos(scene.SPOT_SIZE / 2),
            spot_smooth=(1 - math.cos(scene.SPOT_SIZE / 2)) * scene.SPOT_BLEND,
            normal_offset=0.03, bias=0.0015, ground_z=scene.GROUND_Z,
        )
        consts = {k: (f"{v:.8f}" if isinstance(v, float) else str(v)) for k, v in consts.items()}
        shade = _fill(_SHADE_FS, **consts)
        self.shadow_prog = ctx.program(vertex_shader=common + _TILE_VS + _SHADOW_VS,
                                       fragment_shader=common + _SHADOW_FS)
        self.object_prog = ctx.program(vertex_shader=common + _TILE_VS + _OBJECT_VS,
                                       fragment_shader=common + shade + _OBJECT_FS)
        self.ground_prog = ctx.program(vertex_shader=common + _TILE_VS + _GROUND_VS,
                                       fragment_shader=common + shade + _fill(_GROUND_FS, **consts))

        self.vaos = []
        for mesh in meshes:
            vbo = ctx.buffer(np.concatenate([mesh.positions, mesh.normals], 1).astype("f4").tobytes())
            ibo = ctx.buffer(mesh.triangles.astype("i4").tobytes())
            self.vaos.append((
                ctx.vertex_array(self.shadow_prog, [(vbo, "3f 12x", "in_pos")], index_buffer=ibo),
                ctx.vertex_array(self.object_prog, [(vbo, "3f 3f", "in_pos", "in_nrm")], index_buffer=ibo),
            ))
        quad = np.array([-1, -1, 1, -1, 1, 1, -1, -1, 1, 1, -1, 1], dtype="f4")
        self.ground_vao = ctx.vertex_array(self.ground_prog, [(ctx.buffer(quad.tobytes()), "2f", "in_corner")])

        # per-image scene data: a uniform buffer, one block of vec4s per image
        self.data = ctx.buffer(reserve=self.data_width * self.capacity * 16)
        for prog in (self.shadow_prog, self.object_prog, self.ground_prog):
            prog["SceneData"].binding = 0

        # shadow atlas
        self.shadow_tile = int(min(1024, max(128, 2 * s.image_size)))  # one shadow map's size in pixels
        self.shadow_grid = _grid(self.capacity * self.n_lights)        # its columns, rows: one per image and light
        self.shadow_tex = ctx.depth_texture((self.shadow_grid[0] * self.shadow_tile,
                                             self.shadow_grid[1] * self.shadow_tile))
        self.shadow_tex.compare_func = "<="
        self.shadow_tex.repeat_x = self.shadow_tex.repeat_y = False
        self.shadow_fbo = ctx.framebuffer(depth_attachment=self.shadow_tex)

        # colour atlas (multisampled) and its resolve target
        self.grid = _grid(self.capacity)
        W, H = self.grid[0] * self.size, self.grid[1] * self.size
        self.atlas_size = (W, H)
        samples = min(s.samples, ctx.max_samples) if s.samples > 1 else 0
        self.msaa_fbo = ctx.framebuffer(
            color_attachments=[ctx.renderbuffer((W, H), 4, samples=samples)],
            depth_attachment=ctx.depth_renderbuffer((W, H), samples=samples))
        self.resolve_fbo = ctx.framebuffer(color_attachments=[ctx.renderbuffer((W, H), 4)]) \
            if samples else self.msaa_fbo

        vp = scene.camera_view_projection()
        view = scene.look_at(scene.CAMERA_POSITION, scene.CAMERA_TARGET)
        fwd = -view[2, :3]
        uniforms = {
            "object": {"u_vp": tuple(vp.T.ravel()), "u_grid": self.grid, "u_tile": float(self.size)},
            "ground": {"u_grid": self.grid, "u_tile": float(self.size), "u_fwd": tuple(fwd),
                       "u_right": tuple(view[0, :3]), "u_up": tuple(view[1, :3]),
                       "u_tan": math.tan(scene.CAMERA_FOV / 2)},
            "shadow": {"u_grid": self.shadow_grid, "u_tile": float(self.shadow_tile)},
        }
        # the ground: rubber without the faint highlight (it is seen at grazing angles only)
        materials = [MATERIALS[m] for m in s.material_names] + [(1.0, 0.0, 1.0, 0.0)]
        for name, prog in (("object", self.object_prog), ("ground", self.ground_prog)):
            uniforms[name].update({"u_shadow_grid": self.shadow_grid, "u_shadow_tile": float(self.shadow_tile),
                                   "u_eye": tuple(scene.CAMERA_POSITION),
                                   "u_spots_on": 1.0 if s.spotlights else 0.0})
            prog["u_material"].write(np.array(materials, dtype="f4").tobytes())
        for name, prog in (("object", self.object_prog), ("ground", self.ground_prog),
                           ("shadow", self.shadow_prog)):
            for key, value in uniforms[name].items():
                if key in prog:
                    prog[key].value = value
            if "u_shadow" in prog:
                prog["u_shadow"].value = 1

    # ------------------------------------------------------------------
    def _pack(self, latents: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Scene data rows, one per slot; unused slots stay zero (objects collapse to a point)."""
        p = scene.object_params(latents, self.object_radius)
        n = self.settings.n_objects
        out = np.zeros((self.capacity, self.data_width, 4), dtype="f4")
        out[slots, 0, :3] = p["ground"]
        out[slots, 1:5] = p["sun_vp"].transpose(0, 2, 1)
        for k in range(n):
            b = 5 + 12 * k
            out[slots, b:b + 4] = p["model"][:, k].transpose(0, 2, 1)
            out[slots, b + 4, :3] = p["color"][:, k]
            out[slots, b + 5, :3] = p["spot_pos"][:, k]
            out[slots, b + 6, :3] = p["spot_dir"][:, k]
            out[slots, b + 7, :3] = p["spot_color"][:, k]
            out[slots, b + 8:b + 12] = p["spot_vp"][:, k].transpose(0, 2, 1)
        return out

    def render(self, latents: np.ndarray, slots=None) -> np.ndarray:
        """Render latent rows ``(N, 9n+1)`` → ``uint8`` array ``(N, size, size, 3)``.

        ``slots`` (optional, distinct within each batch of ``capacity``) pins
        each row to an atlas tile; by default rows fill tiles in order. Equal
        latents in equal slots give bit-identical images.
        """
        latents = np.asarray(latents, dtype=np.float64)
        if latents.ndim == 1:
            latents = latents[None]
        expected = 9 * self.settings.n_objects + 1
        if latents.ndim != 2 or latents.shape[1] != expected:
            raise ClicaError(f"latents have shape {latents.shape}; this renderer expects (N, {expected})")
        out = np.empty((latents.shape[0], self.size, self.size, 3), dtype=np.uint8)
        if slots is None:
            for start in range(0, latents.shape[0], self.batch_size):
                chunk = latents[start:start + self.batch_size]
                out[start:start + len(chunk)] = self._render_batch(chunk, np.arange(len(chunk)))
            return out
        slots = np.asarray(slots, dtype=np.int64)
        if slots.shape != (latents.shape[0],) or slots.min(initial=0) < 0 or slots.max(initial=0) >= self.capacity:
            raise ValueError(f"slots must be {latents.shape[0]} integers in [0, {self.capacity})")
        for chunk in slot_batches(slots, self.capacity):
            out[chunk] = self._render_batch(latents[chunk], slots[chunk])
        return out

    def _render_batch(self, latents: np.ndarray, slots: np.ndarray) -> np.ndarray:
        ctx = self.ctx
        B = int(slots.max()) + 1                   # tiles drawn: up to the last slot in use
        self.data.write(self._pack(latents, slots).tobytes())
        self.data.bind_to_uniform_block(0)

        # 1. shadow maps
        self.shadow_fbo.use()
        self.shadow_fbo.clear(depth=1.0)
        ctx.enable(ctx.DEPTH_TEST)
        ctx.disable(ctx.CULL_FACE)
        for k, (shadow_vao, _) in enumerate(self.vaos):
            self.shadow_prog["u_obj"].value = k
            shadow_vao.render(instances=B * self.n_lights)

        # 2. ground, 3. objects
        self.msaa_fbo.use()
        self.msaa_fbo.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
        self.shadow_tex.use(1)
        ctx.disable(ctx.DEPTH_TEST)
        self.ground_vao.render(instances=B)
        ctx.enable(ctx.DEPTH_TEST)
        for k, (_, object_vao) in enumerate(self.vaos):
            self.object_prog["u_obj"].value = k
            object_vao.render(instances=B)
        if self.resolve_fbo is not self.msaa_fbo:
            ctx.copy_framebuffer(self.resolve_fbo, self.msaa_fbo)

        W, H = self.atlas_size
        cols = self.grid[0]
        S = self.size
        used_rows = math.ceil(B / cols)            # read only the rows of tiles in use
        y0 = H - used_rows * S
        raw = self.resolve_fbo.read(viewport=(0, y0, W, used_rows * S), components=3, alignment=1)
        atlas = np.frombuffer(raw, dtype=np.uint8).reshape(used_rows * S, W, 3)[::-1]
        tiles = atlas.reshape(used_rows, S, cols, S, 3).transpose(0, 2, 1, 3, 4).reshape(-1, S, S, 3)
        return tiles[slots]

    def release(self) -> None:
        self.ctx.release()
