"""Small argparse helpers shared by the experiment commands."""

from __future__ import annotations

import argparse
import copy
import dataclasses
from contextlib import contextmanager
from typing import Any

from ..errors import ClicaError, Interrupted


class Explicit(argparse.Action):
    """Store the value and remember that the user gave the flag (so presets don't override it)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        explicit = set(getattr(namespace, "_explicit", set()))
        explicit.add(self.dest)
        namespace._explicit = explicit


def apply_preset(args: argparse.Namespace, preset: dict) -> None:
    """Set each preset value unless the user gave that flag explicitly."""
    explicit = getattr(args, "_explicit", set())
    for key, value in preset.items():
        if key not in explicit:
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


# attributes the command line sets on a namespace besides the flags, carried over to a config
_CLI_ATTRIBUTES = ("_given", "_explicit", "_argv")


def config_class(name: str, add_arguments, doc: str) -> type:
    """A dataclass whose fields are the flags that ``add_arguments`` defines, with their defaults.

    The flags stay defined once (names, defaults, help and checks in ``add_arguments``); the
    dataclass is how the experiment is configured from Python and what ``config.json`` holds.
    ``Config.from_args(namespace)`` maps parsed flags to a config, ``Config.from_dict(d)``
    builds one from a saved ``config.json`` (keys that are not flags are ignored; a key of the
    wrong kind is a one-line error) and ``cfg.to_dict()`` gives the plain settings.
    """
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    actions = list({a.dest: a for a in reversed(parser._actions)  # one field per setting (--x/--no-x)
                    if a.dest != argparse.SUPPRESS and a.option_strings}.values())[::-1]
    fields = [(a.dest, Any, dataclasses.field(default_factory=lambda d=a.default: copy.deepcopy(d)))
              for a in actions]
    required = [a.dest for a in actions if a.required]

    def from_args(cls, args: argparse.Namespace):
        cfg = cls(**{k: v for k, v in vars(args).items() if k in cls.__dataclass_fields__})
        for attr in _CLI_ATTRIBUTES:  # which flags were given, the command line: not settings
            if hasattr(args, attr):
                object.__setattr__(cfg, attr, getattr(args, attr))
        return cfg

    def from_dict(cls, data: dict, source: str = "config"):
        if not isinstance(data, dict):
            raise ClicaError(f"{source} holds a {type(data).__name__}, not a dict of settings")
        cfg = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        missing = [k for k in required if getattr(cfg, k) is None]
        if missing:
            raise ClicaError(f"{source} lacks {', '.join(missing)}")
        for a in actions:  # a saved value must be of the kind the flag takes (a list for a tuple)
            value, default = getattr(cfg, a.dest), a.default
            if value is None or default is None:
                continue
            if isinstance(default, bool) != isinstance(value, bool) or (
                    isinstance(default, (int, float)) and not isinstance(value, (int, float))) or (
                    isinstance(default, str) and not isinstance(value, str)):
                raise ClicaError(f"{source}: {a.dest} is {value!r}, not a value of --{a.dest.replace('_', '-')}")
            if isinstance(value, list) and isinstance(default, tuple):
                setattr(cfg, a.dest, tuple(value))
        return cfg

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def copy_config(self, **changes):
        """A copy with ``changes``, keeping what the command line recorded (given flags, argv)."""
        new = dataclasses.replace(self, **changes)
        for attr in _CLI_ATTRIBUTES:
            if hasattr(self, attr):
                object.__setattr__(new, attr, getattr(self, attr))
        return new

    cls = dataclasses.make_dataclass(name, fields, namespace={
        "from_args": classmethod(from_args), "from_dict": classmethod(from_dict), "to_dict": to_dict,
        "copy": copy_config, "__doc__": doc})
    return cls
