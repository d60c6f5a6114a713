"""Every experiment under a real ``torchrun`` with 2 CPU processes (gloo): one run folder written by
rank 0, scores that match one process on the same global batch, Ctrl-C/SIGTERM with a checkpoint
that resumes (also with another number of processes), and no hang when a process dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clica.cli import main
from clica.data.kitti_masks import SyntheticConfig, generate_synthetic, write_kitti_pickle

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CLICA_DIST_TIMEOUT_S": "60"}

MLP = ["mlp", "--preset", "headline", "--n-latents", "4", "--n-mixing-layer", "2", "--batch-size", "256",
       "--n-log-steps", "400", "--seed", "0"]


def torchrun(*argv, nproc: int = 2, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "clica", *map(str, argv)]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)


def start_torchrun(*argv, nproc: int = 2) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "clica", *map(str, argv)]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def wait_for(predicate, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.2)


def test_mlp_two_processes_match_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*MLP, "--n-steps", "1200", "--save-dir", str(one)]) == 0
    out = torchrun(*MLP, "--n-steps", "1200", "--save-dir", two)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("run folder:") == 1 and "processes: 2" in out.stdout  # one voice, rank 0
    assert steps(two) == [1, 401, 801, 1200]  # one log, not one per process
    a = json.loads((one / "summary.json").read_text())["phases"]["unsupervised"]
    b = json.loads((two / "summary.json").read_text())["phases"]["unsupervised"]
    assert a["perm_mean"] > 0.99 and b["perm_mean"] > 0.99
    assert abs(a["perm_mean"] - b["perm_mean"]) < 0.01 and abs(a["linear_mean"] - b["linear_mean"]) < 0.01
    assert json.loads((two / "config.json").read_text())["batch_size"] == 256  # the global batch
    assert sorted(p.name for p in two.iterdir() if not p.name.startswith(".")) == [
        "checkpoint.pt", "config.json", "latents_unsupervised.png", "metrics.jsonl", "summary.json",
        "unsupervised_f.pt"]


def test_sigterm_stops_every_process_and_the_run_resumes_with_another_world_size(tmp_path):
    run = tmp_path / "run"
    argv = [*MLP, "--lr-schedule", "constant", "--n-steps", "1500", "--checkpoint-every", "100000",
            "--save-dir", run]
    proc = start_torchrun(*argv)
    wait_for(lambda: (run / "metrics.jsonl").exists() and len(steps(run)) >= 2)  # step 401 logged
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both processes
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    import torch

    stopped = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
    assert 401 <= stopped < 1500 and "resume with: clica mlp" in err
    # resumed by one process: rank 0's stream continues from its saved state
    assert main([*map(str, argv), "--resume-training"]) == 0
    logged = steps(run)
    assert logged == sorted(set(logged)) and logged[-1] == 1500
    assert json.loads((run / "summary.json").read_text())["phases"]["unsupervised"]["perm_mean"] > 0.9


def test_every_flag_reaches_clica_through_torchrun():
    """torchrun's parser takes an argument that abbreviates several of its options (``--n``, ``--p``) for
    its own and fails: every flag has a spelling that passes (``--n-latents``, ``--lp-exponent``)."""
    import contextlib
    import io

    from torch.distributed.run import get_args_parser

    from clica.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    for command in ("mlp", "kitti", "3dident"):
        for action in commands[command]._actions:
            passing = []
            for flag in (o for o in action.option_strings if o.startswith("--")):
                try:
                    with contextlib.redirect_stderr(io.StringIO()):
                        ns = get_args_parser().parse_args(["--nproc-per-node=2", "-m", "clica", command, flag, "1"])
                    passing.append(ns.training_script_args == [command, flag, "1"])
                except SystemExit:
                    passing.append(False)
            assert not passing or any(passing), (command, action.option_strings)


def test_a_process_that_dies_ends_the_run(tmp_path):
    proc = start_torchrun(*MLP, "--n-steps", "100000", "--save-dir", tmp_path / "run")
    wait_for(lambda: (tmp_path / "run" / "metrics.jsonl").exists())
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):  # torchrun's worker processes
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == proc.pid:
            children.append(int(stat.parent.name))
    assert len(children) == 2
    os.kill(max(children), signal.SIGKILL)
    proc.communicate(timeout=300)  # no hang: torchrun ends the other process
    assert proc.returncode != 0


def test_a_batch_the_processes_cannot_share_is_one_line(tmp_path):
    out = torchrun(*MLP, "--batch-size", "255", "--n-steps", "10", "--save-dir", tmp_path / "run")
    assert out.returncode != 0
    assert "clica mlp: error: --batch-size 255 must be divisible by the 2 processes" in out.stderr


@pytest.fixture(scope="module")
def kitti_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("kitti")
    write_kitti_pickle(d / "kitti_peds_v2.pickle", generate_synthetic(0, SyntheticConfig(n_sequences=40)))
    return d


def test_kitti_two_processes_match_one(tmp_path, kitti_dir):
    common = ["kitti", "--data-dir", kitti_dir, "--box-norm", "1", "--lr", "1e-3", "--batch-size", "32",
              "--max-iter", "150", "--log-step", "50", "--n-eval-samples", "500", "--num-workers", "0",
              "--seed", "0"]

    def folders(tag):
        return ["--output-dir", tmp_path / tag / "out", "--ckpt-dir", tmp_path / tag / "ckpt"]

    assert main([*map(str, common), *map(str, folders("one"))]) == 0
    out = torchrun(*common, *folders("two"))
    assert out.returncode == 0, out.stderr[-2000:]
    result = {tag: json.loads((tmp_path / tag / "out" / "kittimasks_1" / "1_1" / "0" / "summary.json").read_text())
              for tag in ("one", "two")}
    assert abs(result["one"]["mcc"] - result["two"]["mcc"]) < 0.1
    assert steps(tmp_path / "two" / "out" / "kittimasks_1" / "1_1" / "0") == [1, 51, 101, 150]
    assert (tmp_path / "two" / "ckpt" / "kittimasks_1" / "1_1" / "0" / "last").exists()


@pytest.mark.slow   # three launches, ~45 s: the longest but one; the 3DIdent loss under DDP is in test_distributed
def test_3dident_two_processes(tmp_path):
    from test_threedident import make_folder

    folder = make_folder(tmp_path / "ds", n=120, d=10)
    common = ["3dident", "--offline-dataset", folder, "--non-periodic-rotation-and-color", "--mode", "unsupervised",
              "--no-cuda", "--faiss-omp-threads", "1", "--image-cache", "off", "--seed", "0"]
    # the images with a ResNet (BatchNorm statistics are per process, as usual with DDP)
    out = torchrun(*common, "--batch-size", "16", "--iterations", "4", "--n-log-steps", "2",
                   "--n-eval-samples", "32", "--run-dir", tmp_path / "img", "--save-model", tmp_path / "f.pt")
    assert out.returncode == 0, out.stderr[-2000:]
    assert steps(tmp_path / "img") == [1, 3, 4] and (tmp_path / "f.pt").exists()
    # the dummy mixing (an MLP encoder): scores match one process
    mixing = [*common, "--dummy-mixing", "--batch-size", "128", "--iterations", "120", "--n-log-steps", "60",
              "--lr", "1e-3", "--n-eval-samples", "512"]
    assert main([*map(str, mixing), "--run-dir", str(tmp_path / "one")]) == 0
    out = torchrun(*mixing, "--run-dir", tmp_path / "two")
    assert out.returncode == 0, out.stderr[-2000:]
    one, two = (json.loads((tmp_path / t / "summary.json").read_text()) for t in ("one", "two"))
    # two processes draw other data streams (seeded per rank); after 120 steps R² is only ~0.25-0.32, where
    # the streams alone moved it by 0.073 and 0.089 (2 Dec 2026): this checks the scale, not equality
    assert abs(one["r2"] - two["r2"]) < 0.15
