"""The experiments' configs: one dataclass field per flag, from which argparse is built.

A field made by :func:`flag` carries its flag spelling(s), help text, argparse options and
constraints (:class:`~clica.params.Interval`, :class:`~clica.params.Options`; its ``choices`` are one);
adding a flag is adding one field. :class:`Config` gives every config the same API: ``add_arguments(parser)``,
``from_args``, ``from_dict`` (a saved ``config.json``), ``to_dict``, ``copy`` and ``validate``,
which checks each field's constraints, then the config's cross-field ``checks`` in order.
"""

from __future__ import annotations

import argparse
import dataclasses

from ..errors import ClicaError
from ..params import Options, check


def flag(*flags: str, default=None, help: str, checks=(), group: str | None = None, off: tuple[str, str] = (),
         **options) -> dataclasses.Field:
    """A config field set by ``flags`` (the first is the one messages name). A bool default makes an
    on/off switch; ``off`` adds a flag that switches it off, as (flag, help); ``options`` go to
    ``add_argument`` (``type``, ``choices``, ``required``, ``metavar``); ``group``: the help section."""
    meta = {"flags": flags, "help": help, "checks": checks, "group": group, "off": off, "options": options}
    return dataclasses.field(default=default, metadata=meta)


class Given(argparse.Action):
    """Store the value (or ``const`` for a switch) and record in ``namespace._given`` that the flag was
    given: presets and dataset checks tell a default from an explicit choice by it."""

    def __init__(self, option_strings, dest, const=None, nargs=None, **kwargs):
        super().__init__(option_strings, dest, nargs=0 if const is not None else nargs, const=const, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)
        namespace._given = {*getattr(namespace, "_given", ()), self.dest}


# attributes the command line sets on a namespace besides the flags, carried over to a config
_CLI_ATTRIBUTES = ("_given", "_argv")


class Config:
    """What every experiment's config dataclass shares (see the module's doc)."""

    checks: tuple = ()  # cross-field checks, functions of the config, run by validate after the fields'

    @classmethod
    def flag_fields(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if "flags" in f.metadata]

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> dict:
        """One argument per flag field, in the help sections the fields name; returns the sections by name
        (None: the parser's own)."""
        groups = {None: parser}
        for f in cls.flag_fields():
            m = f.metadata
            if m["group"] not in groups:
                groups[m["group"]] = parser.add_argument_group(m["group"])
            default = f.default
            switch = {"const": not default} if isinstance(default, bool) else {}
            groups[m["group"]].add_argument(*m["flags"], dest=f.name, default=default, help=m["help"], action=Given,
                                            **switch, **m["options"])
            if m["off"]:
                groups[m["group"]].add_argument(m["off"][0], dest=f.name, const=False, help=m["off"][1], action=Given)
        return groups

    @classmethod
    def from_args(cls, args: argparse.Namespace):
        """The config of parsed flags, keeping what the command line recorded (given flags, argv)."""
        cfg = cls(**{k: v for k, v in vars(args).items() if k in cls.__dataclass_fields__})
        for attr in _CLI_ATTRIBUTES:
            if hasattr(args, attr):
                object.__setattr__(cfg, attr, getattr(args, attr))
        return cfg

    @classmethod
    def from_dict(cls, data: dict, source: str = "config"):
        """The settings of a saved ``config.json`` (keys that are not fields are left out); a missing
        required setting or a value of the wrong kind is a one-line error."""
        if not isinstance(data, dict):
            raise ClicaError(f"{source} holds a {type(data).__name__}, not a dict of settings")
        cfg = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        fields = cls.flag_fields()
        missing = [f.name for f in fields if f.metadata["options"].get("required") and getattr(cfg, f.name) is None]
        if missing:
            raise ClicaError(f"{source} lacks {', '.join(missing)}")
        for f in fields:  # a saved value must be of the kind the flag takes (a list for a tuple)
            value, default = getattr(cfg, f.name), f.default
            if value is None or default is None:
                continue
            if isinstance(default, bool) != isinstance(value, bool) or (
                    isinstance(default, (int, float)) and not isinstance(value, (int, float))) or (
                    isinstance(default, str) and not isinstance(value, str)):
                raise ClicaError(f"{source}: {f.name} is {value!r}, not a value of {f.metadata['flags'][0]}")
            if isinstance(value, list) and isinstance(default, tuple):
                setattr(cfg, f.name, tuple(value))
        return cfg

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def copy(self, **changes):
        """A copy with ``changes``, keeping what the command line recorded (given flags, argv)."""
        new = dataclasses.replace(self, **changes)
        for attr in _CLI_ATTRIBUTES:
            if hasattr(self, attr):
                object.__setattr__(new, attr, getattr(self, attr))
        return new

    def validate(self) -> None:
        """A :class:`~clica.params.ParameterError` naming the first field whose value breaks its
        constraints or is not one of its ``choices`` (a field whose default is None may be None), then
        the cross-field checks."""
        for f in self.flag_fields():
            value, choices = getattr(self, f.name), f.metadata["options"].get("choices")
            if value is not None or f.default is not None:
                check(f.name, value, *f.metadata["checks"], *([Options(choices)] if choices else []))
        for cross_check in type(self).checks:
            cross_check(self)
