"""The SlowVAE benchmark datasets: loaders of the published formats (files written here with numpy, h5py and
scipy.io, not with clica), their one-line refusals, the sparse transitions, and short `clica kitti` runs."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.io import savemat

from clica.cli import main
from clica.data.factor_datasets import SHAPES3D_VALUES, SPECS, load_factor_dataset
from clica.data.factor_transitions import LaplaceTransition, UniformTransition, laplace_pmf
from clica.errors import ClicaError

DSPRITES = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"


def _grid(sizes):
    return np.array(list(itertools.product(*[range(s) for s in sizes])), dtype=np.int64)


def _blocks(classes, n_channels=0):
    """One 64×64 image per row: a block whose place and size follow the factors (binary when n_channels=0)."""
    imgs = np.zeros((len(classes), 64, 64) + ((n_channels,) if n_channels else ()), dtype=np.uint8)
    for i, c in enumerate(classes):
        y, x, s = 4 + 6 * c[-1] % 48, 4 + 6 * c[-2] % 48, 3 + 2 * c[1]
        imgs[i, y:y + s, x:x + s + c[0]] = 1 if not n_channels else 40 + 20 * c[2]
    return imgs


def write_dsprites(folder, sizes=(3, 2, 2, 4, 4), compressed=True, drop=0):
    """A dSprites-format npz: imgs, latents_classes (colour first) and, as published, a pickled metadata."""
    classes = np.column_stack([np.zeros(int(np.prod(sizes)), np.int64), _grid(sizes)])[drop:]
    save = np.savez_compressed if compressed else np.savez
    folder.mkdir(parents=True, exist_ok=True)
    save(folder / DSPRITES, imgs=_blocks(classes[:, 1:]), latents_classes=classes,
         latents_values=classes.astype(np.float64), metadata=np.array({"title": "dsprites"}, dtype=object))
    return classes


def write_shapes3d(folder, picks=((0, 3), (5,), (1, 2), (0, 7), (0, 1, 2, 3), (0, 7, 14))):
    """A 3dshapes-format h5 on a sub-grid of the published label values."""
    import h5py

    idx = np.array(list(itertools.product(*picks)))
    labels = np.stack([SHAPES3D_VALUES[j][idx[:, j]] for j in range(6)], 1)
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / "3dshapes.h5", "w") as f:
        f.create_dataset("images", data=_blocks(idx[:, [4, 3, 2, 0, 5]], 3), compression="gzip", chunks=(4, 64, 64, 3))
        f.create_dataset("labels", data=labels)
    return idx


def _one_line(exc_info, *parts):
    msg = str(exc_info.value)
    assert "\n" not in msg
    for p in parts:
        assert p in msg, (p, msg)


# --------------------------------------------------------------------------- loaders

@pytest.mark.parametrize("compressed", [True, False])
def test_dsprites_reads_the_published_format(tmp_path, compressed, monkeypatch):
    monkeypatch.delenv("CLICA_CACHE_DIR", raising=False)
    classes = write_dsprites(tmp_path, compressed=compressed)
    ds = load_factor_dataset("dsprites", tmp_path)
    assert len(ds) == len(classes) and ds.channels == 1 and ds.packed is compressed
    assert (tmp_path / ".clica-cache").exists() is compressed  # stored uncompressed: mapped in place
    assert ds.factor_names == ("shape", "scale", "orientation", "pos_x", "pos_y")
    idx = np.array([0, 7, 40, len(classes) - 1])
    assert torch.equal(ds.images(idx)[:, 0], torch.from_numpy(_blocks(classes[idx, 1:])).float())
    assert torch.equal(ds.latents[idx], torch.from_numpy(classes[idx, 1:]).float())


def test_dsprites_cache_is_built_once_and_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("CLICA_CACHE_DIR", str(tmp_path / "cache"))
    write_dsprites(tmp_path / "d")
    load_factor_dataset("dsprites", tmp_path / "d")
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].endswith(".npy") and np.load(tmp_path / "cache" / files[0]).shape[-1] == 8
    load_factor_dataset("dsprites", tmp_path / "d")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == files  # reused, no temporary left


def test_shapes3d_maps_label_values_to_the_published_grid(tmp_path):
    idx = write_shapes3d(tmp_path)
    ds = load_factor_dataset("shapes3d", tmp_path)
    assert ds.channels == 3 and ds.grid_sizes == (2, 1, 2, 2, 4, 3)
    assert torch.equal(ds.latents, torch.from_numpy(idx).float())
    x = ds.images(np.array([5]))
    assert x.shape == (1, 3, 64, 64) and math.isclose(x.max().item(), (40 + 20 * idx[5, 2]) / 255, rel_tol=1e-6)


def test_mpi3d_factors_follow_the_index_order(tmp_path):
    sizes = (2, 2, 1, 1, 1, 3, 3)
    classes = _grid(sizes)
    imgs = _blocks(classes[:, [0, 1, 1, 5, 6]], 3)
    np.savez(tmp_path / "mpi3d_toy.npz", images=imgs)
    ds = load_factor_dataset("mpi3d", tmp_path, sizes=sizes)
    assert ds.source.name == "mpi3d_toy.npz" and torch.equal(ds.latents, torch.from_numpy(classes).float())
    assert torch.equal(ds.images(np.arange(36)), torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255)
    with pytest.raises(ClicaError) as e:
        load_factor_dataset("mpi3d", tmp_path)
    _one_line(e, "mpi3d_toy.npz", "36 images, expected 1036800", SPECS["mpi3d"].url)


def test_cars3d_reads_mat_files_resized(tmp_path):
    for car in range(2):  # each (azimuth, elevation) view a flat grey level that encodes it
        im = np.zeros((128, 128, 3, 24, 4), dtype=np.uint8)
        im[:] = (np.arange(24)[:, None] * 4 + np.arange(4)[None, :] + 100 * car).astype(np.uint8)
        savemat(tmp_path / f"car_{car:03d}_mesh.mat", {"im": im})
    ds = load_factor_dataset("cars3d", tmp_path)
    assert len(ds) == 2 * 96 and ds.grid_sizes == (4, 24, 2)
    x = ds.images(np.arange(len(ds)))
    assert x.shape == (192, 3, 64, 64)
    elevation, azimuth, car = ds.latents.long().T
    assert torch.allclose(x.mean((1, 2, 3)) * 255, (azimuth * 4 + elevation + 100 * car).float(), atol=1e-3)


def _norb(path, magic, dims, data):
    rank = len(dims)
    header = np.array([magic, rank, *dims, *[1] * (3 - rank)], dtype="<i4")
    path.write_bytes(header.tobytes() + np.ascontiguousarray(data).tobytes())


def write_smallnorb(folder, truncate=False):
    """The six NORB-binary files: two categories, one instance per split, 2 elevations, 2 azimuths, 2 lightings."""
    rows = []
    for split, instance in (("5x46789x9x18x6x2x96x96-training", 4), ("5x01235x9x18x6x2x96x96-testing", 0)):
        f = _grid((2, 2, 2, 2))  # category, elevation, azimuth index, lighting
        n = len(f)
        info = np.column_stack([np.full(n, instance), f[:, 1], 2 * f[:, 2], f[:, 3]]).astype("<i4")
        value = (f @ np.array([80, 40, 20, 10]) + instance).astype(np.uint8)
        dat = np.broadcast_to(value[:, None, None, None], (n, 2, 96, 96))
        _norb(folder / f"smallnorb-{split}-dat.mat", 0x1E3D4C55, (n, 2, 96, 96), dat[:n - truncate])
        _norb(folder / f"smallnorb-{split}-cat.mat", 0x1E3D4C54, (n,), f[:, 0].astype("<i4"))
        _norb(folder / f"smallnorb-{split}-info.mat", 0x1E3D4C54, (n, 4), info)
        rows.append((f, instance))
    return rows


def test_smallnorb_joins_both_splits_and_leaves_instance_unscored(tmp_path):
    write_smallnorb(tmp_path)
    ds = load_factor_dataset("smallnorb", tmp_path)
    assert len(ds) == 32 and ds.grid_sizes == (2, 2, 2, 2, 2) and ds.channels == 1
    assert ds.factor_names == ("category", "elevation", "azimuth", "lighting")
    instance = ds.codes[:, 1].long() * 4  # instances 0 and 4
    x = ds.images(np.arange(32))
    assert x.shape == (32, 1, 64, 64)
    expected = ds.latents.long() @ torch.tensor([80, 40, 20, 10]) + instance
    assert torch.allclose(x.mean((1, 2, 3)) * 255, expected.float(), atol=1e-3)
    # the instance is kept in pairs (categorical), as the category
    first = torch.arange(32).repeat(20)
    _, second = ds.pair_indices(first, torch.Generator().manual_seed(0))
    assert torch.equal(ds.codes[first, :2], ds.codes[second, :2])


@pytest.mark.parametrize("case, parts", [
    ("missing", ["dSprites file not found", DSPRITES, "github.com/deepmind/dsprites-dataset"]),
    ("not_zip", ["cannot read", DSPRITES, "dSprites", "github.com/deepmind/dsprites-dataset"]),
    ("classes", ["is not a dSprites file as published", "latents_classes has shape"]),
    ("pickled_imgs", ["holds Python objects"]),
    ("incomplete", ["do not form a complete factor grid"]),
])
def test_dsprites_refusals_are_one_line(tmp_path, case, parts):
    path = tmp_path / DSPRITES
    if case == "not_zip":
        path.write_bytes(b"not a zip file")
    elif case == "classes":
        np.savez(path, imgs=np.zeros((4, 64, 64), np.uint8), latents_classes=np.zeros((4, 5), np.int64))
    elif case == "pickled_imgs":
        np.savez(path, imgs=np.array([{"a": 1}], dtype=object), latents_classes=np.zeros((1, 6), np.int64))
    elif case == "incomplete":
        write_dsprites(tmp_path, drop=1)
    with pytest.raises(ClicaError) as e:
        load_factor_dataset("dsprites", tmp_path)
    _one_line(e, *parts)


def test_other_refusals_are_one_line(tmp_path, monkeypatch):
    import h5py

    monkeypatch.delenv("CLICA_CACHE_DIR", raising=False)
    write_shapes3d(tmp_path / "s")
    with h5py.File(tmp_path / "s" / "3dshapes.h5", "a") as f:
        f["labels"][0, 3] = 0.8  # not a published scale
    with pytest.raises(ClicaError) as e:
        load_factor_dataset("shapes3d", tmp_path / "s")
    _one_line(e, "3dshapes.h5", "scale label values", "not on the published grid", SPECS["shapes3d"].url)

    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "3dshapes.h5").write_bytes(b"garbage")
    with pytest.raises(ClicaError) as e:
        load_factor_dataset("shapes3d", tmp_path / "h")
    _one_line(e, "cannot read", "3dshapes.h5", SPECS["shapes3d"].url)

    (tmp_path / "c").mkdir()
    savemat(tmp_path / "c" / "car_001_mesh.mat", {"im": np.zeros((8, 8, 3, 24), np.uint8)})
    with pytest.raises(ClicaError) as e:
        load_factor_dataset("cars3d", tmp_path / "c")
    _one_line(e, "car_001_mesh.mat", "expected (H, W, 3, 24, 4)", SPECS["cars3d"].url)
    assert not list((tmp_path / "c" / ".clica-cache").iterdir())  # the cache being built was removed

    (tmp_path / "n").mkdir()
    write_smallnorb(tmp_path / "n", truncate=True)
    with pytest.raises(ClicaError) as e:
        load_factor_dataset("smallnorb", tmp_path / "n")
    _one_line(e, "training-dat.mat", "truncated", SPECS["smallnorb"].url)
    (tmp_path / "n" / "smallnorb-5x01235x9x18x6x2x96x96-testing-cat.mat").unlink()
    with pytest.raises(ClicaError) as e:
        load_factor_dataset("smallnorb", tmp_path / "n")
    _one_line(e, "SmallNORB file not found", "testing-cat.mat", SPECS["smallnorb"].url)


# --------------------------------------------------------------------------- transitions

SIZES, CATEGORICAL = (3, 6, 40, 32, 32), (True, False, False, False, False)


def _starts(n, sizes=SIZES, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(s, (n,), generator=g) for s in sizes], 1)


@pytest.mark.parametrize("transition", [LaplaceTransition(SIZES, CATEGORICAL, 1.0),
                                        LaplaceTransition(SIZES, CATEGORICAL, -1),
                                        LaplaceTransition(SIZES, CATEGORICAL, 10.0),
                                        UniformTransition(SIZES, CATEGORICAL, -1)])
def test_categorical_fixed_and_every_pair_changes(transition):
    start = _starts(20_000)
    end = transition(start, torch.Generator().manual_seed(1))
    assert torch.equal(end[:, 0], start[:, 0])
    assert ((end != start).sum(1) >= 1).all()
    assert ((end >= 0) & (end < torch.tensor(SIZES))).all()


def test_laplace_pmf_is_the_original_truncated_laplace():
    for size, start, rate in ((6, 2, 1.0), (40, 0, 3.0), (32, 31, 0.5)):
        x = np.arange(size)
        p = stats.laplace.pdf(x, loc=start, scale=np.log(size) / rate)
        np.testing.assert_allclose(laplace_pmf(torch.tensor([start]), size, rate)[0].numpy(), p / p.sum(), rtol=1e-9)


def test_laplace_steps_follow_the_pmf():
    """With factor sizes 3 (categorical), 6, 10 from (1, 2, 7): the joint of the two free factors is the
    product of their pmfs, except that a pair with no change redraws one of them without its start."""
    sizes, start, rate, n = (3, 6, 10), torch.tensor([1, 2, 7]), 2.0, 200_000
    end = LaplaceTransition(sizes, (True, False, False), rate)(start.repeat(n, 1), torch.Generator().manual_seed(3))
    p1, p2 = (laplace_pmf(start[j:j + 1], sizes[j], rate)[0].numpy() for j in (1, 2))
    expected = np.outer(p1, p2)
    p0 = expected[2, 7]
    expected[2, 7] = 0
    expected[:, 7] += p0 / 2 * np.where(np.arange(6) == 2, 0, p1 / (1 - p1[2]))
    expected[2, :] += p0 / 2 * np.where(np.arange(10) == 7, 0, p2 / (1 - p2[7]))
    observed = np.zeros((6, 10))
    np.add.at(observed, (end[:, 1].numpy(), end[:, 2].numpy()), 1)
    keep = expected.ravel() > 0
    assert observed.ravel()[~keep].sum() == 0
    chi = stats.chisquare(observed.ravel()[keep], expected.ravel()[keep] * n)
    assert chi.pvalue > 1e-4, chi


@pytest.mark.parametrize("k", [1, 2, 4])
def test_uniform_changes_exactly_k_factors_to_other_values_uniformly(k):
    start = _starts(40_000)
    end = UniformTransition(SIZES, CATEGORICAL, k)(start, torch.Generator().manual_seed(k))
    assert ((end != start).sum(1) == k).all() and torch.equal(end[:, 0], start[:, 0])
    moved = end[:, 1] != start[:, 1]  # scale (6 values): the new value is uniform over the 5 others
    step = (end[moved, 1] - start[moved, 1]) % 6
    counts = torch.bincount(step, minlength=6).numpy()
    assert counts[0] == 0 and stats.chisquare(counts[1:]).pvalue > 1e-4


def test_uniform_random_k_and_bad_k():
    start = _starts(10_000)
    changed = (UniformTransition(SIZES, CATEGORICAL, -1)(start, torch.Generator().manual_seed(0)) != start).sum(1)
    assert set(changed.tolist()) == {1, 2, 3, 4}
    with pytest.raises(ClicaError, match="--data-k must be -1 .random. or 1..4"):
        UniformTransition(SIZES, CATEGORICAL, 5)


# --------------------------------------------------------------------------- clica kitti

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("factor_data")
    write_dsprites(root / "dsprites")
    write_shapes3d(root / "shapes3d")
    return root


def _kitti(tmp_path, data, dataset, *extra):
    argv = ["kitti", "--dataset", dataset, "--data-dir", str(data / dataset), "--output-dir", str(tmp_path / "out"),
            "--ckpt-dir", str(tmp_path / "ckpt"), "--max-iter", "3", "--log-step", "1", "--batch-size", "8",
            "--n-eval-samples", "200", "--num-workers", "0", *extra]
    return main(argv)


@pytest.mark.parametrize("dataset, flags, folder", [
    ("dsprites", [], "dsprites_laplace_1/1_0"),
    ("dsprites", ["--data-distribution", "uniform", "--data-k", "2", "--box-norm", "1"], "dsprites_uniform_2/1_1"),
    ("shapes3d", ["--model", "slowvae", "--rate-data", "-1"], "shapes3d_laplace_-1/slowvae_1_10_6"),
    ("dsprites", ["--model", "slowvae", "--betavae"], "dsprites_laplace_1/slowvae_1_0_6"),
])
def test_short_runs_train_and_report_mcc(tmp_path, data, dataset, flags, folder):
    assert _kitti(tmp_path, data, dataset, *flags) == 0
    run = tmp_path / "out" / folder / "2"
    summary = json.loads((run / "summary.json").read_text())
    assert 0 <= summary["mcc"] <= 1 and set(summary["per_factor"]) == set(SPECS[dataset].factor_names)
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == dataset and config["data_frames"] > 0


def test_evaluate_and_resume_a_factor_run(tmp_path, data, capsys):
    assert _kitti(tmp_path, data, "shapes3d") == 0
    first = json.loads((tmp_path / "out/shapes3d_laplace_1/1_0/2/summary.json").read_text())["mcc"]
    assert _kitti(tmp_path, data, "shapes3d", "--evaluate") == 0
    assert f"MCC {first:.4f}" in capsys.readouterr().out
    assert _kitti(tmp_path, data, "shapes3d", "--max-iter", "4") == 0
    assert "resuming" in capsys.readouterr().out
    assert _kitti(tmp_path, data, "shapes3d", "--max-iter", "5", "--rate-data", "2",
                  "--experiment-dir", "shapes3d_laplace_1/1_0") == 2
    assert "other settings (--rate-data)" in capsys.readouterr().err


def test_generator_metrics_on_a_factor_dataset(tmp_path, data, monkeypatch):
    """--specify beta_vae_sklearn/factor_vae_metric use the dataset as a ground-truth generator (small settings
    here; disentanglement_lib's by default)."""
    import functools

    import clica.metrics as suite

    monkeypatch.setattr(suite, "beta_vae_score", functools.partial(suite.beta_vae_score, batch_size=8,
                                                                   num_train=40, num_eval=20))
    monkeypatch.setattr(suite, "factor_vae_score", functools.partial(
        suite.factor_vae_score, batch_size=8, num_train=40, num_eval=20, num_variance_estimate=100))
    assert _kitti(tmp_path, data, "dsprites", "--specify", "mcc_mig_beta_vae_sklearn_factor_vae_metric") == 0
    scores = json.loads((tmp_path / "out/dsprites_laplace_1/1_0/2/evaluation/last/disentanglement.json").read_text())
    assert scores["factors"] == list(SPECS["dsprites"].factor_names)
    for key in ("mig", "beta_vae_train", "beta_vae_eval", "factor_vae_train", "factor_vae_eval"):
        assert 0 <= scores[key] <= 1, key
    ds = load_factor_dataset("dsprites", data / "dsprites")
    rs = np.random.RandomState(0)
    factors = ds.sample_factors(50, rs)
    x = ds.sample_observations_from_factors(factors, rs)
    assert x.shape == (50, 1, 64, 64) and np.array_equal(x[:, 0], _blocks(factors).astype(np.float32))


@pytest.mark.parametrize("dataset, flags, match", [
    ("kittimasks", ["--data-distribution", "uniform"], "--data-distribution concerns the factor datasets"),
    ("dsprites", ["--kitti-max-delta-t", "2"], "--kitti-max-delta-t concerns KITTI Masks only"),
    ("dsprites", ["--data-k", "2"], "--data-k sets the uniform transition"),
    ("dsprites", ["--data-distribution", "uniform", "--rate-data", "2"], "--rate-data sets the laplace"),
    ("dsprites", ["--data-distribution", "normal"], "laplace or uniform"),
    ("dsprites", ["--data-distribution", "uniform", "--data-k", "5"], "--data-k must be -1 (random) or 1..4"),
    ("dsprites", ["--z-dim", "4"], "--z-dim must be at least 5"),
    ("natural", ["--data-k", "2"], "--data-k concerns the factor datasets"),
    ("natural", ["--kitti-max-delta-t", "2"], "--kitti-max-delta-t concerns KITTI Masks only"),
    ("dsprites", ["--natural-discrete"], "--natural-discrete concerns Natural Sprites only"),
    ("dsprites", ["--dataset", "cifar"], "--dataset cifar is not one of"),
])
def test_dataset_flags_only_where_meaningful(tmp_path, data, capsys, dataset, flags, match):
    assert _kitti(tmp_path, data, dataset if dataset != "kittimasks" else "dsprites", *flags,
                  *(["--dataset", dataset] if dataset == "kittimasks" else [])) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


# --------------------------------------------------------------------------- Natural Sprites

def write_natural(folder, n_videos=30, seed=0):
    """A downscale_keepaspect.csv as published: id, category_id, then per frame a list of [y, x, area] or None."""
    rng = np.random.default_rng(seed)
    lines = ["id,category_id," + ",".join(f"f{t}" for t in range(4))]
    for v in range(n_videos):
        cells = []
        for t in range(4):
            if t == 2 and v % 5 == 0:
                cells.append("")  # no annotation in this frame: breaks the pairs around it
                continue
            objects = [[float(rng.uniform(16, 48)), float(rng.uniform(16, 48)), float(rng.uniform(40, 400))],
                       None if v % 3 else [10.0, 12.0, 60.0]]
            cells.append('"' + repr(objects) + '"')
        lines.append(f"{v},{v % 7}," + ",".join(cells))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "downscale_keepaspect.csv").write_text("\n".join(lines) + "\n")


def test_natural_sprites_pairs_as_published(tmp_path):
    from clica.data.natural_sprites import NaturalSprites, read_pairs

    write_natural(tmp_path)
    pairs = read_pairs(tmp_path / "downscale_keepaspect.csv")
    # 30 videos × 3 frame pairs, minus the 2 pairs around each missing frame (6 videos); plus every third video's
    # second object in each of its pairs
    videos = np.arange(30)
    expected = sum((1 if v % 5 == 0 else 3) * (2 if v % 3 == 0 else 1) for v in videos)
    assert pairs.shape == (expected, 2, 3)
    ds = NaturalSprites.from_dir(tmp_path)
    area = pairs[:, :, 2]
    keep = ((area >= np.quantile(area, 0.05, 0)) & (area <= np.quantile(area, 0.95, 0))).all(1)
    assert len(ds) == keep.sum() and ds.channels == 3
    first, second = ds.pair_indices(torch.arange(len(ds)), torch.Generator().manual_seed(0))
    z1, z2 = ds.latents[first], ds.latents[second]
    assert torch.equal(z1[:, 3:], z2[:, 3:])  # shape and angle shared by a pair
    np.testing.assert_allclose(z1[:, :3].numpy(), np.stack([pairs[keep, 0, 1] / 64, pairs[keep, 0, 0] / 64,
                                                            np.sqrt(pairs[keep, 0, 2]) / 64], 1), rtol=1e-6)
    x = ds.images(first[:4])
    assert x.shape == (4, 3, 64, 64) and torch.equal(x[:, 0], x[:, 1])


@pytest.mark.parametrize("shape", ["square", "triangle", "star_4", "spoke_4"])
def test_natural_sprites_render_area_and_orientation(shape):
    from clica.data.natural_sprites import render

    for angle in (0, 45, 171):
        img = render(shape, 0.5, 0.75, 0.25, angle).astype(np.float64) / 255
        # area (scale · 64)², plus the edge pixels that PIL fills (about half a canvas pixel along the outline)
        assert abs(img.sum() - 16 ** 2) < 0.05 * 16 ** 2, (shape, angle, img.sum())
        rows = np.nonzero(img.sum(1) > 0.5)[0]
        assert rows.mean() < 24  # y up: y = 0.75 is the upper part of the image


def test_natural_discrete_and_natural_refusals(tmp_path):
    from clica.data.natural_sprites import NaturalSprites

    write_natural(tmp_path / "n", n_videos=200)
    ds = NaturalSprites.from_dir(tmp_path / "n", natural_discrete=True)
    assert ds.factor_sizes[:3] <= (32, 32, 6) and ds.factor_sizes[2] <= 6
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "downscale_keepaspect.csv").write_text('id,c,f0,f1\n1,2,"[[1, 2, 3]]","__import__(\'os\')"\n')
    with pytest.raises(ClicaError) as e:
        NaturalSprites.from_dir(tmp_path / "bad")
    _one_line(e, "line 2", "not a list of [y, x, area]", "zenodo.org/record/3948069")
    with pytest.raises(ClicaError) as e:
        NaturalSprites.from_dir(tmp_path / "none")
    _one_line(e, "Natural Sprites file not found", "downscale_keepaspect.csv", "zenodo.org/record/3948069")


@pytest.mark.parametrize("flags, folder", [([], "natural/1_0"), (["--natural-discrete", "--model", "slowvae"],
                                                                   "natural_discrete/slowvae_1_10_6")])
def test_natural_sprites_train(tmp_path, flags, folder):
    write_natural(tmp_path / "natural", n_videos=60)
    assert _kitti(tmp_path, tmp_path, "natural", *flags) == 0
    summary = json.loads((tmp_path / "out" / folder / "2" / "summary.json").read_text())
    assert 0 <= summary["mcc"] <= 1 and list(summary["per_factor"]) == ["x", "y", "scale", "angle", "shape"]
