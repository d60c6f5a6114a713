"""Every number flag of ``clica mlp``, ``kitti`` and ``3dident`` at 0, -1 and 10¹²: which values are
not refused in one line.

Each value runs in this process on tiny data (a 40-image 3DIdent folder, 12 synthetic KITTI
sequences), with 40 s per run. A line is printed for every run that did not exit with status 2:
``rc=0`` (accepted: read it and judge), ``SLOW`` (still running: fine for step counts) or
``TRACEBACK`` (a fault). ``docs/faults.md`` lists what it found.

    python benchmarks/flag_fuzz.py [mlp] [kitti] [3dident]
"""

from __future__ import annotations

import contextlib
import io
import shutil
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_threedident import make_folder  # noqa: E402

from clica.cli import build_parser, main  # noqa: E402
from clica.data.kitti_masks import SyntheticConfig, generate_synthetic, write_kitti_pickle  # noqa: E402

VALUES = ("0", "-1", "1000000000000")


class Slow(Exception):
    pass


def _alarm(*_):
    raise Slow()


def base_commands(tmp: Path) -> dict[str, list[str]]:
    dataset = make_folder(tmp / "ds", n=40, size=16)
    kitti = tmp / "kitti"
    kitti.mkdir()
    write_kitti_pickle(kitti / "kitti_peds_v2.pickle", generate_synthetic(0, SyntheticConfig(n_sequences=12)))
    return {
        "mlp": ["mlp", "--n", "3", "--batch-size", "32", "--n-steps", "2", "--n-log-steps", "1", "--seed", "0",
                "--preset", "headline", "--num-eval-batches", "1"],
        "3dident": ["3dident", "--offline-dataset", str(dataset), "--non-periodic-rotation-and-color",
                    "--batch-size", "4", "--iterations", "1", "--n-log-steps", "1", "--n-eval-samples", "16",
                    "--seed", "0", "--no-cuda", "--image-cache", "off", "--mode", "unsupervised"],
        "kitti": ["kitti", "--data-dir", str(kitti), "--n-eval-samples", "100", "--batch-size", "8",
                  "--num-workers", "0", "--max-iter", "2", "--log-step", "1"],
    }


def run_one(argv: list[str], seconds: int = 40) -> tuple[str, str]:
    """(outcome, last line of stderr) of ``clica ARGV``."""
    err = io.StringIO()
    signal.alarm(seconds)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            outcome = f"rc={main(argv)}"
    except Slow:
        outcome = f"SLOW(>{seconds}s)"
    except SystemExit as exc:
        outcome = f"rc={exc.code}"
    except BaseException as exc:  # noqa: BLE001 - what the fuzz looks for
        outcome = f"TRACEBACK {type(exc).__name__}: {str(exc)[:150]}"
    finally:
        signal.alarm(0)
    lines = err.getvalue().strip().splitlines()
    return outcome, lines[-1][:160] if lines else ""


def main_(commands: list[str]) -> None:
    signal.signal(signal.SIGALRM, _alarm)
    tmp = Path(tempfile.mkdtemp())
    try:
        bases = base_commands(tmp)
        for command in commands or list(bases):
            parser = build_parser(command)._subparsers._group_actions[0].choices[command]
            for action in parser._actions:
                if not action.option_strings or action.type not in (int, float):
                    continue
                flag = action.option_strings[-1]
                for value in VALUES:
                    argv = list(bases[command])
                    if flag in argv:
                        del argv[argv.index(flag):argv.index(flag) + 2]
                    run = tmp / f"run-{command}-{action.dest}-{value}"
                    argv += [flag, value, *{"mlp": ["--save-dir", str(run)], "3dident": ["--run-dir", str(run)],
                                            "kitti": ["--output-dir", str(run), "--ckpt-dir", str(run / "c")]}[command]]
                    outcome, last = run_one(argv)
                    if outcome != "rc=2":
                        print(f"{command} {flag} {value}: {outcome} | {last}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main_(sys.argv[1:])
