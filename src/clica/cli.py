"""``clica <command>``: a thin dispatcher over the experiment and tool modules.

Each command module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
User errors (:class:`~clica.errors.ClicaError`; a :class:`~clica.params.ParameterError` names each
parameter by its flag) and usage errors (unknown flags, bad values) become one line on stderr and exit
status 2; Ctrl-C exits with 130 (runs resume from their folder).
"""

from __future__ import annotations

import argparse
import importlib
import math
import re
import sys

from .errors import ClicaError
from .params import ParameterError

# command name -> (module, one-line help)
COMMANDS = {
    "mlp": ("clica.experiments.mlp", "MLP-mixing experiment (the original main_mlp.py)"),
    "kitti": ("clica.experiments.kitti", "KITTI Masks experiment (the original main_kitti.py)"),
    "3dident": ("clica.experiments.threedident", "3DIdent experiment (the original main_3dident.py)"),
    "render": ("clica.render.cli", "generate the 3DIdent dataset: latents, images, previews, stats"),
    "data": ("clica.data.cli", "make offline datasets: synthetic KITTI Masks, dSprites and 3D Shapes"),
    "table": ("clica.experiments.table", "the paper's identifiability grid over seeds, run on Ray"),
    "score": ("clica.metrics.cli", "score a representation against ground-truth factors (MCC, R², MIG, DCI, ...)"),
    "rerun": ("clica.experiments.rerun", "run a run folder's config.json again (same settings and seed) into a new "
                                         "folder"),
}


# a help text that already says its default: "(default: ...)", "Default: ...", "%(default)s"
_STATES_DEFAULT = re.compile(r"%\(default\)|\(default\b|\bdefault:", re.IGNORECASE)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to an option's help, but only where it informs.

    Nothing is added when the help already states its default, when the
    default is empty (``None``, ``""``, ``False``, ``[]``), or for on/off
    switches (``store_true``/``store_false``): ``--no-x (default: True)``
    reads as the opposite of the truth.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (action.nargs == 0 or default is argparse.SUPPRESS or default is None or default is False
                or (isinstance(default, (str, list, tuple)) and len(default) == 0)
                or _STATES_DEFAULT.search(text)):
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text
        if isinstance(default, (list, tuple)):
            shown = " ".join(str(v) for v in default)
        else:
            shown = str(default)
        return f"{text} (default: {shown.replace('%', '%%')})".lstrip()


class ArgumentParser(argparse.ArgumentParser):
    """clica's parsers: :class:`HelpFormatter`, and usage errors as one line.

    ``clica mlp --preset nope`` prints ``clica mlp: error: argument --preset: invalid
    choice: ...; see clica mlp --help`` (not the whole usage) and exits with status 2.
    Sub-parsers made with ``add_subparsers`` are of this class too.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


class _PrintVersion(argparse.Action):
    """``clica --version``: the installed package's version (read only when asked: the start stays light)."""

    def __call__(self, parser, namespace, values, option_string=None):
        import clica

        print(f"clica {clica.__version__}")
        parser.exit()


def _innermost_parser(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The (sub-)parser of the command the arguments chose, e.g. that of ``clica render images``."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, subs[0].dest, None) if subs else None
        if name is None or name not in subs[0].choices:
            return parser
        parser = subs[0].choices[name]


def _flag_of(parser: argparse.ArgumentParser):
    """``name -> flag``: a parameter's first flag in ``parser`` (``m_p -> --m-p``), else the name itself."""
    flags = {}
    for action in parser._actions:
        if action.option_strings:
            flags.setdefault(action.dest, action.option_strings[0])
    return lambda name: flags.get(name, name)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command`` only that command's module is imported (fast start-up).

    ``command=""`` imports none: the top-level ``clica --help`` starts in well under a second.
    """
    parser = ArgumentParser(
        prog="clica",
        description="Identifiable contrastive learning: reproduce 'Contrastive Learning "
        "Inverts the Data Generating Process' (Zimmermann et al., ICML 2021).",
    )
    parser.add_argument("--version", nargs=0, action=_PrintVersion, default=argparse.SUPPRESS,
                        help="print clica's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if command is not None and name != command:
            sub.add_parser(name, help=help_text)
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # command not built yet
        p = sub.add_parser(name, help=help_text, description=getattr(module, "DESCRIPTION", help_text))
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _check_common_flags(args: argparse.Namespace) -> None:
    """What holds for every command: no flag takes nan or inf (``--lr nan`` would train nothing, or
    fail deep inside torch), and a ``--seed`` lies in the range every generator takes."""
    from .runs import check_seed

    for name, value in vars(args).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ClicaError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
    check_seed(getattr(args, "seed", None))


def _os_error_line(exc: OSError) -> str:
    """One line for an error of the file system (a full disk, a name too long, no permission)."""
    from .runs import os_error_reason

    reason = os_error_reason(exc)
    name = str(exc.filename or "")
    if len(name) > 80:
        name = name[:60] + "…" + name[-15:]
    return f"{reason} ({name})" if name else reason


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else "")
    args, extra = parser.parse_known_args(argv)
    if extra:   # reported by the command's own parser: "clica kitti: error: unrecognized arguments: ..."
        _innermost_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    args._argv = argv  # lets a command print the exact command line that resumes it
    from . import distributed  # torch: imported once a command runs, not for the top-level help

    try:
        _check_common_flags(args)
        return int(args._run(args) or 0)
    except RuntimeError as exc:
        world = distributed.current_world()
        if not world.distributed:
            raise
        # a collective that failed: another process of the torchrun run died, stopped or timed out
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        print(f"clica {args.command}: error: process {world.rank} of {world.size}: another process of this "
              f"torchrun run failed or stopped responding ({first})", file=sys.stderr)
        return 2
    except ClicaError as exc:
        message = exc.spelled(_flag_of(_innermost_parser(parser, args))) if isinstance(exc, ParameterError) else exc
        print(f"clica {args.command}: error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:
        # the file system refused (a full disk, a name too long, no permission) where no clica writer said it
        print(f"clica {args.command}: error: {_os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        resume = getattr(exc, "resume", None)
        how = f"resume with: {resume}" if resume else "run the same command again to resume"
        print(f"clica {args.command}: interrupted; {how}", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
