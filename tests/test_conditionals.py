"""The table of conditionals: the older vocabularies map onto it, and the architecture page's walk-through
(a new loss and a new conditional, one class and one row each) trains in ``clica mlp``."""

import json
import re
from pathlib import Path

import pytest
import torch

from clica import conditionals as C
from clica import latents
from clica.cli import main
from clica.experiments.mlp import MLPConfig
from clica.losses import DotInfoNCE, LpInfoNCE

ARCHITECTURE = Path(__file__).parents[1] / "docs" / "architecture.md"


def test_the_original_codes_and_3didents_names_map_onto_the_rows():
    assert [C.by_code(c) for c in (0, 1, 2)] == [C.CONDITIONALS[n] for n in ("vmf", "laplace", "normal")]
    assert C.by_code(1.0) is C.by_code(1) and C.by_code(3) is C.by_code(3.0) is C.by_name("l3")
    assert C.by_name("l1") is C.CONDITIONALS["laplace"] and C.by_name("vmf") is C.CONDITIONALS["vmf"]
    assert C.by_code(3).distribution(0.1) == latents.GeneralizedNormal(0.1, 3.0)
    assert C.by_code(0).distribution(5.0) == latents.VonMisesFisher(5.0)
    lp, dot = C.by_code(1.5).loss(tau=0.3, self_weight=0.1), C.CONDITIONALS["vmf"].loss(project=True)
    assert isinstance(lp, LpInfoNCE) and (lp.p, lp.tau, lp.self_weight) == (1.5, 0.3, 0.1)
    assert isinstance(dot, DotInfoNCE) and dot.normalize


@pytest.mark.parametrize("space,c_p,p,claim", [
    ("box", 1, 1, "permutation"), ("unbounded", 3, 3, "permutation"), ("box", 2, 2, "orthogonal"),
    ("unbounded", 2, 2, "rotation"), ("sphere", 0, 0, "orthogonal"), ("box", 0, 0, "none"), ("box", 2, 1, "none"),
    ("sphere", 1, 0, "none"),
])
def test_the_claim_follows_from_conditional_loss_and_space(space, c_p, p, claim):
    assert MLPConfig(space_type=space, c_p=c_p, p=p).claim() == claim


@pytest.fixture
def example():
    """The code of docs/architecture.md's walk-through, run; the table is restored afterwards."""
    code = re.search(r"## Add a loss, add a conditional.*?```python\n(.*?)```", ARCHITECTURE.read_text(), re.S)[1]
    saved = dict(C.CONDITIONALS)
    namespace = {"__name__": "architecture_example"}
    try:
        exec(compile(code, str(ARCHITECTURE), "exec"), namespace)
        yield namespace
    finally:
        C.CONDITIONALS.clear()
        C.CONDITIONALS.update(saved)


def test_a_conditional_added_through_the_table_trains_in_clica_mlp(example, tmp_path):
    cfg = MLPConfig(space_type="unbounded", m_p=1, c_p=7, p=7)
    assert cfg.latent_space().conditional == example["Logistic"](0.05)
    assert isinstance(cfg.loss(), example["LogisticInfoNCE"]) and cfg.theory() is None
    # the new loss follows the batch protocol: rows of a larger batch are their terms of the whole batch
    h1, h2 = torch.randn(2, 12, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loss = cfg.loss()
    torch.testing.assert_close(loss(h1[4:8], h2[4:8], batch=(h1, 4)).per_item, loss(h1, h2).per_item[4:8])

    run = tmp_path / "run"
    assert main(["mlp", "--space-type", "unbounded", "--m-p", "1", "--c-p", "7", "--p", "7", "--n", "3",
                 "--batch-size", "64", "--n-steps", "3", "--only-unsupervised", "--num-eval-batches", "1",
                 "--hidden-scale", "0.2", "--seed", "0", "--save-dir", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert 0 <= summary["phases"]["unsupervised"]["perm_mean"] <= 1


def test_the_walk_through_leaves_the_table_as_it_was():
    assert set(C.CONDITIONALS) == {"laplace", "normal", "vmf"}
