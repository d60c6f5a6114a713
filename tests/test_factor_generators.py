"""`clica data dsprites|shapes3d`: the published array names, dtypes, factor layout and what each factor draws."""

import math

import numpy as np
import pytest

from clica.cli import main
from clica.data.generators import dsprites, shapes3d
from clica.errors import ClicaError

FULL_SIZES = {"dsprites": (1, 3, 6, 40, 32, 32), "shapes3d": (10, 10, 10, 8, 4, 15)}


# --------------------------------------------------------------------------- the factor grids

@pytest.mark.parametrize("module", [dsprites, shapes3d])
def test_the_full_grid_is_row_major_in_the_published_order(module):
    sub = module.GRID.select()
    classes, values = sub.classes(), sub.values()
    sizes = FULL_SIZES["dsprites" if module is dsprites else "shapes3d"]
    assert module.GRID.sizes == sizes and len(sub) == math.prod(sizes) in (737_280, 480_000)
    assert classes.dtype == np.int64 and values.dtype == np.float64
    bases = np.array([math.prod(sizes[k + 1:]) for k in range(6)])       # the published index arithmetic
    for i in (0, 1, 31, 32, 1023, 1024, 40_961, len(sub) - 1):
        assert classes[i] @ bases == i
        assert list(classes[i]) == list(np.unravel_index(i, sizes))
        assert [module.GRID.values[k][classes[i, k]] for k in range(6)] == list(values[i])


def test_the_published_factor_values():
    v = dsprites.GRID.values
    assert list(v[1]) == [1, 2, 3] and list(v[0]) == [1]
    np.testing.assert_allclose(v[2], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert v[3][0] == 0 and v[3][-1] == pytest.approx(2 * np.pi) and v[4][-1] == v[5][-1] == 1
    w = shapes3d.GRID.values
    assert [list(w[k]) for k in range(3)] == [[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]] * 3
    np.testing.assert_allclose(w[3], np.linspace(0.75, 1.25, 8))
    assert list(w[4]) == [0, 1, 2, 3] and w[5][0] == -30 and w[5][7] == 0 and w[5][-1] == 30


def test_a_sub_grid_keeps_the_published_classes_row_major_over_the_kept_values():
    sub = dsprites.GRID.select(["orientation=0:40:13", "posX=0,31", "posy=::10", "shape=2"])
    assert sub.shape == (1, 1, 6, 4, 2, 4) and len(sub) == 192
    c = sub.classes()
    assert sorted(set(c[:, 3])) == [0, 13, 26, 39] and sorted(set(c[:, 5])) == [0, 10, 20, 30]
    compact = np.stack([np.searchsorted(np.unique(c[:, k]), c[:, k]) for k in range(6)], 1)
    assert np.array_equal(np.ravel_multi_index(compact.T, sub.shape), np.arange(len(sub)))


@pytest.mark.parametrize("spec, needle", [
    ("size=0", "NAME=SEL with NAME one of color, shape"), ("posX", "NAME=SEL"), ("posX=40", "from 0 to 31"),
    ("posX=5:5", "keeps no value"), ("posX=a:b", "START:STOP"), ("posX=::0", "START:STOP"),
    ("posX=3,1", "increasing order"), ("posX=-1", "from 0 to 31"),
])
def test_a_bad_selection_is_one_line(spec, needle):
    with pytest.raises(ClicaError, match=needle):
        dsprites.GRID.select([spec])


# --------------------------------------------------------------------------- dSprites images

def _image(shape=0, scale=5, orientation=0, x=16, y=16):
    """One image of the full grid, drawn through the generator's own blocks."""
    sub = dsprites.GRID.select([f"shape={shape}", f"scale={scale}", f"orientation={orientation}",
                                f"posX={x}", f"posY={y}"])
    (block,) = list(dsprites.blocks(sub))
    return block[0].astype(float)


def _com(img):
    rows, cols = np.nonzero(img)
    return rows.mean(), cols.mean()


def test_the_dsprites_file_has_the_published_arrays(tmp_path):
    out = tmp_path / dsprites.FILE_NAME
    assert main(["data", "dsprites", "--output", str(tmp_path), "--factor", "orientation=0:40:13",
                 "--factor", "posX=0,31", "--factor", "posY=::10"]) == 0
    with np.load(out) as f:   # no pickle: loads with numpy's safe default
        assert sorted(f.files) == ["imgs", "latents_classes", "latents_values"]
        imgs, classes, values = f["imgs"], f["latents_classes"], f["latents_values"]
    n = 3 * 6 * 4 * 2 * 4
    assert imgs.dtype == np.uint8 and imgs.shape == (n, 64, 64) and set(np.unique(imgs)) == {0, 1}
    assert classes.dtype == np.int64 and classes.shape == (n, 6)
    assert values.dtype == np.float64 and values.shape == (n, 6)
    assert np.array_equal(classes, dsprites.GRID.select(["orientation=0:40:13", "posX=0,31", "posY=::10"]).classes())
    i = int(np.flatnonzero((classes[:, 1:] == [2, 3, 26, 31, 20]).all(1))[0])   # a heart, by its classes
    np.testing.assert_array_equal(imgs[i], _image(2, 3, 26, 31, 20))
    assert [p.name for p in tmp_path.iterdir()] == [dsprites.FILE_NAME]   # no temporary left
    assert main(["data", "dsprites", "--output", f"{tmp_path}/new/", "--factor", "posX=0", "--factor", "posY=0"]) == 0
    assert (tmp_path / "new" / dsprites.FILE_NAME).is_file()               # a new folder, named by its slash
    # several selections after one --factor, as a newcomer writes them (it was "unrecognized arguments")
    assert main(["data", "dsprites", "--output", f"{tmp_path}/one/", "--factor", "posX=0", "posY=0"]) == 0
    assert np.load(tmp_path / "one" / dsprites.FILE_NAME)["imgs"].shape[0] == 3 * 6 * 40


def test_the_three_shapes_differ_and_the_heart_is_not_symmetric_top_to_bottom():
    square, ellipse, heart = (_image(shape=s) for s in range(3))
    assert min(np.abs(a - b).sum() for a, b in ((square, ellipse), (square, heart), (ellipse, heart))) > 30
    for img, asymmetric in ((square, False), (ellipse, False), (heart, True)):
        rows = np.nonzero(img.any(1))[0]
        offset = (rows.min() + rows.max()) / 2 - _com(img)[0]     # the lobes pull the mass up
        assert (offset > 1.0) if asymmetric else (abs(offset) < 0.5)


def test_scale_grows_the_sprite_and_orientation_turns_it():
    for shape in range(3):
        counts = [_image(shape=shape, scale=k).sum() for k in range(6)]
        assert all(b > a for a, b in zip(counts, counts[1:])), counts
    flat, upright = _image(shape=1, orientation=0), _image(shape=1, orientation=10)   # 0 and ~92°
    extent = lambda img: (np.ptp(np.nonzero(img)[0]), np.ptp(np.nonzero(img)[1]))  # noqa: E731
    assert extent(flat)[1] > 1.7 * extent(flat)[0] and extent(upright)[0] > 1.7 * extent(upright)[1]
    np.testing.assert_array_equal(_image(shape=2, orientation=0), _image(shape=2, orientation=39))  # 0 and 2π


def test_position_moves_the_centre_of_mass_by_equal_steps():
    along_x = np.array([_com(_image(shape=2, x=k)) for k in range(32)])      # (row, column) per posX
    along_y = np.array([_com(_image(shape=2, y=k)) for k in range(32)])
    for moved, still in ((along_x[:, 1], along_x[:, 0]), (along_y[:, 0], along_y[:, 1])):
        steps = np.diff(moved)
        assert np.all(steps > 0) and abs(steps.mean() - 1.25) < 0.01 and np.ptp(steps) < 0.5
        assert np.ptp(still) < 0.5           # posX leaves the row alone, posY the column


# --------------------------------------------------------------------------- 3D Shapes

@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    import h5py

    out = tmp_path_factory.mktemp("s3") / "3dshapes.h5"
    spec = ["floor_hue=0,5", "wall_hue=2,8", "object_hue=0,7", "scale=0,7", "orientation=0,14"]
    assert main(["data", "shapes3d", "--output", str(out), *sum((["--factor", s] for s in spec), [])]) == 0
    with h5py.File(out, "r") as f:
        assert sorted(f) == ["images", "labels"]
        return f["images"][()], f["labels"][()], shapes3d.GRID.select(spec)


def test_the_shapes3d_file_has_the_published_keys_dtypes_and_values(shapes):
    images, labels, sub = shapes
    assert images.dtype == np.uint8 and images.shape == (128, 64, 64, 3)
    assert labels.dtype == np.float64 and labels.shape == (128, 6)
    np.testing.assert_array_equal(labels, sub.values())
    assert list(labels[0]) == [0.0, 0.2, 0.0, 0.75, 0.0, -30.0] and list(labels[-1]) == [0.5, 0.8, 0.7, 1.25, 3.0, 30.0]
    assert len({images[i].tobytes() for i in range(128)}) == 128    # every factor combination draws its own image


def _changed(images, labels, column):
    """Pixels that change when only factor ``column`` changes (its first two kept values)."""
    lo, hi = np.unique(labels[:, column])[:2]
    a = images[labels[:, column] == lo].astype(int)
    b = images[labels[:, column] == hi].astype(int)
    return (np.abs(a - b).sum(-1) > 6).mean(0)      # the fraction of image pairs where each pixel changed


def test_each_hue_colours_its_own_region(shapes):
    images, labels, _ = shapes
    floor, wall, obj = (_changed(images, labels, k) for k in range(3))
    top, bottom, centre = np.s_[:6], np.s_[-6:], np.s_[28:36, 28:36]
    assert floor[bottom].min() == 1 and floor[top].max() == 0        # the floor is the lower part
    assert wall[top].min() == 1 and wall[bottom].max() == 0          # the wall the upper
    assert obj[centre].min() == 1 and obj[top].max() == 0 and obj[bottom].max() == 0   # the object the middle
    assert obj.mean() < 0.3 < floor.mean()             # a small object, a large floor


def test_scale_grows_the_object_and_orientation_turns_the_room(shapes):
    images, labels, _ = shapes

    def object_pixels(scale, shape):
        """Pixels that change with the object's hue alone, at floor 0, wall 0.2, azimuth −30."""
        at = (labels[:, 0] == 0) & (labels[:, 1] == 0.2) & (labels[:, 3] == scale) & (labels[:, 4] == shape) \
            & (labels[:, 5] == -30)
        a, b = images[at].astype(int)        # object hue 0, then 0.7
        return int((np.abs(a - b).sum(-1) > 6).sum())

    for shape in range(4):
        small, large = object_pixels(0.75, shape), object_pixels(1.25, shape)
        assert large > 2.2 * small > 0, (shape, small, large)     # area grows about (1.25 / 0.75)²
    left = images[labels[:, 5] == -30].astype(int)
    right = images[labels[:, 5] == 30].astype(int)
    assert (np.abs(left - right).sum(-1) > 6)[:, :20].mean() > 0.05   # the floor–wall seam tilts


# --------------------------------------------------------------------------- refusals and atomic writes

@pytest.mark.parametrize("dataset", ["dsprites", "shapes3d"])
def test_an_existing_output_is_kept_without_force(dataset, tmp_path, capsys):
    out = tmp_path / "data.out"
    out.write_text("keep me")
    assert main(["data", dataset, "--output", str(out), "--factor", "posX=0" if dataset == "dsprites"
                 else "object_hue=0"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "exists; pass --force" in err and out.read_text() == "keep me"


@pytest.mark.parametrize("argv, needle", [
    (["dsprites", "--factor", "posX=99"], "from 0 to 31"),
    (["dsprites", "--factor", "hue=1"], "NAME=SEL"),
    (["shapes3d", "--factor", "scale=8"], "from 0 to 7"),
    (["shapes3d", "--factor", "shape=1:1"], "keeps no value"),
])
def test_a_bad_factor_is_one_line_and_writes_nothing(argv, needle, tmp_path, capsys):
    assert main(["data", argv[0], "--output", str(tmp_path / "x"), *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err and list(tmp_path.iterdir()) == []


def test_a_failed_generation_leaves_no_file(tmp_path, monkeypatch):
    def broken(sub):
        yield np.zeros((32, 64, 64), np.uint8)
        raise RuntimeError("interrupted")

    monkeypatch.setattr(dsprites, "blocks", broken)
    with pytest.raises(RuntimeError):
        dsprites.write_npz(tmp_path / "d.npz", dsprites.GRID.select(["posX=0"]))
    assert list(tmp_path.iterdir()) == []


def test_shapes3d_uncompressed_is_contiguous_and_holds_the_same_images(tmp_path):
    import h5py

    spec = ["--factor", "floor_hue=1", "--factor", "wall_hue=1", "--factor", "object_hue=1,2", "--factor", "scale=3"]
    assert main(["data", "shapes3d", "--output", str(tmp_path / "gz.h5"), *spec]) == 0
    assert main(["data", "shapes3d", "--output", str(tmp_path / "raw.h5"), "--compression", "0", *spec]) == 0
    with h5py.File(tmp_path / "gz.h5", "r") as gz, h5py.File(tmp_path / "raw.h5", "r") as raw:
        assert gz["images"].compression == "gzip" and gz["images"].chunks == (16, 64, 64, 3)
        assert raw["images"].compression is None and raw["images"].chunks is None   # memory-mappable
        np.testing.assert_array_equal(gz["images"][()], raw["images"][()])
        np.testing.assert_array_equal(gz["labels"][()], raw["labels"][()])


# --------------------------------------------------------------------------- what clica kitti reads

def _headless_gl_or_skip():
    from clica.render.renderer import create_context

    try:
        create_context().release()
    except ClicaError as exc:  # no headless OpenGL here
        pytest.skip(str(exc))


SMALL = {"dsprites": ["orientation=0:40:20", "posX=::8", "posY=::8"],
         "shapes3d": ["floor_hue=0,5", "wall_hue=2,8", "object_hue=0,7", "orientation=0:15:7"]}


@pytest.mark.parametrize("dataset, extra", [("dsprites", []), ("shapes3d", []), ("shapes3d", ["--compression", "0"])])
def test_generated_files_load_on_the_published_grid_and_train(dataset, extra, tmp_path, capsys):
    """`clica data D --factor ...` → the loader maps every image to its published class indices, gives the
    file's images, and `clica kitti --dataset D --data-dir DIR` trains on it and reports MCC."""
    import json

    from clica.data.factor_datasets import load_factor_dataset

    if dataset == "shapes3d":
        _headless_gl_or_skip()
    module = dsprites if dataset == "dsprites" else shapes3d
    data = tmp_path / "data"
    factors = sum((["--factor", f] for f in SMALL[dataset]), [])
    assert main(["data", dataset, "--output", f"{data}/", *factors, *extra]) == 0
    loaded = load_factor_dataset(dataset, data)
    classes = module.GRID.select(SMALL[dataset]).classes()
    classes = classes[:, 1:] if dataset == "dsprites" else classes        # dSprites' constant colour is dropped
    np.testing.assert_array_equal(loaded.latents.numpy(), classes)        # the published class indices, row by row
    if extra:  # uncompressed and contiguous: mapped in place, no cache
        assert str(loaded._images.filename) == str((data / shapes3d.FILE_NAME).resolve())
        assert not (data / ".clica-cache").exists()
    rows = np.array([0, 7, len(loaded) - 1])
    if dataset == "dsprites":
        with np.load(data / dsprites.FILE_NAME) as f:
            assert "metadata" not in f.files          # not written: the loader must not need it
            raw = f["imgs"][rows][:, None].astype(np.float32)
    else:
        import h5py

        with h5py.File(data / shapes3d.FILE_NAME, "r") as f:
            raw = f["images"][rows].transpose(0, 3, 1, 2) / np.float32(255)
    np.testing.assert_allclose(loaded.images(rows).numpy(), raw, atol=1e-6)

    capsys.readouterr()
    assert main(["kitti", "--dataset", dataset, "--data-dir", str(data), "--output-dir", str(tmp_path / "out"),
                 "--ckpt-dir", str(tmp_path / "ckpt"), "--max-iter", "3", "--log-step", "1", "--batch-size", "8",
                 "--n-eval-samples", "200", "--num-workers", "0"]) == 0
    assert "MCC" in capsys.readouterr().out
    (summary,) = (tmp_path / "out").glob(f"{dataset}_laplace_1/*/*/summary.json")
    assert 0 <= json.loads(summary.read_text())["mcc"] <= 1
