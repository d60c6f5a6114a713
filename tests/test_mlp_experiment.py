"""The `clica mlp` command: flags, clear errors, a short run that learns, resume equivalence."""

import json

import pytest
import torch

import clica.experiments.mlp as mlp
import clica.experiments.skeleton as skeleton
from clica.cli import build_parser, main
from clica.errors import ClicaError
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
    assert "Id. Lin./Perm. Disentanglement" in out
    # the final scores once, with what they mean, the theory's prediction and the figure
    assert out.count("linear R²") == 3 and "permutation and sign (matched L1" in out
    assert f"figure: {run / 'latents_unsupervised.png'}" in out
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


@pytest.mark.parametrize("space", [["--space-type", "sphere", "--c-p", "0", "--c-param", "10", "--p", "0",
                                    "--sphere-r", "2"],
                                   ["--space-type", "unbounded", "--m-p", "2", "--c-p", "3"],
                                   ["--box-norm", "--c-p", "1", "--p", "1.5"]])
def test_other_settings_run(tmp_path, space):
    assert main(["mlp", *TINY, "--n-steps", "3", "--only-unsupervised", "--save-dir", str(tmp_path / "r"), *space]) == 0


def test_interrupted_run_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    argv = ["mlp", *TINY, "--n-steps", "20", "--more-unsupervised", "2", "--checkpoint-every", "5",
            "--c-p", "1", "--p", "1", "--lr", "1e-3", "--lr-schedule", "cosine"]
    assert main([*argv, "--save-dir", str(tmp_path / "a")]) == 0

    real_loop = skeleton.train_loop

    def interrupted_loop(step, **kw):
        def stepper(i):
            if kw.get("phase") == "unsupervised" and i == 13:
                raise KeyboardInterrupt
            return step(i)
        return real_loop(stepper, **kw)

    monkeypatch.setattr(skeleton, "train_loop", interrupted_loop)
    assert main([*argv, "--save-dir", str(tmp_path / "b")]) == 130
    assert not (tmp_path / "b" / "summary.json").exists()
    monkeypatch.setattr(skeleton, "train_loop", real_loop)
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


def test_headline_preset_is_the_headline_setting_with_the_fast_recipe():
    cfg = mlp.config_from_args(build_parser().parse_args(["mlp", "--preset", "headline"]))
    assert (cfg.space_type, cfg.m_p, cfg.c_p, cfg.c_param, cfg.p) == ("box", 0, 1, 0.05, 1)
    assert cfg.theory()[1] == "mcc"  # matched L1: MCC should approach 1
    fast = mlp.PRESETS["fast"]
    assert all(getattr(cfg, k) == v for k, v in fast.items())
    cfg = mlp.config_from_args(build_parser().parse_args(["mlp", "--preset", "headline", "--p", "2", "--c-p", "2"]))
    assert (cfg.c_p, cfg.p) == (2, 2)  # explicit flags win
    # the paper's default setting (Normal conditional, L2 loss) is identified only up to a rotation
    assert mlp.config_from_args(build_parser().parse_args(["mlp"])).theory()[1] == "linear_r2"


def test_ctrl_c_prints_the_command_that_resumes(tmp_path, monkeypatch, capsys):
    import shlex

    monkeypatch.chdir(tmp_path)  # no --save-dir: the run gets a fresh folder under runs/
    argv = ["mlp", *TINY, "--n-steps", "6", "--only-unsupervised", "--checkpoint-every", "2"]
    real_loop = skeleton.train_loop

    def interrupted_loop(step, **kw):
        return real_loop(lambda i: (_ for _ in ()).throw(KeyboardInterrupt) if i == 4 else step(i), **kw)

    monkeypatch.setattr(skeleton, "train_loop", interrupted_loop)
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert "resume with: clica mlp " in err and "--resume-training" in err
    words = shlex.split(err.split("resume with: ")[1])
    monkeypatch.setattr(skeleton, "train_loop", real_loop)
    assert main(words[1:]) == 0  # the printed command resumes the same folder
    out = capsys.readouterr().out
    assert "resuming from step 2" in out  # the last checkpoint (a real Ctrl-C also saves step 4)
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "summary.json").is_file()


@pytest.mark.parametrize("argv", [["--act-fct", "relu"], ["--space-type", "box", "--c-p", "0"],
                                  ["--m-p", "1", "--m-param", "0", "--space-type", "unbounded"],
                                  ["--c-param", "1e6"]])  # a conditional too wide for the box
def test_invalid_configuration_creates_nothing(tmp_path, capsys, argv):
    assert main(["mlp", *TINY, "--n-steps", "1", "--save-dir", str(tmp_path / "r"), *argv]) == 2
    assert not (tmp_path / "r").exists()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_resumed_run_counts_time_on_and_refuses_a_new_cosine_length(tmp_path, monkeypatch, capsys):
    run = tmp_path / "r"
    argv = ["mlp", *TINY, "--n-steps", "8", "--only-unsupervised", "--checkpoint-every", "2",
            "--n-log-steps", "1", "--save-dir", str(run)]
    real_loop = skeleton.train_loop

    def slow_interrupted_loop(step, **kw):
        def stepper(i):
            if i == 5:
                raise KeyboardInterrupt
            import time
            time.sleep(0.05)
            return step(i)
        return real_loop(stepper, **kw)

    monkeypatch.setattr(skeleton, "train_loop", slow_interrupted_loop)
    assert main(argv) == 130
    monkeypatch.setattr(skeleton, "train_loop", real_loop)
    before = RunDir(run).read_metrics()[-1]["time_s"]
    assert before >= 0.15
    assert main([*argv, "--resume-training"]) == 0
    times = [r["time_s"] for r in RunDir(run).read_metrics()]
    assert times == sorted(times)  # time_s counts on over the resume
    assert json.loads((run / "summary.json").read_text())["train_time_s"] >= before
    # a constant schedule may continue to a new length (said); a cosine schedule may not
    assert main([*argv, "--n-steps", "10", "--resume-training"]) == 0
    assert "--n-steps changed from 8 to 10" in capsys.readouterr().out
    # fewer steps than the run already has: refused in one line (it used to hand back the longer run)
    assert main([*argv, "--n-steps", "6", "--resume-training"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already trained 10 steps, more than --n-steps 6" in err
    cos = ["mlp", *TINY, "--n-steps", "4", "--only-unsupervised", "--lr-schedule", "cosine",
           "--save-dir", str(tmp_path / "c")]
    assert main(cos) == 0
    assert main([*cos, "--n-steps", "6", "--resume-training"]) == 2
    assert "cosine" in capsys.readouterr().err


def test_tiny_batches_are_not_scored_as_perfect(tmp_path):
    # two latents scored on two samples fit perfectly whatever the encoder: evaluate on more
    run = tmp_path / "r"
    assert main(["mlp", "--n", "3", "--batch-size", "2", "--n-steps", "2", "--only-unsupervised",
                 "--num-eval-batches", "2", "--seed", "1", "--save-dir", str(run)]) == 0
    s = json.loads((run / "summary.json").read_text())["phases"]["unsupervised"]
    assert s["perm_mean"] < 0.99 and s["linear_mean"] < 0.99


@pytest.mark.parametrize("argv,message", [(["--lr", "nan"], "finite"), (["--lr", "1e20"], "diverged")])
def test_non_finite_flags_and_divergence_are_one_line_errors(tmp_path, capsys, argv, message):
    assert main(["mlp", *TINY, "--n-steps", "30", "--only-unsupervised", "--c-p", "1", "--p", "1",
                 "--save-dir", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_from_preset_is_the_python_twin_of_the_preset_flag():
    """`MLPConfig(**PRESETS["headline"], n_steps=50)` raised TypeError (n_steps twice); from_preset overrides."""
    cfg = mlp.MLPConfig.from_preset("headline", n_steps=50, seed=0)
    cli = mlp.config_from_args(build_parser().parse_args(["mlp", "--preset", "headline", "--n-steps", "50",
                                                          "--seed", "0"]))
    assert {**cfg.__dict__, "device": None} == {**cli.__dict__, "device": None}
    with pytest.raises(ClicaError, match="unknown preset 'nope'"):
        mlp.MLPConfig.from_preset("nope")
