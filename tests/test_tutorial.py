"""examples/tutorial.ipynb runs from top to bottom (at its small sizes), so it never rots."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "tutorial.ipynb"


def test_the_tutorial_runs_at_small_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("CLICA_TUTORIAL_SMALL", "1")       # read by the notebook's first code cell
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))           # its run folders
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "commit it without outputs"
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    printed = "".join(o.get("text", "") for o in outputs)
    assert "small sizes" in printed and "MCC against the true sources" in printed
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3                               # the training curve, the latents, the sources
