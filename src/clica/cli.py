"""``clica <command>``: a thin dispatcher over the experiment and tool modules.

Each command module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
User errors (:class:`~clica.errors.ClicaError`) become one line on stderr and
exit status 2; Ctrl-C exits with 130 (runs resume from their folder).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import ClicaError

# command name -> (module, one-line help)
COMMANDS = {
    "mlp": ("clica.experiments.mlp", "MLP-mixing experiment (the original main_mlp.py)"),
    "kitti": ("clica.experiments.kitti", "KITTI Masks experiment (the original main_kitti.py)"),
    "3dident": ("clica.experiments.threedident", "3DIdent experiment (the original main_3dident.py)"),
    "render": ("clica.render.cli", "generate the 3DIdent dataset: latents, images, previews, stats"),
    "data": ("clica.data.cli", "make offline datasets (synthetic KITTI Masks)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command`` only that command's module is imported (fast start-up)."""
    parser = argparse.ArgumentParser(
        prog="clica",
        description="Identifiable contrastive learning: reproduce 'Contrastive Learning "
        "Inverts the Data Generating Process' (Zimmermann et al., ICML 2021).",
    )
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
        p = sub.add_parser(name, help=help_text, description=getattr(module, "DESCRIPTION", help_text),
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except ClicaError as exc:
        print(f"clica {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"clica {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
