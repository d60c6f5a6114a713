"""Constraints on a setting's value, and the error that names the setting.

``Interval`` and ``Options`` play the part of scikit-learn's ``_parameter_constraints``
entries for clica's own settings: each says whether a value holds and, if not, what is
wrong in one line. A :class:`ParameterError` names parameters as Python spells them
(``m_p must be ≥ 0, got -1``); the command line prints the same message with each
parameter's flag instead (``--m-p must be ≥ 0, got -1``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from .errors import ClicaError

__all__ = ["ParameterError", "Interval", "Options", "check", "literal"]


class ParameterError(ClicaError, ValueError):
    """A setting with a value it cannot take.

    ``template`` holds one ``{}`` for each name in ``names``; ``str()`` fills in the names,
    :meth:`spelled` whatever ``spell(name)`` gives (the CLI: the flag).
    """

    def __init__(self, template: str, *names: str):
        self.template, self.names = template, names
        super().__init__(template.format(*names))

    @classmethod
    def of(cls, name: str, problem: str) -> "ParameterError":
        """``name`` followed by ``problem``: ``ParameterError.of("lr", "must be positive, got 0")``."""
        return cls("{} " + literal(problem), name)

    def spelled(self, spell) -> str:
        return self.template.format(*map(spell, self.names))


def literal(text: str) -> str:
    """``text`` with its braces doubled, to stand in a :class:`ParameterError` template as it is."""
    return text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class Interval:
    """Numbers of ``kind`` (``int`` or ``float``; never a bool) from ``low`` to ``high`` (None: no
    bound); ``closed`` ("left", "right", "both", "neither") says which bounds belong. ``says`` is
    the message after the name, ``{value}`` the value given; by default ``must be ≥ 1, got {value}``."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "left"
    says: str = ""

    def holds(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if self.kind is int else numbers.Real):
            return False
        if self.low is not None and (value < self.low or value == self.low and self.closed in ("right", "neither")):
            return False
        return self.high is None or value < self.high or value == self.high and self.closed in ("right", "both")

    def problem(self, value) -> str:
        return (self.says or f"must be {self._range()}, got {{value}}").format(value=value)

    def _range(self) -> str:
        if self.high is None:
            if self.low == 0 and self.closed in ("right", "neither"):
                return "positive"
            return f"{'≥' if self.closed in ('left', 'both') else '>'} {self.low:g}"
        left = "[" if self.closed in ("left", "both") else "("
        right = "]" if self.closed in ("right", "both") else ")"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


@dataclass(frozen=True)
class Options:
    """One of ``values``; by default ``must be a, b or c, got {value}``."""

    values: tuple
    says: str = ""

    def holds(self, value) -> bool:
        return not isinstance(value, bool) and value in self.values

    def problem(self, value) -> str:
        *rest, last = map(str, self.values)
        return (self.says or f"must be {', '.join(rest)} or {last}, got {{value}}").format(value=value)


def check(name: str, value, *constraints) -> None:
    """A :class:`ParameterError` naming ``name`` unless ``value`` meets every constraint (in order)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ParameterError.of(name, f"must be a finite number, got {value}")
    for constraint in constraints:
        if not constraint.holds(value):
            raise ParameterError.of(name, constraint.problem(value))
