"""The `clica` parsers: help texts that state each default once, usage errors as one line."""

import argparse
import re

import pytest

from clica.cli import COMMANDS, ArgumentParser, HelpFormatter, build_parser, main


def _help(*argv):
    parser = build_parser(argv[0])
    sub = parser._subparsers._group_actions[0].choices[argv[0]]
    for name in argv[1:]:
        sub = sub._subparsers._group_actions[0].choices[name]
    return " ".join(sub.format_help().split())     # one line: argparse wraps at the terminal width


def test_formatter_adds_a_default_only_where_it_informs():
    p = ArgumentParser(prog="t")
    p.add_argument("--a", type=int, default=3, help="three")
    p.add_argument("--b", default=None, help="nothing")
    p.add_argument("--c", default="", help="empty")
    p.add_argument("--d", default=None, help="x (default: $ENV, else here)")
    p.add_argument("--e", action="store_true", help="switch on")
    p.add_argument("--no-f", dest="f", action="store_false", help="switch off")
    p.add_argument("--g", nargs="+", default=["Rubber"], help="names")
    p.add_argument("--h2", default=5, help="five (default: %(default)s)")
    p.add_argument("--pct", default="50%", help="percent")
    text = " ".join(p.format_help().split())
    assert "three (default: 3)" in text and "names (default: Rubber)" in text and "percent (default: 50%)" in text
    assert "(default: None)" not in text and "(default: )" not in text
    assert "(default: True)" not in text and "(default: False)" not in text
    assert text.count("(default: $ENV, else here)") == 1 and "five (default: 5)" in text
    assert text.count("(default:") == 5
    assert issubclass(HelpFormatter, argparse.ArgumentDefaultsHelpFormatter)


@pytest.mark.parametrize("argv", [["mlp"], ["kitti"], ["3dident"], ["data", "kitti-masks"], ["render", "images"],
                                  ["render", "latents"], ["render", "dataset"], ["render", "preview"]])
def test_no_command_prints_a_default_twice_or_empty(argv):
    text = _help(*argv)
    for bad in ("(default: None)", "(default: )", "(default: True)", "(default: False)"):
        assert bad not in text, (argv, bad)
    assert not re.search(r"\(default:[^()]*(\([^()]*\))?[^()]*\) \(default:", text), argv


def test_kitti_and_3dident_help_texts():
    kitti = _help("kitti")
    assert "(default: $CLICA_DATA_DIR, else ./data/kitti, or for the other datasets" in kitti
    assert "--augment" in kitti and "--no-augment" in kitti
    sub = build_parser("3dident")._subparsers._group_actions[0].choices["3dident"]
    helps = {a.dest: a.help for a in sub._actions}
    for dest in ("batch_size", "lr", "optimizer", "mode", "supervised_loss"):
        assert helps[dest], dest
    three = _help("3dident")
    assert "trains with labels" in three and "contrastive method" in three
    render = _help("render", "latents")
    assert "objects per scene" in render and "folder to write raw_latents.npy" in render


@pytest.mark.parametrize("argv, needle", [
    (["mlp", "--preset", "nope"], "clica mlp: error: argument --preset: invalid choice: 'nope'"),
    (["kitti", "--no-such-flag"], "clica kitti: error: unrecognized arguments: --no-such-flag"),
    (["render", "images", "--output-folder", "x", "--bogus"], "clica render images: error: unrecognized"),
    (["render", "latents"], "clica render latents: error: the following arguments are required"),
    (["3dident", "--mode", "semi"], "clica 3dident: error: argument --mode"),
    (["nope"], "clica: error: argument COMMAND: invalid choice"),
])
def test_usage_errors_are_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert needle in err and "--help" in err and "usage:" not in err


def test_help_still_exits_cleanly(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: clica " + name in capsys.readouterr().out


def test_the_top_level_help_and_the_scores_start_light():
    """`clica --help` imports no command (it took 5.5 s with torch, scipy and matplotlib; now 0.06 s),
    and the metrics and figures load scipy.stats and matplotlib only when they use them."""
    import subprocess
    import sys

    code = ("import sys; from clica.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'scipy', 'matplotlib', 'numba') if m in sys.modules]\n"
            "import clica.metrics, clica.plots\n"
            "late = [m for m in ('scipy.stats', 'scipy.optimize', 'matplotlib') if m in sys.modules]\n"
            "print(heavy, late)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[] []"
