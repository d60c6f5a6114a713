"""Tiny runs of every experiment with fixed seeds on one torch thread reproduce recorded numbers.

The guard for refactors: ``tests/data/reference_summaries.json`` holds the scores these runs gave
before a change (regenerate it only when a change is *meant* to change numbers, with
``python tests/test_reference_numbers.py --write``).
"""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from clica.cli import main

REFERENCE = Path(__file__).parent / "data" / "reference_summaries.json"
TIMING = {"train_time_s", "train_s", "steps_per_s", "train_seconds", "elapsed_s"}
MLP = ["--n", "3", "--batch-size", "64", "--n-steps", "4", "--n-log-steps", "2", "--num-eval-batches", "1",
       "--only-unsupervised", "--seed", "5"]
RUNS = {
    "mlp-box-normal": ["mlp", *MLP],
    "mlp-box-laplace-l1": ["mlp", *MLP, "--c-p", "1", "--p", "1", "--box-norm"],
    "mlp-sphere-vmf-dot": ["mlp", *MLP, "--space-type", "sphere", "--c-p", "0", "--c-param", "1", "--p", "0"],
    "mlp-supervised-then-unsupervised": ["mlp", *MLP[:-3], "--seed", "6", "--more-unsupervised", "1"],
    "kitti-contrastive": ["kitti", "--max-iter", "3", "--log-step", "1", "--batch-size", "16",
                          "--n-eval-samples", "100", "--seed", "4"],
    "kitti-slowvae": ["kitti", "--model", "slowvae", "--max-iter", "3", "--log-step", "1", "--batch-size", "16",
                      "--n-eval-samples", "100", "--seed", "4"],
    "estimator": ["estimator"],
    "3dident-unsupervised": ["3dident", "--non-periodic-rotation-and-color", "--mode", "unsupervised",
                             "--batch-size", "8", "--iterations", "2", "--n-log-steps", "1", "--n-eval-samples", "32",
                             "--seed", "3", "--no-cuda", "--image-cache", "off", "--faiss-omp-threads", "1"],
}


def _scores(summary) -> dict:
    """The summary's numbers, flattened, without timings and paths."""
    out = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                if k not in TIMING:
                    walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[prefix] = value

    walk("", summary)
    return out


def _estimator() -> dict:
    """A tiny ``ContrastiveICA`` fit (two restarts, early stopping) on a fixed time series."""
    import numpy as np

    from clica import ContrastiveICA

    rng = np.random.default_rng(0)
    sources = np.cumsum(rng.laplace(0, 0.05, (600, 2)), axis=0)
    X = np.tanh(sources @ rng.normal(size=(2, 4)))
    model = ContrastiveICA(n_components=2, hidden_units=(8,), n_steps=12, batch_size=64, n_init=2,
                           random_state=0).fit(X)
    return {"validation_loss": model.validation_loss_, "best_trial": model.best_trial_,
            "transform_sum": float(np.abs(model.transform(X)).sum())}


def run(name: str, tmp: Path) -> dict:
    """Run ``name`` of :data:`RUNS` in ``tmp`` on one torch thread; its summary's scores."""
    argv = list(RUNS[name])
    if argv[0] == "estimator":
        own = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return _estimator()
        finally:
            torch.set_num_threads(own)
    if argv[0] == "mlp":
        argv += ["--save-dir", str(tmp / "run")]
        summary = tmp / "run" / "summary.json"
    elif argv[0] == "kitti":
        from clica.data.kitti_masks import SyntheticConfig, generate_synthetic, write_kitti_pickle

        data = tmp / "kitti_peds_v2.pickle"
        write_kitti_pickle(data, generate_synthetic(0, SyntheticConfig(n_sequences=30)))
        argv += ["--data-dir", str(data), "--output-dir", str(tmp / "out"), "--ckpt-dir", str(tmp / "ck"),
                 "--log-dir", str(tmp / "logs")]
        summary = None
    else:
        from test_threedident import make_folder

        folder = make_folder(tmp / "ds", n=60)
        argv += ["--offline-dataset", str(folder), "--run-dir", str(tmp / "run")]
        summary = tmp / "run" / "summary.json"
    own = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(own)
    if summary is None:
        (summary,) = (tmp / "out").glob("*/*/*/summary.json")
    return _scores(json.loads(summary.read_text()))


@pytest.mark.parametrize("name", sorted(RUNS))
def test_tiny_runs_give_the_recorded_numbers(name, tmp_path):
    expected = json.loads(REFERENCE.read_text())[name]
    got = run(name, tmp_path)
    assert sorted(got) == sorted(expected)
    differ = {k: (got[k], v) for k, v in expected.items() if not math.isclose(got[k], v, rel_tol=1e-6, abs_tol=1e-9)}
    assert not differ, differ


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    results = {}
    for name in sorted(RUNS):
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = run(name, Path(tmp))
    REFERENCE.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE}")
