"""3DIdent: folder validation, latent layouts, batched matching, image cache, the `clica 3dident` command."""

from __future__ import annotations

import itertools
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

# torchvision.models must be imported before any headless GL (Mesa llvmpipe) context exists in this
# process: importing it afterwards segfaults (seen with torch 2.14 / torchvision 0.29 / Mesa 22). Test
# modules are imported at collection, before any render test runs.
import torchvision.models  # noqa: F401
from PIL import Image

from clica.cli import main
from clica.data import threedident as td
from clica.errors import ClicaError


def make_folder(root: Path, n: int = 120, d: int = 10, size: int = 16, seed: int = 0, width=None) -> Path:
    """A tiny folder in the published format: random latents, images that depend on them."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    raw = rng.uniform(-1, 1, (n, d)).astype(np.float32)
    np.save(root / "raw_latents.npy", raw)
    np.save(root / "latents.npy", rng.uniform(0, 1, (n, 10)).astype(np.float32))
    (root / "images").mkdir(exist_ok=True)
    w = td.image_name_width(n) if width is None else width
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        a, b, c = (raw[i, :3] + 1) / 2
        img = np.stack([a * xx + (1 - a) * yy, b * yy, c * np.ones_like(xx)], -1)
        noise = rng.uniform(0, 0.05, img.shape)
        Image.fromarray(((img + noise).clip(0, 1) * 255).astype(np.uint8)).save(
            root / "images" / f"{str(i).zfill(w)}.png")
    return root


@pytest.fixture(scope="module")
def folder10(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("td") / "ds10", n=120, d=10)


@pytest.fixture(scope="module")
def folder11(tmp_path_factory) -> Path:
    root = make_folder(tmp_path_factory.mktemp("td") / "ds11", n=60, d=11, seed=1)
    raw = np.load(root / "raw_latents.npy")
    raw[:, 3:] /= np.linalg.norm(raw[:, 3:], axis=1, keepdims=True)  # periodic part on the sphere
    np.save(root / "raw_latents.npy", raw)
    return root


# ---------------------------------------------------------------------------
# matching
# ---------------------------------------------------------------------------

def _brute(latents, q, k):
    d = ((q[:, None, :] - latents[None]) ** 2).sum(-1)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("backend", ["kdtree", "faiss"])
def test_matching_returns_true_nearest_neighbours_and_never_the_same_image(backend):
    rng = np.random.default_rng(0)
    latents = rng.uniform(-1, 1, (2000, 10)).astype(np.float32)
    m = td.LatentMatcher(latents, backend=backend)
    z = rng.uniform(-1, 1, (500, 10)).astype(np.float32)
    zt = (z + rng.normal(0, 0.1, z.shape)).astype(np.float32)
    zt[:100] = z[:100]  # forced collisions: z~'s nearest is z's image
    iz, it = m.match_pairs(z, zt)
    nz, nt = _brute(latents, z, 1)[:, 0], _brute(latents, zt, 2)
    np.testing.assert_array_equal(iz, nz)
    expected_t = np.where(nt[:, 0] != nz, nt[:, 0], nt[:, 1])
    np.testing.assert_array_equal(it, expected_t)
    assert (iz != it).all()
    assert (it[:100] == nt[:100, 1]).all()


def test_matching_is_one_search_call_per_batch(monkeypatch):
    latents = np.random.default_rng(1).uniform(-1, 1, (300, 4)).astype(np.float32)
    m = td.LatentMatcher(latents, backend="faiss")
    calls = []
    real = m.index.search
    monkeypatch.setattr(m.index, "search", lambda q, k: calls.append(len(q)) or real(q, k))
    m.match_pairs(latents[:64] + 0.01, latents[:64] - 0.01)
    assert calls == [128]
    m2 = td.LatentMatcher(latents)
    calls2 = []
    real2 = m2.search
    monkeypatch.setattr(m2, "search", lambda q, k: calls2.append(len(q)) or real2(q, k))
    m2.match_pairs(latents[:64] + 0.01, latents[:64] - 0.01)
    assert calls2 == [128]


@pytest.mark.parametrize("approximate", [False, True])
def test_faiss_threads_leave_torch_threads_alone(approximate):
    # faiss shares torch's OpenMP runtime: a global faiss thread count used to become torch's
    own = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        lat = np.random.default_rng(0).random((2000, 10), dtype=np.float32)
        m = td.LatentMatcher(lat, approximate=approximate, backend="faiss", threads=1)
        m.match_pairs(lat[:8], lat[8:16])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(own)


def test_approximate_matching_valid_and_distinct():
    rng = np.random.default_rng(2)
    latents = rng.uniform(-1, 1, (5000, 10)).astype(np.float32)
    m = td.LatentMatcher(latents, approximate=True)
    z = rng.uniform(-1, 1, (400, 10)).astype(np.float32)
    iz, it = m.match_pairs(z, z.copy())
    assert ((iz >= 0) & (iz < 5000) & (it >= 0) & (it < 5000)).all()
    assert (iz != it).all()
    exact = _brute(latents, z, 1)[:, 0]
    assert (iz == exact).mean() > 0.5  # approximate, but mostly right


# ---------------------------------------------------------------------------
# latent layouts: the original's table
# ---------------------------------------------------------------------------

# (flags, dimensions of raw_latents used, space blocks) from the original main_3dident.py
TABLE = [
    ({}, None, [("box", 3), ("sphere", 8)]),
    ({"position_only": 1}, (0, 1, 2), [("box", 3)]),
    ({"rotation_and_color_only": 1}, (3, 4, 5, 6, 7, 8, 9, 10), [("sphere", 8)]),
    ({"rotation_only": 1}, None, [("sphere", 4)]),
    ({"color_only": 1}, None, [("sphere", 5)]),
    ({"non_periodic_rotation_and_color": 1}, tuple(range(10)), [("box", 10)]),
    ({"non_periodic_rotation_and_color": 1, "rotation_and_color_only": 1}, (3, 4, 5, 6, 7, 8, 9), [("box", 7)]),
    ({"non_periodic_rotation_and_color": 1, "rotation_only": 1}, (3, 4, 5, 6), [("box", 4)]),
    ({"non_periodic_rotation_and_color": 1, "color_only": 1}, (7, 8, 9), [("box", 3)]),
    ({"non_periodic_rotation_and_color": 1, "no_spotlight_position": 1}, (0, 1, 2, 3, 4, 5, 7, 8, 9), [("box", 9)]),
    ({"non_periodic_rotation_and_color": 1, "no_spotlight_color": 1}, (0, 1, 2, 3, 4, 5, 6, 7, 9), [("box", 9)]),
    ({"non_periodic_rotation_and_color": 1, "no_spotlight": 1}, (0, 1, 2, 3, 4, 5, 7, 9), [("box", 8)]),
    ({"non_periodic_rotation_and_color": 1, "rotation_only": 1, "no_spotlight": 1}, (3, 4, 5), [("box", 3)]),
    ({"non_periodic_rotation_and_color": 1, "color_only": 1, "no_spotlight": 1}, (7, 9), [("box", 2)]),
    ({"non_periodic_rotation_and_color": 1, "rotation_and_color_only": 1, "no_spotlight_color": 1},
     (3, 4, 5, 6, 7, 9), [("box", 6)]),
]


@pytest.mark.parametrize("flags,dims,parts", TABLE)
def test_layout_matches_original_table(flags, dims, parts):
    layout = td.latent_layout(**{k: bool(v) for k, v in flags.items()})
    assert layout.dimensions == dims
    merged = [("box", sum(s for k, s in parts if k == "box"))] if all(k == "box" for k, _ in parts) else parts
    assert list(layout.parts) == merged
    assert len(layout.names) == layout.dim
    if dims is not None:
        assert len(dims) == layout.dim


FLAGS = ["position_only", "rotation_and_color_only", "rotation_only", "color_only", "no_spotlight_position",
         "no_spotlight_color", "no_spotlight", "non_periodic_rotation_and_color"]


def test_every_flag_combination_is_a_layout_or_a_clear_error():
    n_ok = 0
    for bits in itertools.product([False, True], repeat=len(FLAGS)):
        kw = dict(zip(FLAGS, bits))
        only = sum(kw[f] for f in FLAGS[:4])
        spot = kw["no_spotlight_position"] or kw["no_spotlight_color"] or kw["no_spotlight"]
        should_fail = (only > 1 or (kw["position_only"] and (spot or kw["non_periodic_rotation_and_color"]))
                       or (spot and not kw["non_periodic_rotation_and_color"]))
        if should_fail:
            with pytest.raises(ClicaError):
                td.latent_layout(**kw)
            continue
        layout = td.latent_layout(**kw)
        n_ok += 1
        assert layout.dim == layout.n_non_angular + layout.n_angular
        if layout.dimensions is not None:
            assert len(layout.dimensions) == layout.dim
        space = td.latent_space_for(layout, "l2", 0.1)
        z, zt = space.sample_pair(5, generator=torch.Generator().manual_seed(0))
        assert z.shape == zt.shape == (5, layout.dim)
    assert n_ok > 10


@pytest.mark.parametrize("cond", ["l1", "l2", "l3"])
def test_latent_space_stays_in_the_box(cond):
    layout = td.latent_layout(non_periodic_rotation_and_color=True)
    z, zt = td.latent_space_for(layout, cond, 0.3).sample_pair(2000, generator=torch.Generator().manual_seed(0))
    assert z.abs().max() <= 1 and zt.abs().max() <= 1
    assert z.min() < -0.9 and z.max() > 0.9  # the box is [-1, 1] as the original's


# ---------------------------------------------------------------------------
# folder, cache, normalisation
# ---------------------------------------------------------------------------

def test_image_names_are_padded_as_published():
    assert td.image_name_width(250_000) == 6 and td.image_name_width(25_000) == 5
    assert td.image_name_width(1000) == 3 and td.image_name_width(1001) == 4
    assert td.image_path("r", 7, 250_000).name == "000007.png"


def test_cache_equals_png_decoding(folder10, tmp_path):
    folder = td.ThreeDIdentFolder.open(folder10)
    path = td.build_image_cache(folder, cache_dir=tmp_path, progress=False)
    cache = td.open_image_cache(folder, cache_dir=tmp_path)
    assert isinstance(cache, np.memmap) and cache.dtype == np.uint8 and cache.shape == (120, 3, 16, 16)
    idx = np.array([5, 0, 119, 5, 42])
    png = td.ImageLoader(folder).load(idx)
    cached = td.ImageLoader(folder, cache=cache).load(idx)
    torch.testing.assert_close(png, cached)
    assert td.build_image_cache(folder, cache_dir=tmp_path) == path  # built once, reused
    small = td.ImageLoader(folder, size=(8, 8)).load(idx)
    assert small.shape == (5, 3, 8, 8)


def test_normalization_from_stats_file_or_published(folder10, tmp_path):
    mean, std, src = td.load_normalization(folder10)
    assert (mean, std, src) == (td.PUBLISHED_MEAN, td.PUBLISHED_STD, "published constants")
    (tmp_path / "stats.json").write_text(json.dumps({"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.1]}))
    assert td.load_normalization(tmp_path)[:2] == ((0.5, 0.4, 0.3), (0.2, 0.2, 0.1))
    (tmp_path / "stats.json").write_text("{")
    with pytest.raises(ClicaError, match="malformed"):
        td.load_normalization(tmp_path)


def test_pairs_dataset_batches(folder10):
    layout = td.latent_layout(non_periodic_rotation_and_color=True)
    space = td.latent_space_for(layout, "l2", 0.1)
    pairs = td.ThreeDIdentPairs(folder10, space, layout, batch_size=16, cache="off", seed=3)
    (z, zt), (x, xt) = pairs.batch(0)
    assert z.shape == zt.shape == (16, 10) and x.shape == xt.shape == (16, 3, 16, 16)
    raw = np.load(folder10 / "raw_latents.npy")
    rows = {tuple(r) for r in raw}
    assert all(tuple(r) in rows for r in z.numpy()) and (z != zt).any(1).all()
    (z2, _), (x2, _) = pairs.batch(0)
    assert torch.equal(z, z2) and torch.equal(x, x2)  # batch i is reproducible
    (z3, _), _ = next(iter(pairs))
    assert torch.equal(z, z3)
    seq = td.ThreeDIdentSequential(folder10, layout, cache="off")
    zs, xs = seq[3]
    assert zs.shape == (10,) and xs.shape == (3, 16, 16)
    assert sum(len(b[0]) for b in seq.batches(50)) == 120


def _write(root, **arrays):
    root.mkdir(parents=True, exist_ok=True)
    for k, v in arrays.items():
        np.save(root / f"{k}.npy", v)
    return root


@pytest.mark.parametrize("case,match", [
    ("missing_folder", "does not exist"),
    ("no_raw", "raw_latents.npy is missing"),
    ("corrupt_raw", "cannot read"),
    ("raw_1d", "2-D numeric array"),
    ("length_mismatch", "has 10 rows but latents.npy has 9"),
    ("nan", "NaN"),
    ("no_images", "images/ is missing"),
    ("bad_padding", "zero-padded to 2 digits"),
])
def test_malformed_folders_give_clear_errors(tmp_path, case, match):
    root = tmp_path / case
    good = np.random.default_rng(0).uniform(-1, 1, (10, 10)).astype(np.float32)
    if case == "no_raw":
        _write(root, latents=good)
    elif case == "corrupt_raw":
        _write(root, latents=good)
        (root / "raw_latents.npy").write_bytes(b"\x93NUMPY garbage")
    elif case == "raw_1d":
        _write(root, raw_latents=good[:, 0], latents=good)
    elif case == "length_mismatch":
        _write(root, raw_latents=good, latents=good[:9])
    elif case == "nan":
        bad = good.copy()
        bad[3, 3] = np.nan
        _write(root, raw_latents=bad, latents=good)
    elif case == "no_images":
        _write(root, raw_latents=good, latents=good)
    elif case == "bad_padding":
        make_folder(root, n=10, size=8, width=0)  # names 0.png..9.png: fine for N=10 (1 digit)
        make_folder(root, n=11, size=8, width=0)  # N=11 needs 2 digits
    with pytest.raises(ClicaError, match=match):
        td.ThreeDIdentFolder.open(root)


# ---------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------

ORIGINAL_FLAGS = (
    "--batch-size --n-eval-samples --lr --optimizer --iterations --n-log-steps --load-model --save-model "
    "--save-every --no-cuda --position-only --rotation-and-color-only --rotation-only --color-only "
    "--no-spotlight-position --no-spotlight-color --no-spotlight --non-periodic-rotation-and-color "
    "--dummy-mixing --identity-solution --identity-mixing-and-solution --approximate-dataset-nn-search "
    "--offline-dataset --faiss-omp-threads --box-constraint --sphere-constraint --workers --mode "
    "--supervised-loss --unsupervised-loss --non-periodical-conditional --sigma --encoder").split()


def test_help_lists_every_original_flag_with_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["3dident", "--help"])
    out = capsys.readouterr().out
    for flag in ORIGINAL_FLAGS:
        assert flag in out, flag
    from clica.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["3dident"]
    defaults = {a.dest: a.default for a in sub._actions}
    assert defaults["batch_size"] == 512 and defaults["n_eval_samples"] == 4096 and defaults["lr"] == 1e-4
    assert defaults["iterations"] == 30000 and defaults["n_log_steps"] == 100 and defaults["mode"] == "supervised"
    assert defaults["faiss_omp_threads"] == 16 and defaults["sigma"] == 0.1 and defaults["encoder"] == "rn18"
    assert defaults["unsupervised_loss"] == "l2" and defaults["non_periodical_conditional"] == "l2"
    assert defaults["supervised_loss"] == "mse" and defaults["optimizer"] == "adam" and defaults["workers"] == 0


def _cli(folder, tmp, *extra):
    return ["3dident", "--offline-dataset", str(folder), "--batch-size", "8", "--iterations", "1",
            "--n-log-steps", "1", "--n-eval-samples", "16", "--seed", "0", "--no-cuda",
            "--faiss-omp-threads", "1", "--image-cache", "off", *extra]


@pytest.mark.parametrize("extra,match", [
    (["--position-only", "--rotation-only"], "contradict"),
    (["--box-constraint", "fix", "--sphere-constraint", "learnable"], "contradict"),
    (["--save-every", "5"], "requires --save-model"),
    (["--tau", "0"], "--tau"),
    (["--self-weight", "-0.5"], "--self-weight"),
    (["--no-spotlight"], "only supported with --non-periodic"),
    (["--position-only", "--non-periodic-rotation-and-color"], "cannot be combined"),
    ([], "10 columns but the chosen latent space has 11"),
    (["--save-model", "/nonexistent/dir/m.pt"], "does not exist"),
    (["--sigma", "0", "--non-periodic-rotation-and-color"], "--sigma must be positive"),
])
def test_contradictory_flags_are_one_line_errors(folder10, tmp_path, capsys, extra, match):
    assert main(_cli(folder10, tmp_path, "--run-dir", str(tmp_path / "r"), *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("as_test_set", [False, True])
def test_periodic_folder_with_non_periodic_flag_is_an_error(folder10, folder11, tmp_path, capsys, as_test_set):
    # columns 3-9 of an 11-column render are sphere coordinates: indexing them as angles scores the wrong targets
    train, extra = (folder10, ["--test-dataset", str(folder11)]) if as_test_set else (folder11, [])
    argv = _cli(train, tmp_path, "--non-periodic-rotation-and-color", "--run-dir", str(tmp_path / "r"), *extra)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "has 11 columns" in err and "periodic render" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_faiss_omp_threads_does_not_set_training_threads(folder10, tmp_path):
    own = torch.get_num_threads()
    try:
        argv = _cli(folder10, tmp_path, "--non-periodic-rotation-and-color", "--run-dir", str(tmp_path / "r"),
                    "--threads", "2", "--nn-backend", "faiss")  # _cli passes --faiss-omp-threads 1
        assert main(argv) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(own)


def test_missing_dataset_is_a_one_line_error(tmp_path, capsys):
    assert main(_cli(tmp_path / "nope", tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("extra", [
    ["--mode", "unsupervised", "--unsupervised-loss", "l1", "--box-constraint", "learnable"],
    ["--mode", "unsupervised", "--unsupervised-loss", "l2", "--nn-backend", "faiss"],
    ["--mode", "unsupervised", "--unsupervised-loss", "l3", "--non-periodical-conditional", "l3"],
    ["--mode", "unsupervised", "--unsupervised-loss", "l1", "--tau", "0.2", "--self-weight", "0.01"],
    ["--mode", "unsupervised", "--unsupervised-loss", "vmf", "--sphere-constraint", "fix",
     "--non-periodical-conditional", "l1"],
    ["--mode", "supervised", "--supervised-loss", "mse", "--approximate-dataset-nn-search"],
    ["--mode", "supervised", "--supervised-loss", "r2", "--optimizer", "sgd"],
])
def test_each_loss_mode_runs_a_step(folder10, tmp_path, extra):
    run = tmp_path / "run"
    assert main(_cli(folder10, tmp_path, "--non-periodic-rotation-and-color", "--run-dir", str(run), *extra)) == 0
    rec = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert rec[-1]["step"] == 1 and np.isfinite(rec[-1]["loss"]) and "r2" in rec[-1] and "mcc" in rec[-1]
    assert len(rec[-1]["lin_mse"]) == 10 and len(rec[-1]["mse"]) == 10
    assert (run / "true_vs_predicted.png").is_file() and (run / "summary.json").is_file()


def test_periodic_layout_dummy_and_identity_settings(folder11, folder10, tmp_path):
    # default periodic layout: box(3) + sphere(8) on an 11-column folder, mixed losses
    assert main(_cli(folder11, tmp_path, "--mode", "unsupervised", "--run-dir", str(tmp_path / "a"))) == 0
    # --dummy-mixing: MLP encoder on g(z), no images loaded
    assert main(_cli(folder10, tmp_path, "--non-periodic-rotation-and-color", "--dummy-mixing",
                     "--mode", "unsupervised", "--run-dir", str(tmp_path / "b"))) == 0
    # identity mixing and solution: h = scale·z, scores are perfect
    assert main(_cli(folder10, tmp_path, "--non-periodic-rotation-and-color", "--identity-mixing-and-solution",
                     "--identity-scale", "2", "--mode", "unsupervised", "--n-eval-samples", "100",
                     "--run-dir", str(tmp_path / "c"))) == 0
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["r2"] > 0.999 and summary["mcc"] > 0.999
    # identity solution on the dummy mixing: scores of g(z) itself
    assert main(_cli(folder10, tmp_path, "--non-periodic-rotation-and-color", "--identity-solution",
                     "--dummy-mixing", "--run-dir", str(tmp_path / "d"))) == 0


def test_save_load_test_mode_and_resume(folder10, tmp_path, capsys):
    run, model = tmp_path / "run", tmp_path / "m.pt"
    base = ["--non-periodic-rotation-and-color", "--mode", "unsupervised", "--run-dir", str(run),
            "--checkpoint-every", "1"]
    args = _cli(folder10, tmp_path, *base, "--save-model", str(model), "--save-every", "1")
    args[args.index("--iterations") + 1] = "2"
    assert main(args) == 0
    assert model.is_file() and Path(f"{model}.iteration_1").is_file()
    # resume to 3 steps from the run folder
    args[args.index("--iterations") + 1] = "3"
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "from step 2" in out
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    # fewer steps than the run already has: refused in one line
    args[args.index("--iterations") + 1] = "2"
    assert main(args) == 2
    assert "already trained 3 steps, more than --iterations 2" in capsys.readouterr().err
    args[args.index("--iterations") + 1] = "3"
    # a different setting in the same folder is refused
    args2 = list(args) + ["--sigma", "0.2"]
    assert main(args2) == 2
    # test mode evaluates a loaded model
    assert main(_cli(folder10, tmp_path, "--non-periodic-rotation-and-color", "--mode", "test",
                     "--load-model", str(model), "--run-dir", str(tmp_path / "t"))) == 0
    assert "Lin. Disentanglement" in capsys.readouterr().out
    # a model of another setting does not load: clear error
    assert main(_cli(folder10, tmp_path, "--non-periodic-rotation-and-color", "--position-only", "--mode", "test",
                     "--load-model", str(model), "--run-dir", str(tmp_path / "t2"))) == 2



def test_sigterm_checkpoints_the_current_step_and_the_resumed_run_is_exact(folder10, tmp_path, monkeypatch):
    from clica.experiments import skeleton

    def argv(run):
        args = _cli(folder10, tmp_path, "--non-periodic-rotation-and-color", "--mode", "unsupervised",
                    "--run-dir", str(run), "--checkpoint-every", "100")
        args[args.index("--iterations") + 1] = "5"
        return args

    assert main(argv(tmp_path / "a")) == 0
    real_loop = skeleton.train_loop

    def terminated_loop(step, **kw):
        def stepper(i):
            if i == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return step(i)
        return real_loop(stepper, **kw)

    monkeypatch.setattr(skeleton, "train_loop", terminated_loop)
    assert main(argv(tmp_path / "b")) == 130
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["step"] == 3
    assert not (tmp_path / "b" / "summary.json").exists()
    monkeypatch.setattr(skeleton, "train_loop", real_loop)
    assert main(argv(tmp_path / "b")) == 0
    fa, fb = (torch.load(tmp_path / x / "checkpoint.pt", weights_only=False)["model"] for x in "ab")
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    # the log window is saved with the checkpoint: the resumed log equals the uninterrupted one
    strip = lambda run: [{k: v for k, v in json.loads(l).items() if k != "time_s"}  # noqa: E731
                         for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert strip(tmp_path / "a") == strip(tmp_path / "b")


def test_a_restart_without_checkpoint_starts_a_clean_log(folder10, tmp_path, capsys):
    run = tmp_path / "run"
    args = _cli(folder10, tmp_path, "--non-periodic-rotation-and-color", "--run-dir", str(run))
    args[args.index("--iterations") + 1] = "3"
    assert main(args) == 0
    (run / "checkpoint.pt").unlink()  # killed before its first checkpoint, or deleted
    assert main(args) == 0
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert "clean log" in capsys.readouterr().out

def test_dataloader_workers_see_the_same_batch_stream(folder10):
    layout = td.latent_layout(non_periodic_rotation_and_color=True)
    space = td.latent_space_for(layout, "l2", 0.1)
    pairs = td.ThreeDIdentPairs(folder10, space, layout, batch_size=8, cache="off", seed=5, start_batch=2)
    loader = torch.utils.data.DataLoader(pairs, batch_size=None, num_workers=2)
    got = [b for _, b in zip(range(4), loader)]
    for k, ((z, zt), (x, xt)) in enumerate(got):
        (ez, ezt), (ex, ext) = pairs.batch(2 + k)
        assert torch.equal(z, ez) and torch.equal(zt, ezt) and torch.equal(x, ex)


def test_load_model_saved_by_the_original(tmp_path):
    """The original saved DataParallel(f) with its SoftclipLayer bound as ``module.3.max_abs_bound``."""
    from types import SimpleNamespace

    from clica.experiments.threedident import build_encoder, load_state

    layout = td.latent_layout(non_periodic_rotation_and_color=True)
    args = SimpleNamespace(identity_solution=False, dummy_mixing=False, encoder="rn18",
                           box_constraint="learnable", sphere_constraint=None)
    f = build_encoder(args, layout)
    state = {f"module.{k}": v.clone() for k, v in f.state_dict().items()}
    state["module.3.max_abs_bound"] = torch.full((10,), 2.5)
    del state["module.3.non_periodic.width"]
    torch.save(state, tmp_path / "orig.pt")
    g = build_encoder(args, layout)
    load_state(g, tmp_path / "orig.pt")
    assert torch.equal(g[3].non_periodic.width, torch.full((10,), 2.5))
    torch.testing.assert_close(g[2].weight, f[2].weight)
    state.pop("module.2.weight")
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ClicaError, match=r"cannot load .*broken\.pt into this encoder: 1 missing key \(e\.g\. "
                                         r"2\.weight\)"):
        load_state(build_encoder(args, layout), tmp_path / "broken.pt")


def _record_normalizations(monkeypatch) -> list:
    """The (mean, std) of every held-out or test-mode dataset made from now on, in order."""
    seen = []

    class Recording(td.ThreeDIdentSequential):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            seen.append(self.normalization)

    monkeypatch.setattr(td, "ThreeDIdentSequential", Recording)
    return seen


def test_test_dataset_is_normalised_like_the_training_images(folder10, tmp_path, monkeypatch):
    """A held-out folder with its own stats.json is still normalised with the training folder's statistics."""
    import shutil

    test_folder = tmp_path / "held_out"
    shutil.copytree(folder10, test_folder)
    (test_folder / "stats.json").write_text(json.dumps({"mean": [0.6, 0.5, 0.4], "std": [0.3, 0.3, 0.3]}))
    seen = _record_normalizations(monkeypatch)
    assert main(_cli(folder10, tmp_path, "--non-periodic-rotation-and-color", "--mode", "supervised",
                     "--test-dataset", str(test_folder), "--run-dir", str(tmp_path / "run"))) == 0
    assert seen == [(td.PUBLISHED_MEAN, td.PUBLISHED_STD)]


def test_tau_and_self_weight_reach_the_loss():
    from clica.cli import build_parser
    from clica.experiments.threedident import build_loss

    layout = td.latent_layout(non_periodic_rotation_and_color=True)
    for argv, (tau, weight) in ([], (1.0, 1.0)), (["--tau", "0.2", "--self-weight", "0.01"], (0.2, 0.01)):
        args = build_parser().parse_args(["3dident", "--offline-dataset", "x", *argv])
        loss = build_loss(args, layout)
        assert (loss.tau, loss.self_weight) == (tau, weight)


def test_constant_latent_is_refused_and_short_eval_folder_is_said(folder10, tmp_path, capsys):
    import shutil

    const = tmp_path / "const"
    shutil.copytree(folder10, const)
    raw = np.load(const / "raw_latents.npy")
    raw[:, 6] = 0.25  # a --fixed-spotlight render: the spotlight angle never varies
    np.save(const / "raw_latents.npy", raw)
    assert main(_cli(const, tmp_path, "--non-periodic-rotation-and-color", "--run-dir", str(tmp_path / "a"))) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "spotlight" in err and "single value" in err
    # dropping the latent makes the folder usable
    assert main(_cli(const, tmp_path, "--non-periodic-rotation-and-color", "--no-spotlight-position",
                     "--run-dir", str(tmp_path / "b"))) == 0
    # more evaluation samples than the test folder holds: said, and all of them are used
    assert main(_cli(folder10, tmp_path, "--non-periodic-rotation-and-color", "--test-dataset", str(folder10),
                     "--n-eval-samples", "500", "--run-dir", str(tmp_path / "c"))) == 0
    assert "--n-eval-samples 500 but" in capsys.readouterr().out


def test_diverged_encoder_is_a_one_line_error(folder10, tmp_path, capsys, monkeypatch):
    # non-finite encodings used to end in a LinAlgError traceback from the linear fit
    from clica.experiments import threedident as exp

    real = exp.build_encoder

    class Diverged(torch.nn.Module):
        def __init__(self, f):
            super().__init__()
            self.f = f

        def forward(self, x):
            return self.f(x) * float("nan")

    monkeypatch.setattr(exp, "build_encoder", lambda args, layout: Diverged(real(args, layout)))
    assert main(_cli(folder10, tmp_path, "--non-periodic-rotation-and-color", "--mode", "supervised",
                     "--run-dir", str(tmp_path / "r"))) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "diverged" in err


@pytest.mark.parametrize("cache", ["off", "build"])
def test_images_of_another_size_are_refused_and_greyscale_is_converted_and_said(folder10, tmp_path, capsys, cache):
    import shutil

    td.images._CONVERTED_MODES.clear()  # said once per process
    bad = tmp_path / "bad"
    shutil.copytree(folder10, bad, ignore=shutil.ignore_patterns("cache"))
    names = sorted((bad / "images").iterdir())
    for p in names[1:]:  # greyscale images: converted to RGB, said once
        Image.open(p).convert("L").save(p)
    argv = _cli(bad, tmp_path, "--non-periodic-rotation-and-color", "--image-cache", cache,
                "--n-eval-samples", "120", "--run-dir", str(tmp_path / f"a{cache}"))
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("converted to RGB") == 1
    for p in names[1:]:  # images of another size than the first: refused
        Image.open(p).resize((8, 8)).save(p)
    shutil.rmtree(bad / "cache", ignore_errors=True)
    argv[argv.index("--run-dir") + 1] = str(tmp_path / f"b{cache}")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is 8x8 but the folder's images are 16x16" in err


def test_more_images_than_latents_is_refused(folder10, tmp_path):
    import shutil

    short = tmp_path / "short"
    shutil.copytree(folder10, short, ignore=shutil.ignore_patterns("cache"))
    for name in ("raw_latents.npy", "latents.npy"):
        np.save(short / name, np.load(short / name)[:110])
    with pytest.raises(ClicaError, match="more images than the 110 rows"):
        td.ThreeDIdentFolder.open(short)


def test_test_mode_uses_the_statistics_the_model_was_trained_with(folder10, tmp_path, monkeypatch, capsys):
    """One model's score must not depend on which folder a stats.json happens to sit in."""
    import shutil

    train = tmp_path / "train"
    shutil.copytree(folder10, train, ignore=shutil.ignore_patterns("cache"))
    (train / "stats.json").write_text(json.dumps({"mean": [0.4, 0.3, 0.2], "std": [0.2, 0.25, 0.3]}))
    held_out = tmp_path / "held_out"
    shutil.copytree(folder10, held_out, ignore=shutil.ignore_patterns("cache"))
    model = tmp_path / "f.pt"
    assert main(_cli(train, tmp_path, "--non-periodic-rotation-and-color", "--save-model", str(model),
                     "--run-dir", str(tmp_path / "run"))) == 0
    assert torch.load(model, weights_only=True)["normalization"] == {"mean": [0.4, 0.3, 0.2], "std": [0.2, 0.25, 0.3]}
    seen = _record_normalizations(monkeypatch)
    test = ["--non-periodic-rotation-and-color", "--mode", "test", "--load-model", str(model)]
    summaries = []
    for k, stats in enumerate([None, {"mean": [0.6, 0.5, 0.4], "std": [0.3, 0.3, 0.3]}]):
        if stats:  # a stats.json of its own in the test folder changes nothing by default
            (held_out / "stats.json").write_text(json.dumps(stats))
        assert main(_cli(held_out, tmp_path, *test, "--run-dir", str(tmp_path / f"t{k}"))) == 0
        summaries.append(json.loads((tmp_path / f"t{k}" / "summary.json").read_text()))
    assert seen == [((0.4, 0.3, 0.2), (0.2, 0.25, 0.3))] * 2
    assert summaries[0]["r2"] == summaries[1]["r2"] and summaries[0]["mcc"] == summaries[1]["mcc"]
    assert "the statistics" in capsys.readouterr().out
    # --normalization folder: the folder's own statistics, as before
    assert main(_cli(held_out, tmp_path, *test, "--normalization", "folder", "--run-dir", str(tmp_path / "t2"))) == 0
    assert seen[-1] == ((0.6, 0.5, 0.4), (0.3, 0.3, 0.3))
    # a bare state dict (the original's, or an older clica's) has no statistics: the folder's, said
    torch.save(torch.load(model, weights_only=True)["model"], tmp_path / "bare.pt")
    test[-1] = str(tmp_path / "bare.pt")
    assert main(_cli(held_out, tmp_path, *test, "--run-dir", str(tmp_path / "t3"))) == 0
    assert seen[-1] == ((0.6, 0.5, 0.4), (0.3, 0.3, 0.3)) and "carries no image statistics" in capsys.readouterr().out


def test_test_mode_without_a_seed_repeats_its_scores(folder10, tmp_path):
    """An evaluation is a measurement: without --seed, --mode test samples from the fixed seed 0."""
    model = tmp_path / "f.pt"
    assert main(_cli(folder10, tmp_path, "--non-periodic-rotation-and-color", "--save-model", str(model),
                     "--run-dir", str(tmp_path / "run"))) == 0
    test = _cli(folder10, tmp_path, "--non-periodic-rotation-and-color", "--mode", "test", "--load-model", str(model),
                "--n-eval-samples", "40")
    del test[test.index("--seed"):test.index("--seed") + 2]
    runs = [tmp_path / f"t{k}" for k in range(2)]
    for run in runs:
        assert main([*test, "--run-dir", str(run)]) == 0
    first, second = (json.loads((run / "summary.json").read_text()) for run in runs)
    assert first["seed"] == second["seed"] == 0
    assert (first["r2"], first["mcc"]) == (second["r2"], second["mcc"])


def test_a_locked_run_folder_is_refused(folder10, tmp_path, capsys):
    from clica.runs import FolderLock

    run = tmp_path / "run"
    with FolderLock(run):  # another process's lock (flock treats each open file separately)
        assert main(_cli(folder10, tmp_path, "--non-periodic-rotation-and-color", "--run-dir", str(run))) == 2
    assert "in use by another clica process" in capsys.readouterr().err
    assert not (run / "config.json").exists()


def test_image_cache_is_keyed_to_the_folders_content(tmp_path):
    # a folder re-rendered with other latents (same count, same size) used to reuse the old cache
    folder = make_folder(tmp_path / "ds", n=30, seed=0)
    td.build_image_cache(td.ThreeDIdentFolder.open(folder), progress=False)
    make_folder(folder, n=30, seed=1)  # re-rendered in place with other latents
    f = td.ThreeDIdentFolder.open(folder)
    assert td.open_image_cache(f) is None  # the stale cache is not used
    path = td.build_image_cache(f, progress=False)
    assert len(list((folder / "cache").glob("*.npy"))) == 1  # the stale one was removed
    cache = np.load(path, mmap_mode="r")
    assert np.array_equal(cache[7], td.decode_png(f.image_path(7)).transpose(2, 0, 1))


def test_image_cache_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "ds", n=12, seed=0)

    def full(fd, offset, length):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(td.cache.os, "posix_fallocate", full)
    with pytest.raises(ClicaError, match="no space left on device while writing"):
        td.build_image_cache(td.ThreeDIdentFolder.open(folder), progress=False)
    assert not list((folder / "cache").iterdir())


def test_a_python_config_takes_the_image_size_as_the_flag_does():
    """ThreeDIdentConfig(image_size=32), the README's twin of --image-size 32, failed deep in the loader."""
    from clica.experiments.threedident import image_size_of

    assert image_size_of(32) == image_size_of("32") == (32, 32)
    assert image_size_of("32x48") == image_size_of((32, 48)) == image_size_of([32, 48]) == (32, 48)
    assert image_size_of(None) is None
    with pytest.raises(ClicaError, match="--image-size"):
        image_size_of(4)
