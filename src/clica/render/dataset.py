"""The 3DIdent folder: writing latents, rendering images (sharded, resumable, parallel), statistics.

Folder layout (the published release's, plus small JSON side files)::

    raw_latents.npy      float32 (N, D_raw)  sampling-space latents (what matching searches)
    latents.npy          float32 (N, 9n+1)   render parameters, published order
    images/{i}.png       RGB, i zero-padded to ceil(log10(N)) digits
    latents_config.json  how the latents were sampled (flags, seed)
    render_config.json   how the images were rendered (size, shapes, materials, lights)
    stats.json           per-channel image mean/std (``clica render stats``)

Every file is written atomically (temporary name, then rename), so an
interrupted render leaves only complete images, and rerunning the same
command renders just the missing ones.
"""

from __future__ import annotations

import io
import json
import math
import multiprocessing as mp
import os
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from ..errors import ClicaError
from ..runs import FolderLock, atomic_write_bytes, atomic_write_json, check_output_folder
from .latents import LatentOptions, generate_latents, n_objects_of

RENDERER_VERSION = "clica-raster-1"
# files of a 3DIdent folder: one of them marks a folder that renders may write into
DATASET_MARKERS = ("raw_latents.npy", "latents.npy", "render_config.json")
PNG_COMPRESS_LEVEL = 1


def _write_bytes(path, data: bytes) -> None:
    """``atomic_write_bytes``; a failed write (disk full, no permission) is a one-line error."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise ClicaError(f"cannot write {path}: {exc.strerror or exc}") from None


def _write_json(path, obj) -> None:
    try:
        atomic_write_json(path, obj)
    except OSError as exc:
        raise ClicaError(f"cannot write {path}: {exc.strerror or exc}") from None


# --- names -------------------------------------------------------------------

def image_name_width(n: int) -> int:
    """Digits of the image file names of an N-image folder: ``ceil(log10(N))``."""
    return int(math.ceil(math.log10(n))) if n > 1 else 0


def image_name(index: int, n: int) -> str:
    return f"{str(int(index)).zfill(image_name_width(n))}.png"


def image_path(folder, index: int, n: int) -> Path:
    return Path(folder) / "images" / image_name(index, n)


def shard_indices(n: int, n_batches: int = 1, batch_index: int = 0) -> np.ndarray:
    """The indices shard ``batch_index`` of ``n_batches`` renders (``np.array_split``, as the original)."""
    if n_batches < 1:
        raise ClicaError(f"--n-batches must be at least 1, got {n_batches}")
    if not 0 <= batch_index < n_batches:
        raise ClicaError(f"--batch-index {batch_index} is out of range for --n-batches {n_batches} "
                         f"(valid: 0..{n_batches - 1})")
    return np.array_split(np.arange(n), n_batches)[batch_index]


# --- latents -----------------------------------------------------------------

def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r")
    except Exception as exc:
        raise ClicaError(f"{path} is not a readable .npy file: {exc}") from None


def write_latents(folder, options: LatentOptions, log=print) -> tuple[np.ndarray, np.ndarray]:
    """Sample latents and write ``raw_latents.npy`` and ``latents.npy`` into ``folder``.

    An existing folder with the very same latents is left alone; one holding
    latents of a different shape or with different values is an error (its
    images would no longer match).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ClicaError(f"--output-folder {folder} exists and is not a folder")
    check_output_folder(folder, DATASET_MARKERS, "3DIdent dataset")
    raw, latents = generate_latents(options)
    existing = [(name, arr) for name, arr in (("raw_latents.npy", raw), ("latents.npy", latents))
                if (folder / name).exists()]
    same = True
    for name, arr in existing:
        old = _load_npy(folder / name)
        if old.shape != arr.shape:
            raise ClicaError(f"{folder} already holds {name} of shape {tuple(old.shape)}, but these flags "
                             f"give {tuple(arr.shape)}; use a new --output-folder or delete the old files")
        same = same and np.array_equal(np.asarray(old), arr)
    if existing and not same:
        raise ClicaError(f"{folder} already holds different latents of the same shape (another --seed or "
                         f"other flags); use a new --output-folder or delete the old latents and images")
    if existing and len(existing) == 2:
        log(f"{folder}: the same {len(latents)} latents are already there; nothing to do")
        return raw, latents
    _write_bytes(folder / "raw_latents.npy", _npy_bytes(raw))
    _write_bytes(folder / "latents.npy", _npy_bytes(latents))
    _write_json(folder / "latents_config.json", options.as_dict())
    for flag in options.ignored_flags():
        log(f"note: {flag} has no effect without --non-periodic-rotation-and-color (as in the original)")
    log(f"wrote {folder / 'raw_latents.npy'} {raw.shape} and {folder / 'latents.npy'} {latents.shape}")
    return raw, latents


def load_render_latents(folder) -> np.ndarray:
    """``latents.npy`` of a folder, checked; a clear error when it is missing or malformed."""
    folder = Path(folder)
    path = folder / "latents.npy"
    if not path.exists():
        raise ClicaError(f"no latents in {folder} (latents.npy is missing); run "
                         f"`clica render latents --output-folder {folder}` first")
    latents = _load_npy(path)
    if latents.ndim != 2 or latents.shape[0] == 0:
        raise ClicaError(f"{path} has shape {tuple(latents.shape)}; expected (N, 9 * n_objects + 1)")
    n_objects_of(latents)
    raw_path = folder / "raw_latents.npy"
    if raw_path.exists():
        raw = _load_npy(raw_path)
        if raw.shape[0] != latents.shape[0]:
            raise ClicaError(f"{raw_path} has {raw.shape[0]} rows but {path} has {latents.shape[0]}; "
                             f"the folder is mixed up")
    if not np.all(np.isfinite(latents)):
        raise ClicaError(f"{path} contains NaN or infinite values")
    return latents


# --- images ------------------------------------------------------------------

def encode_png(image: np.ndarray, compress_level: int = PNG_COMPRESS_LEVEL) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def _existing_images(images_dir: Path, n: int) -> set[str]:
    """Names of the finished images; files named for another dataset size are an error."""
    if not images_dir.is_dir():
        return set()
    width = image_name_width(n)
    names = set()
    for entry in os.scandir(images_dir):
        name = entry.name
        if name.startswith(".") or not name.endswith(".png"):
            continue                       # temporary files of an interrupted write
        stem = name[:-4]
        if not stem.isdigit() or len(stem) != width or int(stem) >= n:
            raise ClicaError(f"{images_dir} holds {name}, which does not belong to a dataset of {n} "
                             f"images (names have {width} digits); the folder holds another dataset")
        names.add(name)
    return names


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def png_is_whole(path: Path, size: int) -> bool:
    """Cheaply, whether ``path`` is a complete ``size``×``size`` PNG: its signature, the width and
    height of its header chunk and the end chunk (a file cut short lacks it), without decoding it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
            if len(head) < 24 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
                return False
            if int.from_bytes(head[16:20], "big") != size or int.from_bytes(head[20:24], "big") != size:
                return False
            fh.seek(-len(_PNG_END), os.SEEK_END)
            return fh.read() == _PNG_END
    except OSError:
        return False


def claim_render_settings(folder: Path, config: dict, have_images: bool, stack: ExitStack) -> None:
    """Claim ``folder``'s images for these render settings, atomically, until ``stack`` closes.

    Under an exclusive claim lock: settings other than those of ``render_config.json`` are
    refused while the folder holds images or while another render runs in it (they would
    mix image sizes); then this process joins the renders with a shared lock, so more
    processes with the same settings (shards) share the work.
    """
    with FolderLock(folder, ".render-claim.lock"):  # held for the check-and-write only
        rendering = FolderLock(folder, ".render.lock", shared=True)
        _check_render_config(folder, config, have_images or not rendering.is_free())
        rendering.acquire(blocking=True)
        stack.callback(rendering.release)


def _check_render_config(folder: Path, config: dict, have_images: bool) -> None:
    path = folder / "render_config.json"
    if have_images and path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ClicaError(f"{path} is corrupt: {exc}") from None
        keys = ("image_size", "shape_names", "material_names", "spotlights")
        diff = [k for k in keys if old.get(k) != config[k]]
        if diff:
            parts = ", ".join(f"{k} {old.get(k)!r} (now {config[k]!r})" for k in diff)
            raise ClicaError(f"{folder} already holds images rendered with {parts}, or another render with "
                             f"those settings is running in it; render with the same settings, or use a new folder")
    _write_json(path, config)


# worker-process state: one renderer (one GL context) per process
_WORKER: dict = {}


def _worker_init(folder: str, settings, pooled: bool = False) -> None:
    from .renderer import Renderer

    if pooled:   # Ctrl-C is the parent's to handle; it terminates the pool
        import signal

        from . import renderer

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        renderer.IN_RENDER_WORKER = True

    # An initializer that raises makes multiprocessing.Pool respawn workers forever:
    # keep the error and raise it from the first task instead.
    try:
        _WORKER["folder"] = Path(folder)
        _WORKER["latents"] = np.load(Path(folder) / "latents.npy", mmap_mode="r")
        _WORKER["renderer"] = Renderer(settings)
    except Exception as exc:
        if not pooled:
            raise
        _WORKER["error"] = exc if isinstance(exc, ClicaError) else ClicaError(f"a render worker failed: {exc}")


def _worker_render(indices: np.ndarray) -> tuple[int, str]:
    if "error" in _WORKER:
        raise _WORKER["error"]
    folder, latents, renderer = _WORKER["folder"], _WORKER["latents"], _WORKER["renderer"]
    n = latents.shape[0]
    # image i always goes to atlas slot i % capacity: bit-identical whatever the shard or batch
    images = renderer.render(np.asarray(latents[indices]), slots=indices % renderer.capacity)
    for index, image in zip(indices, images):
        _write_bytes(image_path(folder, index, n), encode_png(image))
    return len(indices), renderer.renderer_name


def _remove_stale_temporaries(images_dir: Path, older_than_s: float = 3600.0) -> int:
    """Delete temporary files of writes interrupted long ago (a killed render leaves a few)."""
    removed = 0
    if not images_dir.is_dir():
        return 0
    now = time.time()
    for entry in os.scandir(images_dir):
        if entry.name.startswith(".") and entry.name.endswith(".tmp"):
            try:
                if now - entry.stat().st_mtime > older_than_s:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                pass
    return removed


def _pool_context():
    # fork is cheap; but a process that already holds a GL context must not be forked
    from . import renderer

    if renderer.CONTEXTS_CREATED or "fork" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    return mp.get_context("fork")


def render_images(folder, n_batches: int = 1, batch_index: int = 0, image_size: int = 224,
                  shape_names=None, material_names=None, spotlights: bool = True,
                  use_gpu: bool = False, workers: int = 1, batch_size: int | None = None,
                  seed: int | None = None, progress: bool = True) -> dict:
    """Render the images of shard ``batch_index`` of ``n_batches``, skipping those already there.

    Returns ``{"rendered", "skipped", "seconds", "images_per_s", "renderer"}``.
    """
    from ..progress import Progress
    from .renderer import RenderSettings

    folder = Path(folder)
    latents = load_render_latents(folder)
    n = latents.shape[0]
    indices = shard_indices(n, n_batches, batch_index)
    settings = RenderSettings.make(image_size=image_size, n_objects=n_objects_of(latents),
                                   shape_names=shape_names, material_names=material_names,
                                   spotlights=spotlights, use_gpu=use_gpu, batch_size=batch_size)
    if workers < 1:
        raise ClicaError(f"--workers must be at least 1, got {workers}")
    images_dir = folder / "images"
    if images_dir.exists() and not images_dir.is_dir():
        raise ClicaError(f"{images_dir} exists and is not a folder")
    existing = _existing_images(images_dir, n)
    config = {"image_size": settings.image_size, "shape_names": list(settings.shape_names),
              "material_names": list(settings.material_names), "spotlights": settings.spotlights,
              "renderer": RENDERER_VERSION, "use_gpu": settings.use_gpu, "seed": seed}
    with ExitStack() as stack:  # the settings stay claimed while this process renders
        claim_render_settings(folder, config, bool(existing), stack)
        try:
            images_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ClicaError(f"cannot create {images_dir}: {exc.strerror or exc}") from None
        _remove_stale_temporaries(images_dir)

        mine = {image_name(i, n) for i in indices} & existing
        damaged = {name for name in mine if not png_is_whole(images_dir / name, settings.image_size)}
        if damaged:
            print(f"note: {len(damaged)} image(s) on disk are cut short or not {settings.image_size}px PNGs "
                  f"(e.g. {min(damaged)}); rendering them again")
            existing = existing - damaged
        todo = np.array([i for i in indices if image_name(i, n) not in existing], dtype=np.int64)
        skipped = len(indices) - len(todo)
        result = {"rendered": 0, "skipped": skipped, "redone": len(damaged), "seconds": 0.0, "images_per_s": 0.0,
                  "renderer": None}
        if len(todo) == 0:
            return result
        from .renderer import atlas_capacity, slot_batches

        capacity = atlas_capacity(settings.image_size, settings.n_objects)
        chunks = [todo[b] for b in slot_batches(todo % capacity, capacity, settings.batch_size)]
        t0 = time.perf_counter()
        bar = Progress(len(indices), desc=f"render {settings.image_size}px", initial=skipped, unit="img",
                       enabled=progress)
        with bar:
            if workers == 1 or len(chunks) == 1:
                _worker_init(str(folder), settings)
                try:
                    for c in chunks:
                        k, result["renderer"] = _worker_render(c)
                        bar.update(k)
                finally:
                    _WORKER.pop("renderer").release()
            else:
                ctx = _pool_context()
                with ctx.Pool(min(workers, len(chunks)), initializer=_worker_init,
                              initargs=(str(folder), settings, True)) as pool:
                    for k, result["renderer"] in pool.imap_unordered(_worker_render, chunks):
                        bar.update(k)
        result["seconds"] = time.perf_counter() - t0
        result["rendered"] = len(todo)
        result["images_per_s"] = len(todo) / max(result["seconds"], 1e-9)
        return result


# --- statistics --------------------------------------------------------------

def compute_stats(folder, progress: bool = True) -> dict:
    """Per-channel image mean and std, as the original ``get_mean_std.py``.

    Both are averages over images of the per-image channel mean and
    (unbiased) per-image channel std, in [0, 1] pixel units. Written to
    ``stats.json`` in the folder, where the 3DIdent loader finds them.
    """
    from PIL import Image

    from ..progress import Progress

    folder = Path(folder)
    latents = load_render_latents(folder)
    n = latents.shape[0]
    existing = _existing_images(folder / "images", n)
    if len(existing) < n:
        raise ClicaError(f"{folder} has {len(existing)} of {n} images; render the rest first "
                         f"(`clica render images --output-folder {folder}`)")
    mean = np.zeros(3)
    std = np.zeros(3)
    with Progress(n, desc="stats", unit="img", enabled=progress) as bar:
        for i in range(n):
            path = image_path(folder, i, n)
            try:
                with Image.open(path) as im:
                    x = np.asarray(im.convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255.0
            except Exception as exc:
                raise ClicaError(f"cannot read {path}: {exc}") from None
            mean += x.mean(0)
            std += x.std(0, ddof=1)
            bar.update(1)
    stats = {"mean": (mean / n).tolist(), "std": (std / n).tolist(), "n_images": n,
             "method": "average over images of per-image channel mean and std (get_mean_std.py)"}
    _write_json(folder / "stats.json", stats)
    return stats


# --- one call for tests and experiments -------------------------------------

def _stats_are_current(folder: Path, n: int) -> bool:
    try:
        return json.loads((folder / "stats.json").read_text()).get("n_images") == n
    except (OSError, ValueError, AttributeError):
        return False


def make_dataset(folder, n_points: int, image_size: int = 64, seed: int = 0, n_objects: int = 1,
                 non_periodic_rotation_and_color: bool = False, position_only: bool = False,
                 rotation_and_color_only: bool = False, rotation_only: bool = False,
                 color_only: bool = False, fixed_spotlight: bool = False, shape_names=None,
                 material_names=None, spotlights: bool = True, workers: int = 1,
                 stats: bool = True, progress: bool = False, use_gpu: bool = False,
                 batch_size: int | None = None, log=None) -> Path:
    """Write a complete 3DIdent-format dataset into ``folder`` and return its path.

    Latents (as ``clica render latents``, deterministic from ``seed``), all
    ``n_points`` images at ``image_size`` and, with ``stats``, ``stats.json``;
    ``clica render dataset`` is this function. Rerunning with the same
    arguments resumes (renders only the missing images) or does nothing.
    ``log`` receives the progress lines (default: ``print`` with ``progress``).
    """
    if log is None:
        log = print if progress else (lambda *a: None)
    folder = Path(folder)
    options = LatentOptions(n_points=n_points, n_objects=n_objects, position_only=position_only,
                            rotation_and_color_only=rotation_and_color_only, rotation_only=rotation_only,
                            color_only=color_only, fixed_spotlight=fixed_spotlight,
                            non_periodic_rotation_and_color=non_periodic_rotation_and_color, seed=seed)
    write_latents(folder, options, log=log)
    r = render_images(folder, image_size=image_size, shape_names=shape_names, material_names=material_names,
                      spotlights=spotlights, use_gpu=use_gpu, workers=workers, batch_size=batch_size,
                      seed=seed, progress=progress)
    if r["rendered"]:
        log(f"rendered {r['rendered']} images in {r['seconds']:.1f} s ({r['images_per_s']:.1f} images/s), "
            f"skipped {r['skipped']} already there; OpenGL renderer: {r['renderer']}")
        if use_gpu and "llvmpipe" in str(r["renderer"]).lower():
            log("note: --use-gpu found no GPU EGL device; the images were rendered on the CPU")
    else:
        log(f"all {r['skipped']} images are already there")
    if stats:
        if r["rendered"] or not _stats_are_current(folder, n_points):
            s = compute_stats(folder, progress=progress)
            log(f"wrote {folder / 'stats.json'}: mean [{', '.join(f'{v:.4f}' for v in s['mean'])}], "
                f"std [{', '.join(f'{v:.4f}' for v in s['std'])}]")
        else:
            log(f"{folder / 'stats.json'} is up to date")
    return folder
