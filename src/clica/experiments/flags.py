"""Small argparse helpers shared by the experiment commands."""

from __future__ import annotations

import argparse


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
