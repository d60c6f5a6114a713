"""Configs from Python and `clica rerun`: a run folder's config.json recreates the run exactly."""

import json

import pytest
from test_threedident import make_folder

from clica.cli import build_parser, main
from clica.errors import ClicaError
from clica.experiments.kitti import KittiConfig, run_kitti
from clica.experiments.rerun import side_by_side
from clica.experiments.threedident import ThreeDIdentConfig, run_3dident


def _summary(path):
    timing = {"train_time_s", "train_s", "steps_per_s", "train_seconds", "elapsed_s"}
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in timing}


def test_configs_are_the_flags_with_their_defaults():
    for command, cls in (("kitti", KittiConfig), ("3dident", ThreeDIdentConfig)):
        argv = [command] + (["--offline-dataset", "x"] if command == "3dident" else [])
        args = build_parser().parse_args(argv)
        cfg = cls.from_args(args)
        flags = {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "command"}
        assert cfg.to_dict() == flags
    assert KittiConfig().lr == build_parser().parse_args(["kitti"]).lr
    with pytest.raises(ClicaError, match="lacks offline_dataset"):
        ThreeDIdentConfig.from_dict({"mode": "test"})
    with pytest.raises(ClicaError, match="lr is 'fast'"):
        KittiConfig.from_dict({"lr": "fast"})
    with pytest.raises(ClicaError, match="not a dict"):
        KittiConfig.from_dict([1, 2])


def test_mlp_rerun_recreates_the_run(tmp_path, capsys):
    run = tmp_path / "m"
    assert main(["mlp", "--n", "3", "--batch-size", "128", "--n-steps", "6", "--n-log-steps", "2",
                 "--num-eval-batches", "2", "--only-unsupervised", "--seed", "9", "--save-dir", str(run)]) == 0
    assert main(["rerun", str(run)]) == 0
    again = tmp_path / "m-rerun"
    assert _summary(run / "summary.json") == _summary(again / "summary.json")
    assert main(["rerun", str(run)]) == 2  # the rerun folder holds a run now
    assert "already holds a run" in capsys.readouterr().err


def test_rerun_uses_the_torch_thread_count_of_the_run(tmp_path, capsys):
    """torch's CPU reductions split by thread count: a rerun on another count (another OMP_NUM_THREADS, a
    machine shared differently) trained on other numbers from step 1 on."""
    import torch

    run, own = tmp_path / "m", torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert main(["mlp", "--preset", "headline", "--n", "4", "--batch-size", "256", "--n-steps", "2",
                     "--n-log-steps", "1", "--num-eval-batches", "1", "--seed", "9", "--save-dir", str(run)]) == 0
        torch.set_num_threads(2)
        capsys.readouterr()
        assert main(["rerun", str(run)]) == 0
        assert torch.get_num_threads() == 2  # the caller's count is left as it was
    finally:
        torch.set_num_threads(own)
    out = capsys.readouterr().out
    assert "torch threads 1" in out and "all 7 scores are the same" in out, out
    again = tmp_path / "m-rerun"
    assert json.loads((again / "config.json").read_text())["torch_threads"] == 1
    assert _summary(run / "summary.json") == _summary(again / "summary.json")


def test_side_by_side_marks_the_scores_that_differ():
    original = {"seed": 1, "train_time_s": 3.0, "phases": {"u": {"mcc": 0.5, "linear_mean": 0.25}},
                "r2_per_latent": [1]}
    table = side_by_side(original, {**original, "train_time_s": 4.0, "phases": {"u": {"mcc": 0.5, "linear_mean": 0.5}}})
    lines = table.splitlines()
    assert [line.split()[0] for line in lines[2:-1]] == ["seed", "phases.u.mcc", "phases.u.linear_mean"]
    assert lines[-2].endswith("differs") and not lines[-3].endswith("differs")
    assert lines[-1] == "1 of 3 scores differ"
    assert "has no summary.json" in side_by_side(None, original)


def test_kitti_from_python_and_rerun(tmp_path, monkeypatch):
    from clica.data.kitti_masks import SyntheticConfig, generate_synthetic, write_kitti_pickle

    data = tmp_path / "kitti_peds_v2.pickle"
    write_kitti_pickle(data, generate_synthetic(0, SyntheticConfig(n_sequences=30)))
    cfg = KittiConfig(data_dir=str(data), max_iter=3, log_step=1, batch_size=16, n_eval_samples=200,
                      seed=4, output_dir=str(tmp_path / "out"), ckpt_dir=str(tmp_path / "ck"),
                      log_dir=str(tmp_path / "logs"))
    summary = run_kitti(cfg)
    assert cfg.seed == 4 and summary["seed"] == 4 and summary["iteration"] == 3
    run = tmp_path / "out" / "kittimasks_1" / "1_0" / "4"
    assert main(["rerun", str(run), "--into", str(tmp_path / "again")]) == 0
    again = tmp_path / "again" / "kittimasks_1" / "1_0" / "4"
    assert _summary(run / "summary.json") == _summary(again / "summary.json")


def test_3dident_from_python_and_rerun(tmp_path):
    folder = make_folder(tmp_path / "ds", n=60)
    cfg = ThreeDIdentConfig(offline_dataset=str(folder), non_periodic_rotation_and_color=True, mode="unsupervised",
                            batch_size=8, iterations=2, n_log_steps=1, n_eval_samples=32, seed=3, no_cuda=True,
                            image_cache="off", faiss_omp_threads=1, save_model=str(tmp_path / "f.pt"))
    summary = run_3dident(cfg, tmp_path / "r")
    assert summary["iterations"] == 2 and cfg.run_dir is None  # the caller's config is left alone
    assert main(["rerun", str(tmp_path / "r")]) == 0
    assert _summary(tmp_path / "r" / "summary.json") == _summary(tmp_path / "r-rerun" / "summary.json")
    assert (tmp_path / "r-rerun" / "f.pt").is_file()  # the original run's model file is left alone


def test_rerun_of_a_folder_without_a_run_is_one_line(tmp_path, capsys):
    assert main(["rerun", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config.json is missing" in err
