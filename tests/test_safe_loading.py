"""Hostile and malformed files: loading never runs code, and every bad file is a one-line error.

Checkpoints and models are read with ``torch.load(weights_only=True)``, the KITTI
pickle with an unpickler that only rebuilds numpy arrays; a file whose pickle
would call a function (here: ``open(MARKER, "w")``) is refused before anything
runs, and the CLI exits 2 with one line naming the file.
"""

import copy
import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from test_threedident import make_folder

from clica.cli import main
from clica.data.kitti_masks import SyntheticConfig, generate_synthetic, load_kitti_pickle, write_kitti_pickle
from clica.errors import ClicaError
from clica.runs import RunDir, check_fields, load_torch_file


class CreatesFile:
    """Unpickling this calls ``open(path, "w")``: the file appears iff the loader ran the payload."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def one_line_error(capsys, *needles) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def refused(capsys, path, marker) -> None:
    assert not marker.exists(), "the payload ran"
    one_line_error(capsys, str(path), "holds objects other than tensors and plain data", "not loaded")


# --------------------------------------------------------------------------- runs, made once per module

@pytest.fixture(scope="module", autouse=True)
def fast_runs():
    """Runs here only make files to load: each mixing g is built once per arguments (it depends on
    nothing else) from a pool of 1,000 instead of 25,000 random matrices (seconds), no figure is drawn."""
    from clica import mixing, plots

    real, cache = mixing.invertible_mlp, {}

    def cached(*args, **kwargs):
        key = (args, tuple(sorted((k, v) for k, v in kwargs.items() if k != "say")))  # say: who hears it
        if key not in cache:
            cache[key] = real(*args, **{**kwargs, "n_iter_cond_thresh": 1000})
        return copy.deepcopy(cache[key])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mixing, "invertible_mlp", cached)
        mp.setattr(plots, "true_vs_predicted", lambda *args, **kwargs: None)
        yield


MLP = ["mlp", "--n", "3", "--batch-size", "16", "--n-log-steps", "10", "--num-eval-batches", "1", "--seed", "5",
       "--n-steps", "2", "--more-unsupervised", "1", "--checkpoint-every", "1"]


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("mlp") / "run"
    assert main([*MLP, "--save-dir", str(run)]) == 0
    return run


@pytest.fixture
def mlp_copy(mlp_run, tmp_path):
    return shutil.copytree(mlp_run, tmp_path / "run")


def resume_mlp(run) -> int:
    return main([*MLP, "--save-dir", str(run), "--resume-training"])


@pytest.fixture(scope="module")
def kitti_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("kitti_data")
    write_kitti_pickle(d / "kitti_peds_v2.pickle", generate_synthetic(0, SyntheticConfig(n_sequences=12)))
    return d


def kitti(tmp_path, data_dir, *extra) -> int:
    return main(["kitti", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "out"),
                 "--ckpt-dir", str(tmp_path / "ckpt"), "--n-eval-samples", "100", "--batch-size", "8",
                 "--num-workers", "0", "--log-step", "100", "--seed", "2", *extra])


def kitti_ckpt(tmp_path):
    return tmp_path / "ckpt" / "kittimasks_1" / "1_0" / "2" / "last"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("td") / "ds", n=60, d=10)


def td(folder, run_dir, *extra) -> list[str]:
    return ["3dident", "--offline-dataset", str(folder), "--batch-size", "8", "--iterations", "1",
            "--n-log-steps", "1", "--n-eval-samples", "16", "--seed", "0", "--no-cuda", "--faiss-omp-threads", "1",
            "--image-cache", "off", "--non-periodic-rotation-and-color", "--run-dir", str(run_dir), *extra]


# --------------------------------------------------------------------------- (a) payloads never run

def test_mlp_resume_refuses_a_checkpoint_that_runs_code(mlp_copy, tmp_path, capsys):
    marker = tmp_path / "pwned"
    state = torch.load(mlp_copy / "checkpoint.pt", weights_only=True)
    torch.save({**state, "window": CreatesFile(marker)}, mlp_copy / "checkpoint.pt")
    capsys.readouterr()
    assert resume_mlp(mlp_copy) == 2
    refused(capsys, mlp_copy / "checkpoint.pt", marker)


def test_kitti_resume_and_evaluate_refuse_a_checkpoint_that_runs_code(kitti_data, tmp_path, capsys):
    marker = tmp_path / "pwned"
    ckpt = kitti_ckpt(tmp_path)
    ckpt.parent.mkdir(parents=True)
    torch.save({"iter": 1, "model_states": {"net": CreatesFile(marker)}}, ckpt)
    for extra in (["--max-iter", "2"], ["--evaluate"]):
        capsys.readouterr()
        assert kitti(tmp_path, kitti_data, *extra) == 2
        refused(capsys, ckpt, marker)


def test_3dident_load_model_and_resume_refuse_files_that_run_code(folder, tmp_path, capsys):
    marker = tmp_path / "pwned"
    model = tmp_path / "model.pt"
    torch.save({"0.weight": CreatesFile(marker)}, model)
    assert main(td(folder, tmp_path / "t", "--mode", "test", "--load-model", str(model))) == 2
    refused(capsys, model, marker)
    # the legacy (non-zip) torch format and a plain pickle are refused as well
    torch.save({"model": CreatesFile(marker)}, model, _use_new_zipfile_serialization=False)
    assert main(td(folder, tmp_path / "t", "--mode", "test", "--load-model", str(model))) == 2
    refused(capsys, model, marker)
    model.write_bytes(pickle.dumps({"model": CreatesFile(marker)}))
    assert main(td(folder, tmp_path / "t", "--mode", "test", "--load-model", str(model))) == 2
    refused(capsys, model, marker)

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"command": "3dident", "seed": 0}))
    torch.save({"step": 1, "model": {}, "optimizer": CreatesFile(marker)}, run / "checkpoint.pt")
    assert main(td(folder, run, "--mode", "unsupervised")) == 2
    refused(capsys, run / "checkpoint.pt", marker)


def test_refusal_names_what_was_refused(tmp_path):
    path = tmp_path / "f.pt"
    torch.save([CreatesFile(tmp_path / "pwned")], path)
    with pytest.raises(ClicaError, match=r"f\.pt holds objects other than tensors .*\(\S*open\)"):
        load_torch_file(path)
    assert not (tmp_path / "pwned").exists()


# --------------------------------------------------------------------------- (b) the KITTI pickle

def test_kitti_pickle_refuses_anything_but_numpy_arrays(kitti_data, tmp_path, capsys):
    marker = tmp_path / "pwned"
    data = generate_synthetic(0, SyntheticConfig(n_sequences=3))
    path = tmp_path / "kitti_peds_v2.pickle"
    path.write_bytes(pickle.dumps({**data, "extra": CreatesFile(marker)}))
    with pytest.raises(ClicaError, match=r"refers to (io|builtins)\.open") as info:
        load_kitti_pickle(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()
    assert main(["kitti", "--data-dir", str(path), "--max-iter", "1", "--num-workers", "0"]) == 2
    one_line_error(capsys, str(path), "open")
    assert not marker.exists()


def _as_numpy_core(blob: bytes, protocol: int) -> bytes:
    """The same pickle, referring to numpy.core.* (numpy 1's names) instead of numpy._core.*."""
    if protocol < 4:  # GLOBAL "module\nname\n": text
        out = blob.replace(b"numpy._core.", b"numpy.core.")
    else:  # SHORT_BINUNICODE: one length byte before the text
        out = blob
        for mod in (b"numpy._core.multiarray", b"numpy._core.numeric"):
            new = mod.replace(b"._core.", b".core.")
            out = out.replace(bytes([0x8C, len(mod)]) + mod, bytes([0x8C, len(new)]) + new)
    assert b"numpy.core." in out and b"numpy._core." not in out
    return out


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_kitti_pickle_of_every_protocol_and_numpy_naming_loads(tmp_path, protocol):
    data = generate_synthetic(1, SyntheticConfig(n_sequences=3))
    blob = pickle.dumps(data, protocol=protocol)
    if b"numpy._core." not in blob:
        pytest.skip("this numpy pickles under numpy.core already")
    for name, content in (("new", blob), ("old", _as_numpy_core(blob, protocol))):
        path = tmp_path / f"{name}.pickle"
        path.write_bytes(content)
        masks, latents = load_kitti_pickle(path)
        assert len(masks) == len(data["pedestrians"])
        for a, b in zip(masks + latents, data["pedestrians"] + data["pedestrians_latents"]):
            np.testing.assert_array_equal(np.asarray(a), b)


def test_synthetic_file_and_numpy_scalars_load(tmp_path):
    data = generate_synthetic(2, SyntheticConfig(n_sequences=3))
    write_kitti_pickle(tmp_path / "k.pickle", data)
    masks, _ = load_kitti_pickle(tmp_path / "k.pickle")
    assert len(masks) == 3
    (tmp_path / "s.pickle").write_bytes(pickle.dumps({**data, "scale": np.float32(2.5)}))
    assert len(load_kitti_pickle(tmp_path / "s.pickle")[0]) == 3


# --------------------------------------------------------------------------- (c) malformed files

@pytest.mark.parametrize("content,needle", [
    ({}, "lacks phase, phase_index, step"),
    ({"foo": 1}, "lacks phase"),
    ([1, 2], "holds a list"),
])
def test_mlp_malformed_checkpoint(mlp_copy, capsys, content, needle):
    torch.save(content, mlp_copy / "checkpoint.pt")
    capsys.readouterr()
    assert resume_mlp(mlp_copy) == 2
    one_line_error(capsys, str(mlp_copy / "checkpoint.pt"), needle)


def test_mlp_checkpoint_with_wrong_field_types_or_shapes(mlp_copy, capsys):
    ckpt = mlp_copy / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    torch.save({**state, "step": "two"}, ckpt)
    capsys.readouterr()
    assert resume_mlp(mlp_copy) == 2
    one_line_error(capsys, str(ckpt), "step is a str, not int")
    enc = {k: torch.zeros(1) for k in state["encoder"]}
    torch.save({**state, "encoder": enc}, ckpt)
    assert resume_mlp(mlp_copy) == 2
    one_line_error(capsys, str(ckpt), "of another shape")
    torch.save({**state, "data_rng": torch.zeros(3)}, ckpt)
    assert resume_mlp(mlp_copy) == 2
    one_line_error(capsys, str(ckpt), "random generator state does not fit")


@pytest.mark.parametrize("config,needle", [
    ([1, 2], "holds a list"),
    ("drop-seed", "has no seed"),
])
def test_mlp_malformed_config(mlp_copy, capsys, config, needle):
    path = mlp_copy / "config.json"
    if config == "drop-seed":
        config = {k: v for k, v in json.loads(path.read_text()).items() if k != "seed"}
    path.write_text(json.dumps(config))
    capsys.readouterr()
    assert resume_mlp(mlp_copy) == 2
    one_line_error(capsys, str(path), needle)


@pytest.mark.parametrize("content,needle", [
    ({}, "lacks model_states, model_states.net"),
    ({"model_states": {"foo": 1}}, "lacks model_states.net"),
    ([], "holds a list"),
    ({"model_states": {"net": {"foo": torch.zeros(1)}}}, "missing keys"),
])
def test_kitti_malformed_checkpoint(kitti_data, tmp_path, capsys, content, needle):
    ckpt = kitti_ckpt(tmp_path)
    ckpt.parent.mkdir(parents=True)
    torch.save(content, ckpt)
    assert kitti(tmp_path, kitti_data, "--evaluate") == 2
    one_line_error(capsys, str(ckpt), needle)


@pytest.mark.parametrize("content,needle", [
    ({}, "lacks step, model"),
    ({"step": 1, "model": [1]}, "model is a list, not dict"),
    ([], "holds a list"),
])
def test_3dident_malformed_resume_checkpoint(folder, tmp_path, capsys, content, needle):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"command": "3dident", "seed": 0}))
    torch.save(content, run / "checkpoint.pt")
    assert main(td(folder, run, "--mode", "unsupervised")) == 2
    one_line_error(capsys, str(run / "checkpoint.pt"), needle)


def test_3dident_load_model_of_another_kind_is_one_short_line(folder, tmp_path, capsys):
    model = tmp_path / "m.pt"
    for content, needle in (({"foo": torch.zeros(2)}, "missing keys"), ([1, 2], "holds a list"),
                            ({1: torch.zeros(1)}, "not a state dict")):
        torch.save(content, model)
        assert main(td(folder, tmp_path / "t", "--mode", "test", "--load-model", str(model))) == 2
        one_line_error(capsys, f"cannot load {model} into the rn18 encoder (10 latents)", needle)
    # another architecture: the MLP of --dummy-mixing into a ResNet
    assert main(td(folder, tmp_path / "d", "--dummy-mixing", "--save-model", str(model))) == 0
    capsys.readouterr()
    assert main(td(folder, tmp_path / "t", "--mode", "test", "--load-model", str(model))) == 2
    err = one_line_error(capsys, "missing keys (e.g.", "unexpected (e.g.")
    assert len(err) < 400
    # same keys, another shape
    state = torch.load(model, weights_only=True)["model"]  # --save-model: {"model": ..., "normalization": ...}
    key = next(iter(state))
    torch.save({**state, key: torch.zeros(1, 1)}, model)
    assert main(td(folder, tmp_path / "t2", "--mode", "test", "--load-model", str(model), "--dummy-mixing")) == 2
    one_line_error(capsys, "into the MLP encoder (10 latents)", f"1 of another shape (e.g. {key}: (1, 1) in the file")


def test_check_fields_names_nested_fields(tmp_path):
    with pytest.raises(ClicaError, match=r"f\.pt is not a thing: it lacks a\.b"):
        check_fields({"a": {}}, tmp_path / "f.pt", {"a.b": int}, what="a thing")
    assert check_fields({"a": {"b": 1}}, "f", {"a.b": int}, {"c": str}) == {"a": {"b": 1}}


# --------------------------------------------------------------------------- (d) what runs save loads safely

def test_mlp_checkpoints_load_safely_and_resume(mlp_copy, capsys):
    for name in ("checkpoint.pt", "supervised_f.pt", "unsupervised_f.pt"):
        torch.load(mlp_copy / name, weights_only=True)
    capsys.readouterr()
    assert main([*MLP, "--n-steps", "3", "--save-dir", str(mlp_copy), "--resume-training"]) == 0
    assert "resuming from step 2" in capsys.readouterr().out


def test_kitti_checkpoint_loads_safely_and_resumes(kitti_data, tmp_path, capsys):
    assert kitti(tmp_path, kitti_data, "--max-iter", "2") == 0
    state = torch.load(kitti_ckpt(tmp_path), weights_only=True)
    assert state["iter"] == 2 and torch.is_tensor(state["loader"]["generator"])
    assert kitti(tmp_path, kitti_data, "--max-iter", "3") == 0
    assert "at iteration 2" in capsys.readouterr().out
    assert kitti(tmp_path, kitti_data, "--evaluate") == 0


def test_3dident_checkpoint_and_saved_model_load_safely(folder, tmp_path, capsys):
    # the MLP encoder of --dummy-mixing: a ResNet's files hold the same kinds of objects, at a higher cost
    run, model = tmp_path / "run", tmp_path / "m.pt"
    assert main(td(folder, run, "--mode", "unsupervised", "--dummy-mixing", "--save-model", str(model))) == 0
    torch.load(run / "checkpoint.pt", weights_only=True)
    torch.load(model, weights_only=True)
    argv = td(folder, run, "--mode", "unsupervised", "--dummy-mixing")
    argv[argv.index("--iterations") + 1] = "2"
    assert main(argv) == 0
    assert "from step 1" in capsys.readouterr().out
    # DataParallel's "module." prefixes still load
    state = {f"module.{k}": v for k, v in torch.load(model, weights_only=True)["model"].items()}
    torch.save(state, model)
    assert main(td(folder, tmp_path / "t", "--mode", "test", "--dummy-mixing", "--load-model", str(model))) == 0
    assert RunDir(tmp_path / "t").read_config()["seed"] == 0
