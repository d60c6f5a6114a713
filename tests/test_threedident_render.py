"""`clica 3dident` end to end on real renders from `clica.render.make_dataset` (skipped without EGL)."""

from __future__ import annotations

import json

import numpy as np
import pytest

# torchvision.models must be imported before any headless GL (Mesa llvmpipe) context exists in this
# process: importing it afterwards segfaults (seen with torch 2.14 / torchvision 0.29 / Mesa 22). Test
# modules are imported at collection, before any render test runs.
import torchvision.models  # noqa: F401

from clica.cli import main
from clica.data import threedident as td
from clica.errors import ClicaError


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    from clica.render import make_dataset

    root = tmp_path_factory.mktemp("render")
    try:
        box = make_dataset(root / "box", 120, image_size=32, seed=0, non_periodic_rotation_and_color=True)
        periodic = make_dataset(root / "periodic", 60, image_size=32, seed=1)
    except ClicaError as exc:  # no headless OpenGL here
        pytest.skip(str(exc))
    return box, periodic


def test_rendered_folders_load_with_their_stats(rendered):
    box, periodic = rendered
    folder = td.ThreeDIdentFolder.open(box)
    assert folder.dim == 10 and folder.image_shape() == (32, 32)
    mean, std, source = td.load_normalization(box)
    assert source.endswith("stats.json") and all(0 < s < 1 for s in std)
    assert td.ThreeDIdentFolder.open(periodic).dim == 11  # box(3) + sphere(8): the default layout


@pytest.mark.parametrize("which,extra", [
    ("box", ["--non-periodic-rotation-and-color", "--box-constraint", "learnable"]),
    ("periodic", []),
])
def test_unsupervised_step_on_rendered_images(rendered, tmp_path, capsys, which, extra):
    box, periodic = rendered
    root = box if which == "box" else periodic
    run = tmp_path / "run"
    assert main(["3dident", "--offline-dataset", str(root), "--mode", "unsupervised", "--batch-size", "8",
                 "--iterations", "1", "--n-log-steps", "1", "--n-eval-samples", "32", "--seed", "0",
                 "--no-cuda", "--faiss-omp-threads", "1", "--image-cache", "build", "--run-dir", str(run),
                 *extra]) == 0
    out = capsys.readouterr().out
    assert "stats.json" in out and "memory-mapped uint8 cache" in out
    summary = json.loads((run / "summary.json").read_text())
    assert np.isfinite(summary["r2"]) and np.isfinite(summary["mcc"])
