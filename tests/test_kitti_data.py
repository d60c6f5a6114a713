"""KITTI Masks data: the published format, the synthetic generator, the pair loader, augmentation, errors."""

import pickle

import numpy as np
import pytest
import torch
from scipy.ndimage import center_of_mass

from clica.cli import main
from clica.data.kitti_masks import (
    KittiMasks,
    PairLoader,
    Prefetcher,
    SyntheticConfig,
    augment_pairs,
    generate_synthetic,
    load_kitti_pickle,
    mask_latents,
    resolve_pickle_path,
    write_kitti_pickle,
)
from clica.errors import ClicaError

SMALL = SyntheticConfig(n_sequences=30, mean_length=12)


@pytest.fixture(scope="module")
def data():
    return generate_synthetic(3, SMALL)


@pytest.fixture(scope="module")
def pickle_path(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("kitti") / "kitti_peds_v2.pickle"
    write_kitti_pickle(path, data)
    return path


def test_published_format(data, pickle_path):
    with open(pickle_path, "rb") as fh:
        raw = pickle.load(fh)
    assert set(raw) == {"pedestrians", "pedestrians_latents"}
    assert isinstance(raw["pedestrians"], list) and len(raw["pedestrians"]) == len(raw["pedestrians_latents"])
    for m, z in zip(raw["pedestrians"], raw["pedestrians_latents"]):
        assert m.dtype == np.bool_ and m.ndim == 3 and m.shape[1:] == (64, 64) and len(m) >= 2
        assert z.dtype == np.float32 and z.shape == (len(m), 3)
        assert (m.sum(axis=(1, 2)) >= 30).all()  # the published minimum mask size
    # latents are computed from the masks exactly as the published ones (scipy's centre of mass, pixel count)
    m, z = raw["pedestrians"][0], raw["pedestrians_latents"][0]
    for t in range(len(m)):
        cy, cx = center_of_mass(m[t])
        np.testing.assert_allclose(z[t], [cy, cx, m[t].sum()], rtol=1e-6)


def test_generator_is_deterministic_and_pedestrian_like(data):
    again = generate_synthetic(3, SMALL)
    assert all(np.array_equal(a, b) for a, b in zip(data["pedestrians"], again["pedestrians"]))
    other = generate_synthetic(4, SMALL)
    assert not np.array_equal(data["pedestrians"][0][0], other["pedestrians"][0][0])
    lengths = [len(m) for m in data["pedestrians"]]
    assert len(set(lengths)) > 3  # varied lengths
    # a silhouette is taller than wide and not a disc: its bounding box is far from filled
    frame = max((f for m in data["pedestrians"] for f in m), key=lambda f: f.sum())
    rows, cols = np.nonzero(frame)
    h, w = np.ptp(rows) + 1, np.ptp(cols) + 1
    assert h > 1.5 * w and frame.sum() < 0.75 * h * w


def test_transitions_are_heavy_tailed():
    d = generate_synthetic(0, SyntheticConfig(n_sequences=120, mean_length=16))
    dz = np.concatenate([np.diff(z, axis=0) for z in d["pedestrians_latents"]])
    kurt = ((dz - dz.mean(0)) ** 4).mean(0) / dz.var(0) ** 2
    assert (kurt > 3.5).all(), kurt  # a Gaussian has 3, a Laplace 6


def test_pairs_within_delta_t_and_latents_match_masks(data):
    ds = KittiMasks.from_dict(data, max_delta_t=3)
    assert len(ds) == sum(len(m) - 1 for m in data["pedestrians"])
    seq_of = np.repeat(np.arange(ds.n_sequences), ds.lengths)
    g = torch.Generator().manual_seed(0)
    idx = torch.arange(len(ds))
    first, second = ds.pair_indices(idx, g)
    delta = (second - first).numpy()
    assert delta.min() >= 1 and delta.max() <= 3 and len(set(delta)) == 3
    assert (seq_of[first.numpy()] == seq_of[second.numpy()]).all()
    x1, x2, z1, z2 = ds.sample_pairs(idx[:50], g)
    assert x1.shape == (50, 1, 64, 64) and x1.dtype == torch.float32
    np.testing.assert_allclose(mask_latents(x1[:, 0].numpy()), z1.numpy(), rtol=1e-5)
    np.testing.assert_allclose(mask_latents(x2[:, 0].numpy()), z2.numpy(), rtol=1e-5)


def test_augmentation_is_shared_by_both_frames(data):
    ds = KittiMasks.from_dict(data)
    x1, x2, _, _ = ds.sample_pairs(torch.arange(16))
    a1, a2 = augment_pairs(x1, x2, torch.Generator().manual_seed(5))
    b2, b1 = augment_pairs(x2, x1, torch.Generator().manual_seed(5))
    assert torch.equal(a1, b1) and torch.equal(a2, b2)          # one transform per pair, applied to both
    c1, c2 = augment_pairs(x1, x1.clone(), torch.Generator().manual_seed(5))
    assert torch.equal(c1, c2)
    assert not torch.equal(a1, x1)
    assert set(torch.unique(a1).tolist()) <= {0.0, 1.0}          # nearest resampling keeps masks binary


def test_translation_and_flip_are_exact_pixel_moves(data):
    ds = KittiMasks.from_dict(data)
    x1, x2, _, _ = ds.sample_pairs(torch.arange(8))
    x1 = torch.nn.functional.pad(x1[:, :, 8:-8, 8:-8], (8, 8, 8, 8))  # keep content away from the border
    a1, _ = augment_pairs(x1, x2, torch.Generator().manual_seed(1), degrees=(0.0, 0.0), flip_p=0.5)
    for i in range(len(x1)):
        found = False
        for flip in (False, True):
            src = x1[i, 0].flip(-1) if flip else x1[i, 0]
            for dy in range(-5, 6):
                for dx in range(-5, 6):
                    if torch.equal(torch.roll(src, (dy, dx), (0, 1)), a1[i, 0]):
                        found = True
        assert found, f"pair {i} is not an integer shift (± flip) of its input"


def test_loader_batches_epochs_and_resume(data):
    ds = KittiMasks.from_dict(data, max_delta_t=2)
    loader = PairLoader(ds, batch_size=16, augment=True, seed=0)
    x, z = loader.next_batch()
    assert x.shape == (16, 1, 64, 64) and z.shape == (16, 3)
    # interleaved pairs: frame 2k and 2k+1 of a batch are a pair, so their latents are close
    state = loader.state_dict()
    nxt = loader.next_batch()
    again = PairLoader(ds, batch_size=16, augment=True, seed=123)
    again.load_state_dict(state)
    assert torch.equal(again.next_batch()[0], nxt[0])
    starts = []
    plain = PairLoader(ds, batch_size=16, augment=False, seed=0)
    for _ in range(len(ds) // 8):
        plain.next_batch()
        starts.append(plain.order.perm[plain.order.pos - 8:plain.order.pos])
    assert len(torch.unique(torch.cat(starts))) == (len(ds) // 8) * 8  # no repeats within an epoch
    with pytest.raises(ClicaError, match="even"):
        PairLoader(ds, batch_size=15)
    # a prefetching thread hands out the same batches, and its state resumes at the right place
    ref = PairLoader(ds, batch_size=8, seed=4)
    pre = Prefetcher(PairLoader(ds, batch_size=8, seed=4), depth=2)
    try:
        for _ in range(3):
            assert torch.equal(ref.next_batch()[0], pre.next_batch()[0])
        resumed = PairLoader(ds, batch_size=8, seed=0)
        resumed.load_state_dict(pre.state_dict())
        assert torch.equal(ref.next_batch()[0], resumed.next_batch()[0])
    finally:
        pre.close()


def test_missing_and_corrupt_files(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nowhere"
    with pytest.raises(ClicaError) as exc:
        load_kitti_pickle(resolve_pickle_path(missing))
    msg = str(exc.value)
    assert "3931823" in msg and str(missing / "kitti_peds_v2.pickle") in msg and "clica data kitti-masks" in msg
    assert "\n" not in msg
    monkeypatch.setenv("CLICA_DATA_DIR", str(tmp_path / "env"))
    assert resolve_pickle_path(None) == tmp_path / "env" / "kitti_peds_v2.pickle"

    bad = tmp_path / "bad.pickle"
    bad.write_bytes(b"not a pickle at all")
    with pytest.raises(ClicaError, match="cannot read"):
        load_kitti_pickle(bad)
    ok = {"pedestrians": [np.eye(64, dtype=np.float32)[None].repeat(3, 0)],
          "pedestrians_latents": [np.zeros((3, 3), np.float32)]}
    (tmp_path / "ok.pickle").write_bytes(pickle.dumps(ok))
    load_kitti_pickle(tmp_path / "ok.pickle")  # 0/1 floats are masks
    for obj, match in [([1, 2], "expected a dict"),
                       ({"pedestrians": []}, "pedestrians_latents"),
                       ({"pedestrians": [np.zeros((3, 32, 32), bool)],
                         "pedestrians_latents": [np.zeros((3, 3), np.float32)]}, "64"),
                       ({"pedestrians": [np.zeros((3, 64, 64), bool)],
                         "pedestrians_latents": [np.zeros((2, 3), np.float32)]}, "latents of shape"),
                       # float masks with values between 0 and 1 are not masks
                       ({"pedestrians": [np.full((3, 64, 64), 0.5, np.float32)],
                         "pedestrians_latents": [np.zeros((3, 3), np.float32)]}, r"not binary.*0\.5")]:
        path = tmp_path / "wrong.pickle"
        path.write_bytes(pickle.dumps(obj))
        with pytest.raises(ClicaError, match=match):
            load_kitti_pickle(path)
    # through the CLI: one line on stderr, exit status 2, no traceback
    assert main(["kitti", "--data-dir", str(bad), "--max-iter", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_data_command(tmp_path, capsys):
    out = tmp_path / "d" / "kitti_peds_v2.pickle"
    args = ["data", "kitti-masks", "--output", str(out), "--seed", "7", "--sequences", "8"]
    assert main(args) == 0
    first = out.read_bytes()
    assert main(args) == 2 and "exists" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    assert out.read_bytes() == first  # deterministic from the seed
    # a negative seed (numpy's generators take none) is one line, not a traceback
    capsys.readouterr()
    assert main(["data", "kitti-masks", "--output", str(tmp_path / "n.pickle"), "--seed", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--seed must be a whole number from 0" in err
    assert not (tmp_path / "n.pickle").exists()
    masks, latents = load_kitti_pickle(out)
    assert len(masks) >= 4
