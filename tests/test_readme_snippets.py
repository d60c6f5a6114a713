"""Every ```python snippet of the README runs as written, with only its sizes shortened.

Each snippet runs in a fresh folder after the README's own CLI commands have made the data it reads
(at small sizes). ``SMALLER`` lists every change made to a snippet's text: step counts and data sizes,
nothing else; each must match exactly once, so a README edit that drops one fails here.
"""

import re
from pathlib import Path

import numpy as np
import pytest

from clica.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"

SMALLER = {
    'MLPConfig.from_preset("headline", seed=0)':
        'MLPConfig.from_preset("headline", seed=0, n_steps=20, batch_size=256, num_eval_batches=1)',
    "max_iter=1500, seed=0)": "max_iter=20, batch_size=16, n_eval_samples=300, seed=0)",
    "iterations=300,": "iterations=2, n_eval_samples=64,",
    "ContrastiveICA(n_components=5, random_state=0, verbose=True)":
        "ContrastiveICA(n_components=5, random_state=0, verbose=True, n_steps=20, batch_size=128, n_init=1)",
    "ContrastiveICA(n_components=5, n_init=3, n_jobs=3)":
        "ContrastiveICA(n_components=5, n_init=3, n_jobs=3, n_steps=20, batch_size=128)",
    "GridSearchCV(ContrastiveICA(n_components=5),":
        "GridSearchCV(ContrastiveICA(n_components=5, n_steps=20, batch_size=128, n_init=1),",
    "ContrastiveICA(n_components=5, random_state=s)":
        "ContrastiveICA(n_components=5, random_state=s, n_steps=20, batch_size=128, n_init=1)",
}


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def shortened(code: str) -> str:
    for old, new in SMALLER.items():
        if old in code:
            assert code.count(old) == 1, old
            code = code.replace(old, new)
    return code


def test_every_shortening_applies_to_a_snippet():
    text = "".join(snippets())
    assert [old for old in SMALLER if text.count(old) != 1] == []


def _make_data() -> None:
    """The README's data commands before the experiments' snippet, at small sizes."""
    assert main(["data", "kitti-masks", "--output", "data/kitti/kitti_peds_v2.pickle", "--seed", "0",
                 "--sequences", "40"]) == 0
    assert main(["render", "dataset", "--output-folder", "data/3di64", "--n-points", "128",
                 "--non-periodic-rotation-and-color", "--image-size", "64", "--workers", "1", "--seed", "0"]) == 0


def _time_series() -> dict:
    """The names the estimator's snippet assumes: a time series X, its sources Z, sequence ids, pairs."""
    rng = np.random.default_rng(0)
    Z = np.cumsum(rng.laplace(0, 0.05, size=(1000, 5)), axis=0)
    X = np.tanh(Z @ rng.normal(size=(5, 8)))
    return {"X": X, "Z": Z, "video_id": np.repeat(np.arange(4), 250), "Xp": np.roll(X, -1, axis=0),
            "X_new": np.tanh(np.cumsum(rng.laplace(0, 0.05, size=(300, 5)), axis=0) @ rng.normal(size=(5, 8)))}


@pytest.mark.parametrize("index", range(len(snippets())))
def test_the_readme_snippet_runs(index, tmp_path, monkeypatch):
    code = snippets()[index]
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    if "run_kitti" in code or "run_3dident" in code:
        _make_data()
    if "ContrastiveICA(" in code:
        namespace.update(_time_series())
    exec(compile(shortened(code), f"README.md snippet {index}", "exec"), namespace)
