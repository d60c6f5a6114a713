"""Presets and the resume hint, shared by the experiment commands (their flags: :mod:`.config`)."""

from __future__ import annotations

import argparse
from contextlib import contextmanager

from ..errors import Interrupted


def apply_preset(args: argparse.Namespace, preset: dict) -> None:
    """Set each preset value unless the user gave that flag explicitly."""
    given = getattr(args, "_given", set())
    for key, value in preset.items():
        if key not in given:
            setattr(args, key, value)


def resume_command(args: argparse.Namespace, *extra: str) -> str | None:
    """The command line that continues this run: the user's own (``args._argv``, set by the CLI)
    plus each flag in ``extra`` (``"--flag"`` or ``"--flag value"`` strings) it does not already give."""
    import shlex

    argv = getattr(args, "_argv", None)
    if argv is None:
        return None
    words = list(argv)
    for item in extra:
        flag = item.split()[0]
        if not any(w == flag or w.startswith(flag + "=") for w in words):
            words += shlex.split(item)
    return "clica " + shlex.join(words)


@contextmanager
def resume_hint(args: argparse.Namespace, *extra: str):
    """Turn Ctrl-C / SIGTERM inside the block into :class:`Interrupted` carrying the exact command
    that resumes the run (see :func:`resume_command`), for the CLI to print."""
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt:
        command = resume_command(args, *extra)
        if command is None:
            raise
        raise Interrupted(command) from None
