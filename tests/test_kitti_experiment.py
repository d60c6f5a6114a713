"""`clica kitti`: flags, errors, the MCC protocol, a short training run, resume, evaluate, seeds, SlowVAE."""

import json

import numpy as np
import pytest
import torch

from clica.cli import build_parser, main
from clica.data.kitti_masks import KittiMasks, SyntheticConfig, generate_synthetic, write_kitti_pickle
from clica.experiments.kitti import evaluate_mcc

ORIGINAL_DEFAULTS = {
    "box_norm": 0, "p": 1, "experiment_dir": "", "evaluate": False, "specify": "", "random_search": False,
    "random_seeds": False, "seed": 2, "beta": 1, "gamma": 10, "rate_prior": 6, "data_distribution": "laplace",
    "rate_data": 1, "data_k": -1, "betavae": False, "search_beta": False, "output_dir": "outputs",
    "log_dir": "logs", "ckpt_dir": "checkpoints", "max_iter": 300000, "dataset": "kittimasks", "batch_size": 64,
    "num_workers": 2, "image_size": 64, "use_writer": False, "z_dim": 10, "lr": 1e-4, "beta1": 0.9,
    "beta2": 0.999, "ckpt_name": "last", "log_step": 1000, "save_step": 10000, "kitti_max_delta_t": 1,
    "natural_discrete": False, "verbose": False, "cuda": False, "num_runs": 10,
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("kitti_exp")
    write_kitti_pickle(d / "kitti_peds_v2.pickle", generate_synthetic(0, SyntheticConfig(n_sequences=40)))
    return d


def _run(tmp_path, data_dir, *extra):
    argv = ["kitti", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "out"),
            "--ckpt-dir", str(tmp_path / "ckpt"), "--log-dir", str(tmp_path / "logs"),
            "--n-eval-samples", "300", "--batch-size", "16", "--num-workers", "0", *extra]
    return main(argv)


def test_every_original_flag_with_its_default():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["kitti"]
    help_text = sub.format_help()
    for dest, default in ORIGINAL_DEFAULTS.items():
        flag = "--num_runs" if dest == "num_runs" else "--" + dest.replace("_", "-")
        assert flag in help_text, flag
        assert sub.get_default(dest) == default, dest


def test_augmentation_is_opt_in():
    """The original never switched augmentation on: off by default, --augment turns it on,
    --no-augment (the old opt-out) is still accepted and means the default."""
    parse = lambda *a: build_parser("kitti").parse_args(["kitti", *a]).augment  # noqa: E731
    assert parse() is False and parse("--augment") is True and parse("--no-augment") is False
    assert parse("--augment", "--no-augment") is False


@pytest.mark.parametrize("flags, augment", [([], False), (["--augment"], True)])
def test_augment_flag_reaches_the_pair_loader(tmp_path, data_dir, monkeypatch, flags, augment):
    import clica.experiments.kitti as kitti

    seen = []

    class Spy(kitti.PairLoader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.augment)

    monkeypatch.setattr(kitti, "PairLoader", Spy)
    assert _run(tmp_path, data_dir, "--max-iter", "1", "--log-step", "1", *flags) == 0
    assert seen == [augment]
    config = json.loads((tmp_path / "out" / "kittimasks_1" / "1_0" / "2" / "config.json").read_text())
    assert config["augment"] is augment


@pytest.mark.parametrize("flags, match", [
    (["--data-distribution", "laplace"], "--data-distribution concerns the factor datasets"),
    (["--rate-data", "2"], "--rate-data concerns the factor datasets"),
    (["--data-k", "3"], "--data-k concerns the factor datasets"),
    (["--natural-discrete"], "--natural-discrete"),
    (["--dataset", "natural"], "Natural Sprites"),
    (["--dataset", "cifar10"], "--dataset cifar10 is not one of kittimasks, dsprites"),
    (["--image-size", "32"], "64"),
    (["--random-seeds", "--evaluate"], "--evaluate"),
    (["--random-search", "--betavae"], "--search-beta"),
    (["--batch-size", "15"], "even"),
    (["--specify", "xyz"], "selects no metric: choose from mcc, mig, dci, sap_score"),
    (["--specify", "mcc_beta_vae_sklearn"], "beta_vae_sklearn and factor_vae_metric, which need a dataset with a "
                                            "ground-truth generator"),
    (["--specify", "factor_vae_metric"], "factor_vae_metric, which need"),
])
def test_unsupported_flags_are_one_line_errors(tmp_path, data_dir, capsys, flags, match):
    assert _run(tmp_path, data_dir, "--max-iter", "1", *flags) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_missing_data_points_to_zenodo_and_synthetic(tmp_path, capsys):
    assert main(["kitti", "--data-dir", str(tmp_path / "none"), "--max-iter", "1"]) == 2
    err = capsys.readouterr().err
    assert "3931823" in err and "clica data kitti-masks" in err and str(tmp_path / "none") in err


class _Oracle(torch.nn.Module):
    """Outputs each frame's true factors (computed from the image) and 7 noise dimensions."""

    def encode(self, x):
        m = x[:, 0]
        area = m.sum((1, 2))
        rows = torch.arange(64.0)
        com_y = (m.sum(2) * rows).sum(1) / area
        com_x = (m.sum(1) * rows).sum(1) / area
        noise = torch.randn(len(x), 7)
        return torch.cat([noise[:, :2], com_x[:, None], noise[:, 2:5], -area[:, None] ** 0.5,
                          com_y[:, None] * 3, noise[:, 5:]], 1)


def test_mcc_oracle_scores_one_and_noise_scores_low(data_dir):
    ds = KittiMasks.from_file(data_dir / "kitti_peds_v2.pickle")
    res = evaluate_mcc(_Oracle(), ds, "cpu", n_samples=2000)
    assert res["mcc"] == pytest.approx(1.0, abs=1e-9)  # Spearman: monotone maps score 1
    assert res["assignment"] == {"com_y": 7, "com_x": 2, "area": 6}

    class Noise(torch.nn.Module):
        def encode(self, x):
            return torch.randn(len(x), 10)

    assert evaluate_mcc(Noise(), ds, "cpu", n_samples=2000)["mcc"] < 0.1


def test_short_training_improves_mcc_then_resumes_and_evaluates(tmp_path, data_dir, capsys):
    run = tmp_path / "out" / "kittimasks_1" / "1_1" / "5"
    assert _run(tmp_path, data_dir, "--max-iter", "40", "--log-step", "39", "--log-mcc", "300", "--seed", "5",
                "--box-norm", "1", "--lr", "1e-3", "--save-step", "20") == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 40]
    assert records[-1]["mcc"] > records[0]["mcc"] + 0.02, records
    summary = json.loads((run / "summary.json").read_text())
    assert summary["iteration"] == 40 and 0 < summary["mcc"] <= 1
    assert (run / "evaluation" / "last" / "mcc.json").exists()
    assert (tmp_path / "ckpt" / "kittimasks_1" / "1_1" / "5" / "last").exists()

    # extend the run: it resumes from "last" at iteration 40
    assert _run(tmp_path, data_dir, "--max-iter", "42", "--log-step", "39", "--seed", "5", "--box-norm", "1",
                "--lr", "1e-3", "--save-step", "20") == 0
    assert "resuming" in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text())["iteration"] == 42
    # a different setting in the same folder is refused
    assert _run(tmp_path, data_dir, "--max-iter", "50", "--seed", "5", "--box-norm", "1", "--lr", "5e-4") == 2
    assert "--lr" in capsys.readouterr().err
    # fewer iterations than the run already has: refused in one line (it used to return the 42-step run)
    assert _run(tmp_path, data_dir, "--max-iter", "10", "--seed", "5", "--box-norm", "1", "--lr", "1e-3") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already trained 42 steps, more than --max-iter 10" in err

    # --evaluate from the checkpoint
    assert _run(tmp_path, data_dir, "--evaluate", "--seed", "5", "--box-norm", "1", "--verbose") == 0
    assert "MCC" in capsys.readouterr().out
    assert _run(tmp_path, data_dir, "--evaluate", "--seed", "6") == 2
    assert "no checkpoint" in capsys.readouterr().err

    # --specify: the original's metric names, the generator-free ones written beside mcc.json
    assert _run(tmp_path, data_dir, "--evaluate", "--seed", "5", "--box-norm", "1",
                "--specify", "mcc_mig_modularity_explicitness") == 0
    scores = json.loads((run / "evaluation" / "last" / "disentanglement.json").read_text())
    assert set(scores) >= {"mig", "modularity", "explicitness_test", "n_train", "n_test"} and "sap" not in scores
    assert scores["n_train"] == 240 and 0 <= scores["mig"] <= 1 and "results in" in capsys.readouterr().out


def test_resume_is_exact(tmp_path, data_dir):
    common = ["--seed", "3", "--lr", "1e-3", "--log-step", "100", "--num-workers", "1", "--batch-size", "8"]
    assert _run(tmp_path / "a", data_dir, "--max-iter", "8", "--save-step", "8", *common) == 0
    assert _run(tmp_path / "b", data_dir, "--max-iter", "5", "--save-step", "5", *common) == 0
    assert _run(tmp_path / "b", data_dir, "--max-iter", "8", "--save-step", "8", *common) == 0
    ck = "ckpt/kittimasks_1/1_0/3/last"
    a = torch.load(tmp_path / "a" / ck, weights_only=False)["model_states"]["net"]
    b = torch.load(tmp_path / "b" / ck, weights_only=False)["model_states"]["net"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_sigterm_resume_logs_what_an_uninterrupted_run_logs(tmp_path, data_dir, monkeypatch):
    # the log window is saved with the checkpoint: the first line after a resume used to average
    # only the steps since the resume
    import os
    import signal

    import clica.experiments.skeleton as skeleton

    common = ["--seed", "3", "--lr", "1e-3", "--log-step", "4", "--max-iter", "8", "--batch-size", "8"]
    assert _run(tmp_path / "a", data_dir, *common) == 0
    real_loop = skeleton.train_loop

    def terminated_loop(step, **kw):
        def stepper(i):
            if i == 6:
                os.kill(os.getpid(), signal.SIGTERM)
            return step(i)
        return real_loop(stepper, **kw)

    monkeypatch.setattr(skeleton, "train_loop", terminated_loop)
    assert _run(tmp_path / "b", data_dir, *common) == 130
    monkeypatch.setattr(skeleton, "train_loop", real_loop)
    assert _run(tmp_path / "b", data_dir, *common) == 0
    strip = lambda root: [{k: v for k, v in json.loads(l).items() if k != "time_s"}  # noqa: E731
                          for l in (root / "out/kittimasks_1/1_0/3/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in strip(tmp_path / "a")] == [1, 5, 8]
    assert strip(tmp_path / "a") == strip(tmp_path / "b")


def test_a_restart_without_checkpoint_starts_a_clean_log(tmp_path, data_dir, capsys):
    argv = ["--seed", "4", "--max-iter", "3", "--log-step", "1", "--save-step", "100"]
    assert _run(tmp_path, data_dir, *argv) == 0
    ckpt = tmp_path / "ckpt" / "kittimasks_1" / "1_0" / "4" / "last"
    ckpt.unlink()  # a kill before the first checkpoint (KITTI saves at 10,000 by default), or a deletion
    assert _run(tmp_path, data_dir, *argv) == 0
    run = tmp_path / "out" / "kittimasks_1" / "1_0" / "4"
    assert [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert "clean log" in capsys.readouterr().out


def test_random_seeds_and_slowvae(tmp_path, data_dir, capsys):
    assert _run(tmp_path, data_dir, "--random-seeds", "--num_runs", "2", "--max-iter", "2", "--log-step", "1") == 0
    out = capsys.readouterr().out
    assert "± " in out
    agg = json.loads((tmp_path / "out" / "kittimasks_1" / "random_seeds_contrastive_2.json").read_text())
    assert len(agg["runs"]) == 2 and np.isfinite(agg["mcc_mean"])
    assert _run(tmp_path, data_dir, "--model", "slowvae", "--max-iter", "3", "--log-step", "1",
                "--use-writer") == 0
    run = tmp_path / "out" / "kittimasks_1" / "slowvae_1_10_6" / "2"
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"recon", "kl_normal", "kl_laplace"} <= set(rec)
    assert list((tmp_path / "logs" / "kittimasks_1" / "slowvae_1_10_6" / "2").glob("events.*"))


def test_a_locked_run_folder_is_refused(tmp_path, data_dir, capsys):
    from clica.runs import FolderLock

    run = tmp_path / "out" / "kittimasks_1" / "1_0" / "2"
    with FolderLock(run):  # another process's lock (flock treats each open file separately)
        assert _run(tmp_path, data_dir, "--max-iter", "2") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "in use by another clica process" in err
    assert not (run / "config.json").exists()
