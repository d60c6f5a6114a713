"""The 3DIdent folder: published layout, shards, resuming a killed render, clear errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clica.cli import main
from clica.errors import ClicaError
from clica.render import (
    LatentOptions,
    compute_stats,
    image_name_width,
    make_dataset,
    render_images,
    shard_indices,
    write_latents,
)

SIZE = 32


def quiet(*args, **kwargs):
    pass


@pytest.mark.parametrize("n, width, first, last", [(1, 0, "0.png", "0.png"), (10, 1, "0.png", "9.png"),
                                                   (12, 2, "00.png", "11.png"), (100, 2, "00.png", "99.png"),
                                                   (101, 3, "000.png", "100.png")])
def test_image_name_width(n, width, first, last):
    from clica.render import image_name

    assert image_name_width(n) == width
    assert image_name(0, n) == first and image_name(n - 1, n) == last


def test_make_dataset_has_the_published_layout(tmp_path):
    folder = make_dataset(tmp_path / "ds", 12, image_size=SIZE, seed=3)
    raw, lat = np.load(folder / "raw_latents.npy"), np.load(folder / "latents.npy")
    assert raw.shape == (12, 11) and lat.shape == (12, 10)
    assert raw.dtype == np.float32 and lat.dtype == np.float32
    names = sorted(os.listdir(folder / "images"))
    assert names == [f"{i:02d}.png" for i in range(12)]
    with Image.open(folder / "images" / "07.png") as im:
        assert im.mode == "RGB" and im.size == (SIZE, SIZE)
    stats = __import__("json").loads((folder / "stats.json").read_text())
    assert len(stats["mean"]) == 3 and 0.05 < min(stats["std"]) < max(stats["std"]) < 0.5
    # the same latents as `clica render latents --seed 3`
    from clica.render import generate_latents

    assert np.array_equal(lat, generate_latents(LatentOptions(n_points=12, seed=3))[1])
    # and the project's 3DIdent loader opens it like the published release
    threedident = pytest.importorskip("clica.data.threedident")
    opened = threedident.ThreeDIdentFolder.open(folder)
    assert len(opened) == 12 and opened.image_shape() == (SIZE, SIZE)
    # rerunning does nothing
    t = time.perf_counter()
    make_dataset(tmp_path / "ds", 12, image_size=SIZE, seed=3, stats=False)
    assert time.perf_counter() - t < 5


def test_shards_cover_every_index_once(tmp_path):
    for n, k in ((10, 3), (7, 7), (5, 8), (1000, 16)):
        parts = [shard_indices(n, k, i) for i in range(k)]
        assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))
    folder = tmp_path / "ds"
    write_latents(folder, LatentOptions(n_points=11, seed=0), log=quiet)
    counts = []
    for i in range(3):
        r = render_images(folder, n_batches=3, batch_index=i, image_size=SIZE, progress=False)
        counts.append(r["rendered"])
    assert counts == [4, 4, 3]
    assert sorted(os.listdir(folder / "images")) == [f"{i:02d}.png" for i in range(11)]
    # images do not depend on which shard (or batch) rendered them
    whole = tmp_path / "whole"
    write_latents(whole, LatentOptions(n_points=11, seed=0), log=quiet)
    render_images(whole, image_size=SIZE, progress=False, batch_size=5)
    for name in ("00.png", "05.png", "10.png"):
        assert np.array_equal(np.asarray(Image.open(folder / "images" / name)),
                              np.asarray(Image.open(whole / "images" / name)))


def test_killed_render_resumes_to_a_complete_dataset(tmp_path):
    folder = tmp_path / "ds"
    n = 400
    write_latents(folder, LatentOptions(n_points=n, seed=1), log=quiet)
    cmd = [sys.executable, "-m", "clica.cli", "render", "images", "--output-folder", str(folder),
           "--image-size", "16", "--batch-size", "4"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    images = folder / "images"
    deadline = time.time() + 180                # start-up can be slow on a busy machine
    while time.time() < deadline and proc.poll() is None:
        if images.is_dir() and len(os.listdir(images)) >= 8:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert images.is_dir(), "the render did not start in time"
    done = [p for p in images.iterdir() if p.suffix == ".png" and not p.name.startswith(".")]
    assert 0 < len(done) < n, "the render finished before it could be killed"
    for p in done:                       # every image left behind is complete
        with Image.open(p) as im:
            im.load()
    result = render_images(folder, image_size=16, progress=False)
    assert result["skipped"] == len(done) and result["rendered"] == n - len(done)
    assert sum(1 for p in images.iterdir() if p.suffix == ".png" and not p.name.startswith(".")) == n
    compute_stats(folder, progress=False)


def test_parallel_workers_match_one_worker(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for f in (a, b):
        write_latents(f, LatentOptions(n_points=20, seed=5), log=quiet)
    render_images(a, image_size=SIZE, workers=1, progress=False)
    render_images(b, image_size=SIZE, workers=2, batch_size=4, progress=False)
    for i in (0, 9, 19):
        name = f"{i:02d}.png"
        assert np.array_equal(np.asarray(Image.open(a / "images" / name)),
                              np.asarray(Image.open(b / "images" / name)))


def run_cli(capsys, *argv):
    code = main(["render", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_round_trip_and_errors(tmp_path, capsys):
    folder = str(tmp_path / "ds")
    code, _, err = run_cli(capsys, "images", "--output-folder", folder)
    assert code == 2 and "latents.npy is missing" in err and len(err.strip().splitlines()) == 1

    assert run_cli(capsys, "latents", "--n-points", "6", "--output-folder", folder, "--seed", "1")[0] == 0
    code, _, err = run_cli(capsys, "latents", "--n-points", "7", "--output-folder", folder)
    assert code == 2 and "shape" in err
    code, _, err = run_cli(capsys, "latents", "--n-points", "6", "--output-folder", folder, "--seed", "2")
    assert code == 2 and "different latents" in err
    assert run_cli(capsys, "latents", "--n-points", "6", "--output-folder", folder, "--seed", "1")[0] == 0

    for argv, needle in ((["--n-batches", "2", "--batch-index", "2"], "out of range"),
                         (["--n-batches", "0"], "at least 1"),
                         (["--shape-names", "Banana"], "unknown shape"),
                         (["--material-names", "Glass"], "unknown material"),
                         (["--shape-names", "Cube", "Sphere"], "1 object")):
        code, _, err = run_cli(capsys, "images", "--output-folder", folder, "--image-size", "16", *argv)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, (argv, err)

    code, out, _ = run_cli(capsys, "images", "--output-folder", folder, "--image-size", "16")
    assert code == 0 and "rendered 6" in out
    code, _, err = run_cli(capsys, "images", "--output-folder", folder, "--image-size", "24")
    assert code == 2 and "image_size 16" in err
    code, out, _ = run_cli(capsys, "stats", "--output-folder", folder)
    assert code == 0 and (Path(folder) / "stats.json").exists()

    grid, sweep = tmp_path / "grid.png", tmp_path / "sweep.png"
    code, _, _ = run_cli(capsys, "preview", "--grid", str(grid), "--from-folder", folder, "--n", "4",
                         "--sweep", str(sweep), "--steps", "3", "--image-size", "24")
    assert code == 0 and grid.stat().st_size > 0 and sweep.stat().st_size > 0
    code, _, err = run_cli(capsys, "preview")
    assert code == 2 and "--grid" in err


def test_stats_needs_all_images(tmp_path):
    folder = tmp_path / "ds"
    write_latents(folder, LatentOptions(n_points=4), log=quiet)
    with pytest.raises(ClicaError, match="0 of 4 images"):
        compute_stats(folder, progress=False)


def test_foreign_images_are_refused(tmp_path):
    folder = tmp_path / "ds"
    write_latents(folder, LatentOptions(n_points=12), log=quiet)
    (folder / "images").mkdir()
    (folder / "images" / "5.png").write_bytes(b"")          # unpadded: another dataset's name
    with pytest.raises(ClicaError, match="another dataset"):
        render_images(folder, image_size=SIZE, progress=False)


def test_failed_writes_are_one_line_errors(tmp_path, monkeypatch, capsys):
    import clica.render.dataset as dataset

    folder = tmp_path / "ds"
    write_latents(folder, LatentOptions(n_points=3), log=quiet)

    def disk_full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dataset, "atomic_write_bytes", disk_full)
    with pytest.raises(ClicaError, match="No space left on device"):
        render_images(folder, image_size=16, progress=False)
    assert run_cli(capsys, "latents", "--n-points", "3", "--output-folder", str(tmp_path / "other"))[0] == 2
    assert main(["render"]) == 2


def test_cli_dataset_in_one_go_resumes_and_refuses_other_latents(tmp_path, capsys):
    folder = tmp_path / "ds"
    argv = ["dataset", "--n-points", "8", "--image-size", "16", "--output-folder", str(folder), "--seed", "1"]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and "rendered 8 images" in out and "dataset ready" in out
    from clica.render import generate_latents

    assert np.array_equal(np.load(folder / "latents.npy"), generate_latents(LatentOptions(n_points=8, seed=1))[1])
    assert sorted(os.listdir(folder / "images")) == [f"{i}.png" for i in range(8)]
    stats = __import__("json").loads((folder / "stats.json").read_text())
    assert stats["n_images"] == 8
    # the same images as `latents` + `images` + `stats`
    other = tmp_path / "other"
    assert run_cli(capsys, "latents", "--n-points", "8", "--output-folder", str(other), "--seed", "1")[0] == 0
    assert run_cli(capsys, "images", "--output-folder", str(other), "--image-size", "16")[0] == 0
    for i in (0, 7):
        assert np.array_equal(np.asarray(Image.open(folder / "images" / f"{i}.png")),
                              np.asarray(Image.open(other / "images" / f"{i}.png")))

    # an interrupted dataset: three images and the stats missing; rerunning finishes it
    for i in (1, 4, 6):
        (folder / "images" / f"{i}.png").unlink()
    (folder / "stats.json").unlink()
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and "rendered 3 images" in out and "skipped 5" in out
    assert len(os.listdir(folder / "images")) == 8
    assert __import__("json").loads((folder / "stats.json").read_text()) == stats
    # a complete dataset: nothing to do
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and "all 8 images are already there" in out and "up to date" in out
    # other flags in the same folder are a one-line error
    for extra, needle in ((["--seed", "2"], "different latents"), (["--image-size", "24"], "image_size 16")):
        code, _, err = run_cli(capsys, *argv, *extra)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_sweep_labels_each_render_with_its_value_and_zooms_on_rotations(tmp_path, monkeypatch):
    import clica.render.preview as preview

    seen = {}

    def capture(images, path, **kwargs):
        seen.update(kwargs, images=images)
        return path

    monkeypatch.setattr(preview, "save_grid", capture)
    preview.write_sweep(tmp_path / "s.png", image_size=16, steps=3, zoom=3)
    labels, rows, images = seen["cell_labels"], seen["row_labels"], seen["images"]
    assert images.shape == (30, 16, 16, 3) and len(labels) == 30
    assert labels[0:3] == ["-3.0", "0.0", "3.0"]                  # x, scene units
    assert labels[6:9] == ["0.0", "1.5", "3.0"]                   # z
    assert labels[9:12] == ["0°", "120°", "240°"]                 # alpha, degrees (periodic: no 360°)
    assert labels[27:30] == ["0°", "120°", "240°"]                # background hue
    assert rows[0] == "x (scene units)" and rows[3] == "alpha (°)\nzoom ×3" and rows[9] == "background_hue (°)"
    assert "zoom" not in rows[6]                                   # spotlight angle: the whole scene
    # the zoomed rows are crops of larger renders, centred on the object
    row, col = preview.object_pixel(preview.BASE_LATENT, 48)
    assert 0 < row < 48 and 0 < col < 48
    from clica.render import render_latents_to_images

    big = render_latents_to_images(preview.BASE_LATENT[None], image_size=48)
    assert np.array_equal(images[9], preview.crop_around(big, row, col, 16)[0])


def test_a_render_with_other_settings_is_refused_while_one_runs(tmp_path):
    # two renders started 0.5 s apart, at 128 and 32 px, both used to succeed and mix sizes
    from clica.errors import ClicaError
    from clica.runs import FolderLock

    folder = tmp_path / "ds"
    write_latents(folder, LatentOptions(n_points=4, seed=0), log=quiet)
    running = FolderLock(folder, ".render.lock", shared=True)
    (folder / "render_config.json").write_text(json.dumps(
        {"image_size": 128, "shape_names": ["Teapot"], "material_names": ["Rubber"], "spotlights": True}))
    assert running.acquire()  # a render at 128 px is running and has no image on disk yet
    try:
        with pytest.raises(ClicaError, match="another render with those settings is running"):
            render_images(folder, image_size=SIZE, progress=False)
        assert json.loads((folder / "render_config.json").read_text())["image_size"] == 128
    finally:
        running.release()
    # once it is gone (and left no image), other settings may claim the folder
    assert render_images(folder, image_size=SIZE, progress=False)["rendered"] == 4
    assert json.loads((folder / "render_config.json").read_text())["image_size"] == SIZE


def test_renders_with_the_same_settings_share_a_folder(tmp_path):
    from clica.runs import FolderLock

    folder = tmp_path / "ds"
    write_latents(folder, LatentOptions(n_points=6, seed=0), log=quiet)
    render_images(folder, n_batches=2, batch_index=0, image_size=SIZE, progress=False)
    other = FolderLock(folder, ".render.lock", shared=True)
    assert other.acquire()  # shard 0's process still running
    try:
        assert render_images(folder, n_batches=2, batch_index=1, image_size=SIZE, progress=False)["rendered"] == 3
    finally:
        other.release()


def test_damaged_images_are_rendered_again_on_rerun(tmp_path, capsys):
    folder = tmp_path / "ds"
    write_latents(folder, LatentOptions(n_points=4, seed=0), log=quiet)
    render_images(folder, image_size=SIZE, progress=False)
    images = sorted((folder / "images").glob("*.png"))
    whole = images[1].read_bytes()
    images[1].write_bytes(whole[: len(whole) // 2])  # cut short after rendering
    capsys.readouterr()
    result = render_images(folder, image_size=SIZE, progress=False)
    assert (result["redone"], result["rendered"], result["skipped"]) == (1, 1, 3)
    assert "1 image(s) on disk are cut short" in capsys.readouterr().out
    assert images[1].read_bytes() == whole  # rendered again, bit-identical
    assert render_images(folder, image_size=SIZE, progress=False)["rendered"] == 0


def test_a_sweep_from_given_latents_spans_their_own_ranges(tmp_path, monkeypatch, capsys):
    """--sweep --from-folder/--latents-file swept the periodic layout's ranges (z 0–3, angles 0–309°)."""
    import clica.render.preview as preview

    latents = np.tile(preview.BASE_LATENT, (5, 1))
    latents[:, 2] = np.linspace(0.5, 1.0, 5)                 # z within [0.5, 1]: BASE_LATENT's 1.5 lies outside
    latents[:, 3] = np.linspace(-np.pi / 2, np.pi / 2, 5)   # a non-periodic rotation range
    np.save(tmp_path / "l.npy", latents)
    seen = {}
    monkeypatch.setattr(preview, "write_sweep", lambda path, **kw: seen.update(kw) or path)
    code, _, _ = run_cli(capsys, "preview", "--sweep", str(tmp_path / "s.png"),
                         "--latents-file", str(tmp_path / "l.npy"))
    assert code == 0
    assert seen["ranges"]["z"] == (0.5, 1.0) and seen["ranges"]["alpha"] == (-np.pi / 2, np.pi / 2)
    assert preview.base_within(seen["ranges"])[2] == 1.0
    rows = preview.sweep_latents(preview.base_within(seen["ranges"]), 3, seen["ranges"])
    assert np.allclose(rows[6:9, 2], [0.5, 0.75, 1.0]) and np.allclose(rows[9:12, 3], [-np.pi / 2, 0, np.pi / 2])
