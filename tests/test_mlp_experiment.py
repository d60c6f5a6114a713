"""The `clica mlp` command: flags, clear errors, a short run that learns, resume equivalence."""

import json

import pytest
import torch

import clica.experiments.mlp as mlp
from clica.cli import build_parser, main
from clica.runs import RunDir

ORIGINAL_FLAGS = (
    "--sphere-r --box-min --box-max --sphere-norm --box-norm --only-supervised --only-unsupervised "
    "--more-unsupervised --save-dir --num-eval-batches --rej-mult --seed --act-fct --c-param --m-param "
    "--tau --n-mixing-layer --n --space-type --m-p --c-p --lr --p --batch-size --n-log-steps --n-steps "
    "--resume-training"
).split()

TINY = ["--n", "3", "--batch-size", "128", "--n-log-steps", "10", "--num-eval-batches", "2", "--seed", "5"]


def test_help_lists_every_original_flag(capsys):
    with pytest.raises(SystemExit):
        main(["mlp", "--help"])
    out = capsys.readouterr().out
    for flag in ORIGINAL_FLAGS:
        assert flag in out, flag


def test_defaults_are_the_papers():
    args = build_parser().parse_args(["mlp"])
    cfg = mlp.config_from_args(args)
    assert (cfg.n, cfg.batch_size, cfg.lr, cfg.tau, cfg.p, cfg.c_p, cfg.c_param, cfg.n_steps,
            cfg.more_unsupervised, cfg.n_mixing_layer, cfg.space_type) == (
        10, 6144, 1e-4, 1.0, 2, 2, 0.05, 100001, 3, 3, "box")


def test_fast_preset_yields_to_explicit_flags():
    cfg = mlp.config_from_args(build_parser().parse_args(["mlp", "--preset", "fast", "--lr", "0.01"]))
    assert cfg.lr == 0.01 and cfg.batch_size == mlp.PRESETS["fast"]["batch_size"] and cfg.only_unsupervised
    assert cfg.encoder_norm == "layer" and cfg.tau == mlp.PRESETS["fast"]["tau"]


@pytest.mark.parametrize("p,loss_type", [("1", "LpInfoNCE"), ("0", "DotInfoNCE")])
def test_self_weight_reaches_the_loss(p, loss_type):
    """--self-weight: 1 (the original) by default, 0.01 in the fast preset, explicit values win."""
    for argv, weight in ([], 1.0), (["--preset", "fast"], 0.01), (["--preset", "fast", "--self-weight", "0.5"], 0.5):
        loss = mlp.config_from_args(build_parser().parse_args(["mlp", "--p", p, *argv])).loss()
        assert type(loss).__name__ == loss_type and loss.self_weight == weight


@pytest.mark.parametrize("argv,message", [
    (["--space-type", "box", "--c-p", "0"], "sphere"),
    (["--space-type", "unbounded"], "uniform"),
    (["--act-fct", "max_out"], "max_out"),
    (["--only-supervised", "--only-unsupervised"], "exclude"),
    (["--resume-training"], "--save-dir"),
    (["--batch-size", "1"], "batch-size"),
    (["--self-weight", "-1"], "self-weight"),
])
def test_clear_one_line_errors(tmp_path, capsys, argv, message):
    assert main(["mlp", *TINY, "--n-steps", "1", "--save-dir", str(tmp_path / "r"), *argv]
                if "--resume-training" not in argv else ["mlp", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_resume_of_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["mlp", *TINY, "--save-dir", str(tmp_path / "nothing"), "--resume-training"]) == 2
    assert "config.json is missing" in capsys.readouterr().err


def test_short_run_learns_and_writes_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["mlp", *TINY, "--c-p", "1", "--p", "1", "--tau", "0.2", "--lr", "3e-3", "--n-steps", "120",
                 "--encoder-norm", "layer",
                 "--more-unsupervised", "1", "--n-log-steps", "1", "--save-dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "Id. Lin. Disentanglement" in out and "perm mean:" in out and "linear mean:" in out
    summary = json.loads((run / "summary.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 5 and "torch" in config["versions"]
    records = RunDir(run).read_metrics()
    unsup = [r for r in records if r["phase"] == "unsupervised"]
    assert len(unsup) == 120  # --n-log-steps 1 logs every step
    assert unsup[-1]["mcc"] > unsup[0]["mcc"] + 0.1
    assert summary["phases"]["unsupervised"]["perm_mean"] > max(0.7, unsup[0]["mcc"] + 0.15)
    sup = [r for r in records if r["phase"] == "supervised"]
    assert summary["phases"]["supervised"]["linear_mean"] > sup[0]["linear_r2"] + 0.05
    for name in ("latents_supervised.png", "latents_unsupervised.png", "unsupervised_f.pt"):
        assert (run / name).stat().st_size > 0


@pytest.mark.parametrize("space", [["--space-type", "sphere", "--c-p", "0", "--c-param", "10", "--p", "0", "--sphere-r", "2"],
                                   ["--space-type", "unbounded", "--m-p", "2", "--c-p", "3"],
                                   ["--box-norm", "--c-p", "1", "--p", "1.5"]])
def test_other_settings_run(tmp_path, space):
    assert main(["mlp", *TINY, "--n-steps", "3", "--only-unsupervised", "--save-dir", str(tmp_path / "r"), *space]) == 0


def test_interrupted_run_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    argv = ["mlp", *TINY, "--n-steps", "20", "--more-unsupervised", "2", "--checkpoint-every", "5",
            "--c-p", "1", "--p", "1", "--lr", "1e-3", "--lr-schedule", "cosine"]
    assert main([*argv, "--save-dir", str(tmp_path / "a")]) == 0

    real_loop = mlp.train_loop

    def interrupted_loop(step, **kw):
        def stepper(i):
            if kw.get("phase") == "unsupervised" and i == 13:
                raise KeyboardInterrupt
            return step(i)
        return real_loop(stepper, **kw)

    monkeypatch.setattr(mlp, "train_loop", interrupted_loop)
    assert main([*argv, "--save-dir", str(tmp_path / "b")]) == 130
    assert not (tmp_path / "b" / "summary.json").exists()
    monkeypatch.setattr(mlp, "train_loop", real_loop)
    assert main([*argv, "--save-dir", str(tmp_path / "b"), "--resume-training"]) == 0

    a, b = (json.loads((tmp_path / x / "summary.json").read_text()) for x in "ab")
    assert a["phases"] == b["phases"]
    fa, fb = (torch.load(tmp_path / x / "unsupervised_f.pt")["encoder"] for x in "ab")
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    ma, mb = (RunDir(tmp_path / x).read_metrics() for x in "ab")
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time_s"} for r in rs]  # noqa: E731
    assert strip(ma) == strip(mb)


def test_existing_run_folder_is_not_overwritten(tmp_path, capsys):
    run = str(tmp_path / "r")
    assert main(["mlp", *TINY, "--n-steps", "2", "--only-unsupervised", "--save-dir", run]) == 0
    assert main(["mlp", *TINY, "--n-steps", "2", "--only-unsupervised", "--save-dir", run]) == 2
    assert "already holds a run" in capsys.readouterr().err
