"""The core install: `import clica` without the extras, and a one-line hint naming the missing extra."""

import subprocess
import sys

import pytest

from clica import extras
from clica.cli import main

HINT = "needs the [{0}] extra: pip install 'clica[{0}]'"


def _without(monkeypatch, *modules):
    for name in modules:  # `import name` now fails as if it were not installed
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("argv, extra", [
    (["render", "preview", "--sweep", "s.png"], "render"),
    (["render", "dataset", "--output-folder", "d"], "render"),
    (["3dident", "--offline-dataset", "d"], "3dident"),
    (["table", "mlp", "--rows", "box-laplace-l1", "--seeds", "1", "--steps", "1"], "cluster"),
    (["data", "shapes3d", "--output", "s.h5"], "render"),
    (["data", "shapes3d", "--output", "s.h5"], "datasets"),
])
def test_a_command_whose_extra_is_missing_says_which_in_one_line(argv, extra, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    _without(monkeypatch, *extras.EXTRAS[extra])
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err == f"clica {argv[0]}: error: {HINT.format(extra)}\n"
    assert list(tmp_path.iterdir()) == []   # nothing written before the hint


def test_the_library_names_the_extra_too(monkeypatch):
    from clica.errors import ClicaError
    from clica.models.resnet import resnet_encoder

    _without(monkeypatch, "torchvision")
    with pytest.raises(ClicaError, match=r"needs the \[3dident\] extra"):
        resnet_encoder("rn18", 10)


def test_commands_without_an_extra_still_run(monkeypatch, capsys):
    _without(monkeypatch, "moderngl", "torchvision", "faiss", "ray")
    assert main(["table", "mlp", "--list"]) == 0       # lists rows: no Ray needed
    assert "box-laplace-l1" in capsys.readouterr().out


def test_import_clica_never_needs_an_extra():
    code = ("import sys\n"
            "for m in ('moderngl', 'torchvision', 'faiss', 'ray', 'tensorboard'):\n    sys.modules[m] = None\n"
            "import clica, clica.cli, clica.experiments.mlp, clica.experiments.kitti, clica.experiments.threedident\n"
            "import clica.experiments.table, clica.render, clica.render.cli, clica.data.threedident, clica.models\n"
            "from clica import ContrastiveICA\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_version(capsys):
    import clica

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"clica {clica.__version__}\n"
    assert clica.__version__[0].isdigit()
