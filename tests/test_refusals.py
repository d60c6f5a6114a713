"""Faults, second pass: run folders only where they belong, one line for every flag value, and save
files checked before anything is built from them. Each refusal is one line, exit 2, and leaves
nothing behind."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_threedident import make_folder

from clica import ContrastiveICA
from clica.cli import main
from clica.data.kitti_masks import SyntheticConfig, generate_synthetic, write_kitti_pickle
from clica.errors import ClicaError

MLP = ["mlp", "--n", "3", "--batch-size", "32", "--n-steps", "2", "--n-log-steps", "1", "--seed", "0",
       "--preset", "headline", "--num-eval-batches", "1"]


def _3dident(dataset, *extra):
    return ["3dident", "--offline-dataset", str(dataset), "--non-periodic-rotation-and-color", "--batch-size", "4",
            "--iterations", "1", "--n-log-steps", "1", "--n-eval-samples", "16", "--seed", "0", "--no-cuda",
            "--image-cache", "off", *extra]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("td") / "ds", n=40, size=16)


@pytest.fixture(scope="module")
def kitti_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("kitti")
    write_kitti_pickle(d / "kitti_peds_v2.pickle", generate_synthetic(0, SyntheticConfig(n_sequences=12)))
    return d


def _kitti(data_dir, out, *extra):
    return ["kitti", "--data-dir", str(data_dir), "--output-dir", str(out), "--ckpt-dir", str(out / "ckpt"),
            "--n-eval-samples", "100", "--batch-size", "8", "--num-workers", "0", "--max-iter", "2",
            "--log-step", "1", *extra]


def _refused(capsys, rc, want):
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and want in err, err


def _someone_elses(tmp_path) -> Path:
    folder = tmp_path / "package"
    folder.mkdir()
    (folder / "__init__.py").write_text("VALUE = 1\n")
    return folder


def _contents(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --------------------------------------------------------------------------- run folders

def test_mlp_refuses_a_folder_that_holds_no_run_and_leaves_it_alone(tmp_path, capsys):
    folder = _someone_elses(tmp_path)
    _refused(capsys, main([*MLP, "--save-dir", str(folder)]), "holds no clica mlp run")
    assert _contents(folder) == ["__init__.py"]


def test_3dident_refuses_a_folder_that_holds_no_run(dataset, tmp_path, capsys):
    folder = _someone_elses(tmp_path)
    _refused(capsys, main(_3dident(dataset, "--mode", "unsupervised", "--run-dir", str(folder))),
             "holds no clica 3dident run")
    assert _contents(folder) == ["__init__.py"]


def test_kitti_refuses_a_run_folder_that_holds_something_else(kitti_data, tmp_path, capsys):
    seed_folder = tmp_path / "out" / "kittimasks_1" / "1_0" / "2"
    seed_folder.mkdir(parents=True)
    (seed_folder / "notes.txt").write_text("mine\n")
    _refused(capsys, main(_kitti(kitti_data, tmp_path / "out")), "holds no clica kitti run")
    assert _contents(seed_folder) == ["notes.txt"]


def test_a_run_of_another_command_is_refused(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*MLP, "--save-dir", str(run)]) == 0
    capsys.readouterr()
    _refused(capsys, main(_3dident(dataset, "--mode", "unsupervised", "--run-dir", str(run))),
             "holds a clica mlp run, not a 3dident run")


def test_an_empty_folder_is_used_and_a_run_of_the_same_command_resumes(tmp_path, capsys):
    run = tmp_path / "empty"
    run.mkdir()
    assert main([*MLP, "--save-dir", str(run)]) == 0
    assert main([*MLP, "--save-dir", str(run), "--resume-training"]) == 0


def test_table_and_render_refuse_folders_that_hold_something_else(tmp_path, capsys):
    folder = _someone_elses(tmp_path)
    _refused(capsys, main(["table", "mlp", "--rows", "box-laplace-l1", "--seeds", "1", "--steps", "2",
                           "--output-dir", str(folder)]), "holds no clica table")
    _refused(capsys, main(["render", "latents", "--output-folder", str(folder), "--n-points", "10"]),
             "holds no 3DIdent dataset")
    assert _contents(folder) == ["__init__.py"]


# --------------------------------------------------------------------------- one line for every flag value

@pytest.mark.parametrize("extra,want", [
    (["--device", "bogus"], "is not a torch device"),
    (["--seed", "99999999999999999999"], "--seed must be a whole number from 0 to 4294967295"),
    (["--seed", "-1"], "--seed must be a whole number"),
    (["--n", "100000"], "needs at least"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be ≥ 1"),
    (["--checkpoint-every", "-5"], "--checkpoint-every must be ≥ 1"),
    (["--hidden-scale", "0"], "--hidden-scale must be positive"),
])
def test_mlp_flag_values_are_one_line_and_leave_no_run_folder(tmp_path, capsys, extra, want):
    run = tmp_path / "run"
    _refused(capsys, main([*MLP, "--save-dir", str(run), *extra]), want)
    assert not run.exists()


def test_mlp_memory_is_estimated_before_anything_is_allocated(monkeypatch, tmp_path, capsys):
    from clica import resources

    monkeypatch.setattr(resources, "available_memory", lambda: 10**9)
    allocated = []
    monkeypatch.setattr("clica.mixing.invertible_mlp", lambda *a, **k: allocated.append(a))
    _refused(capsys, main([*MLP, "--n", "200", "--save-dir", str(tmp_path / "run")]),
             "--n 200 with --batch-size 32")
    _refused(capsys, main([*MLP, "--rej-mult", str(10**12)]), "--rej-mult 1000000000000")
    _refused(capsys, main([*MLP, "--n-mixing-layer", str(10**12)]), "--n-mixing-layer 1000000000000")
    _refused(capsys, main([*MLP, "--m-p", str(10**12)]), "gives latents that")
    assert not allocated and not (tmp_path / "run").exists()


def test_a_file_name_too_long_is_one_line(tmp_path, capsys):
    _refused(capsys, main([*MLP, "--save-dir", str(tmp_path / ("x" * 300))]), "File name too long")


@pytest.mark.parametrize("extra,want", [
    (["--mode", "unsupervised", "--device", "bogus"], "is not a torch device"),
    (["--mode", "unsupervised", "--seed", "99999999999999999999"], "--seed must be a whole number"),
    (["--mode", "supervised", "--image-size", "16", "--batch-size", "1"], "BatchNorm"),
])
def test_3dident_flag_values_are_one_line_and_leave_no_run_folder(dataset, tmp_path, capsys, extra, want):
    run = tmp_path / "run"
    argv = _3dident(dataset, "--run-dir", str(run), *extra)
    del argv[argv.index("--seed"):argv.index("--seed") + 2]
    if "--seed" not in extra:
        argv += ["--seed", "0"]
    _refused(capsys, main(argv), want)
    assert not run.exists()


def test_a_refused_load_model_leaves_no_run_folder(dataset, tmp_path, capsys):
    model = tmp_path / "model.pt"
    torch.save({"not": "a model"}, model)
    run = tmp_path / "nested" / "run"
    _refused(capsys, main(_3dident(dataset, "--mode", "test", "--load-model", str(model), "--run-dir", str(run))),
             str(model))
    assert not (tmp_path / "nested").exists()


def test_a_refusal_in_an_empty_folder_leaves_it_empty(dataset, tmp_path, capsys):
    model = tmp_path / "model.pt"
    torch.save({"not": "a model"}, model)
    run = tmp_path / "run"
    run.mkdir()
    _refused(capsys, main(_3dident(dataset, "--mode", "test", "--load-model", str(model), "--run-dir", str(run))),
             str(model))
    assert _contents(run) == []


@pytest.mark.parametrize("command", [["kitti"], ["data", "kitti-masks", "--output", "x.pickle"],
                                     ["render", "latents", "--output-folder", "x", "--n-points", "5"]])
def test_every_command_checks_its_seed(tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    _refused(capsys, main([*command, "--seed", str(2**64)]), "--seed must be a whole number")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- ContrastiveICA

def test_more_components_than_features_is_refused():
    X = np.random.default_rng(0).normal(size=(200, 4))
    with pytest.raises(ValueError, match="n_components=50 is more than the 4 features"):
        ContrastiveICA(n_components=50, n_steps=2).fit(X)


def test_score_refuses_a_constant_source():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    ica = ContrastiveICA(n_components=2, n_steps=2, batch_size=64, random_state=0).fit(X)
    y = np.c_[rng.normal(size=300), np.ones(300)]
    for metric in ("mcc", "r2"):
        with pytest.raises(ValueError, match="source 1 of y never varies"):
            ica.score(X, y, metric=metric)


@pytest.fixture(scope="module")
def saved_ica(tmp_path_factory):
    X = np.random.default_rng(0).normal(size=(300, 4))
    path = tmp_path_factory.mktemp("ica") / "ica.pt"
    ContrastiveICA(n_components=2, n_steps=2, batch_size=64, hidden_units=(8, 8), random_state=0).fit(X).save(path)
    return path, X


def _doctored(saved_ica, tmp_path, change):
    path, _ = saved_ica
    state = torch.load(path, weights_only=True)
    change(state)
    out = tmp_path / "doctored.pt"
    torch.save(state, out)
    return out


@pytest.mark.parametrize("change,want", [
    (lambda s: s["fitted"].update(input_shape_=[-4]), "input_shape_"),
    (lambda s: s["fitted"].update(input_shape_=[4, 4]), "input_shape_"),
    (lambda s: s["fitted"].update(n_components_=-1), "n_components_"),
    (lambda s: s["fitted"].update(n_features_in_="abc"), "n_features_in_"),
    (lambda s: s["fitted"].update(n_features_in_=7), "n_features_in_"),
    (lambda s: s["fitted"].update(mean_=torch.zeros(3, dtype=torch.float64)), "mean_"),
    (lambda s: s["fitted"].update(scale_=-torch.ones(4, dtype=torch.float64)), "scale_"),
    (lambda s: s["fitted"].update(feature_names_in_=["a"]), "feature_names_in_"),
    (lambda s: s["fitted"].update(n_iter_=-3), "n_iter_"),
    (lambda s: s["params"].update(hidden_units=[2**40]), "of another shape"),
    (lambda s: s["fitted"].update(input_shape_=[2**40]), "does not match"),
    (lambda s: s["fitted"].update(n_components_=2**40), "of another shape"),
])
def test_load_checks_a_file_before_it_builds_anything(saved_ica, tmp_path, monkeypatch, change, want):
    built = []
    real = torch.nn.Linear.__init__

    def linear(self, n_in, n_out, *a, **k):  # a module of the file's sizes built for real would show here
        if torch.empty(0).device.type != "meta":
            built.append((n_in, n_out))
        real(self, n_in, n_out, *a, **k)

    monkeypatch.setattr(torch.nn.Linear, "__init__", linear)
    with pytest.raises(ClicaError, match=want) as info:
        ContrastiveICA.load(_doctored(saved_ica, tmp_path, change))
    assert len(str(info.value).splitlines()) == 1
    assert all(max(shape) < 2**20 for shape in built), built


def test_load_of_an_intact_file_still_transforms(saved_ica):
    path, X = saved_ica
    ica = ContrastiveICA.load(path)
    assert ica.transform(X).shape == (300, 2)
    assert json.dumps(ica.get_params(), default=str)


@pytest.mark.parametrize("extra,want", [
    (["--lr", "-1", "--mode", "unsupervised"], "--lr must be positive"),
    (["--faiss-omp-threads", "0", "--mode", "unsupervised"], "--faiss-omp-threads must be ≥ 1"),
    (["--workers", str(10**12), "--mode", "unsupervised"], "--workers must be from 0"),
    (["--batch-size", str(10**12), "--mode", "unsupervised"], "needs at least"),
    (["--n-eval-samples", str(10**12), "--mode", "unsupervised"], "needs at least"),
    (["--threads", "-1", "--mode", "unsupervised"], "--threads must be from 0"),
    (["--threads", str(10**12), "--mode", "unsupervised"], "--threads must be from 0"),
    (["--identity-scale", "0", "--mode", "unsupervised"], "--identity-scale must not be 0"),
])
def test_3dident_sizes_and_counts_are_checked_before_anything_is_allocated(dataset, tmp_path, capsys, extra, want):
    run = tmp_path / "run"
    _refused(capsys, main(_3dident(dataset, "--run-dir", str(run), *extra)), want)
    assert not run.exists()


@pytest.mark.parametrize("extra,want", [
    (["--lr", "-1"], "--lr must be positive"),
    (["--beta2", "1"], "--beta2 must be in [0, 1)"),
    (["--num-workers", str(10**12)], "needs at least"),
    (["--z-dim", str(10**12)], "needs at least"),
])
def test_kitti_flag_values_are_one_line(kitti_data, tmp_path, capsys, extra, want):
    _refused(capsys, main(_kitti(kitti_data, tmp_path / "out", *extra)), want)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra,want", [
    (["--n-eval-samples", str(10**12)], "needs at least"),
    (["--log-mcc", str(10**12)], "needs at least"),
    (["--log-mcc", "-1"], "--log-mcc must be ≥ 0"),
    (["--threads", str(10**12)], "--threads must be from 0"),
    (["--model", "slowvae", "--gamma", "-1"], "--gamma must be ≥ 0"),
])
def test_kitti_evaluation_sizes_and_counts_are_one_line(kitti_data, tmp_path, capsys, extra, want):
    _refused(capsys, main(_kitti(kitti_data, tmp_path / "out", *extra)), want)
    assert not (tmp_path / "out").exists()
