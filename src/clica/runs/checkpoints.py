"""Safe loading of the files given to clica (checkpoints, models).

They are read with ``weights_only=True``: tensors, dicts, lists, numbers and strings only; anything that
would make the unpickler call code is refused. A file that does not have the expected content gives one
line naming the file and what is wrong, never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import warnings
from typing import Any, Callable, Iterator

from ..errors import ClicaError


def _first_line(exc: BaseException, limit: int = 200) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def load_torch_file(path: str | os.PathLike, map_location="cpu") -> Any:
    """``torch.load(path, weights_only=True)``; every failure is a one-line :class:`ClicaError`.

    A file holding other objects than tensors and plain data (numbers,
    strings, lists, dicts) is refused and never loaded another way.
    """
    import torch

    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise ClicaError(f"cannot read {path}: {_first_line(exc)}") from None
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise ClicaError(f"{path} holds objects other than tensors and plain data{what} and was not loaded "
                         f"(clica only reads checkpoints that cannot run code)") from None
    except Exception as exc:  # truncated, not a torch file, unreadable, ...
        raise ClicaError(f"cannot read {path}: {type(exc).__name__}: {_first_line(exc)}") from None


def _type_name(t) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return "None" if t is type(None) else t.__name__


def check_fields(state: Any, path, required: dict | None = None, optional: dict | None = None,
                 what: str = "a clica checkpoint") -> dict:
    """Check that ``state`` is a dict with the ``required`` (and, where present, ``optional``) fields.

    Both map a key to a type or a tuple of types; a key ``"a.b"`` is the field
    ``b`` of the dict ``state["a"]``. Raises a one-line :class:`ClicaError`
    naming ``path`` and what is missing or of the wrong type; returns ``state``.
    """
    if not isinstance(state, dict):
        raise ClicaError(f"{path} is not {what}: it holds a {type(state).__name__}, not a dict")
    missing, wrong = [], []
    for fields, needed in ((required or {}, True), (optional or {}, False)):
        for key, types in fields.items():
            value, present = state, True
            for part in key.split("."):
                if isinstance(value, dict) and part in value:
                    value = value[part]
                else:
                    present = False
                    break
            if not present:
                if needed:
                    missing.append(key)
            elif not isinstance(value, types):
                wrong.append(f"{key} is a {type(value).__name__}, not {_type_name(types)}")
    if missing:
        raise ClicaError(f"{path} is not {what}: it lacks {', '.join(missing)}")
    if wrong:
        raise ClicaError(f"{path} is not {what}: {'; '.join(wrong[:3])}")
    return state


def _examples(keys: list, n: int = 2) -> str:
    return ", ".join(str(k) for k in keys[:n]) + (", …" if len(keys) > n else "")


def load_module_state(module, state: Any, path, name: str,
                      may_lack: Callable[[str], bool] | None = None) -> None:
    """``module.load_state_dict(state)`` with a short one-line error when it does not fit.

    The error counts missing and unexpected keys and tensors of another shape,
    with a couple of examples each, e.g. ``cannot load RUN/f.pt into rn18:
    122 missing keys (e.g. 0.weight, 1.weight, …), 3 unexpected (e.g. ...)``.
    Keys for which ``may_lack(key)`` holds may be absent from the file (they
    keep their current values).
    """
    check_module_state(module.state_dict(), state, path, name, may_lack)
    with loading(path, f"state of {name}"):
        module.load_state_dict(state, strict=False)


def check_module_state(own: dict, state: Any, path, name: str,
                       may_lack: Callable[[str], bool] | None = None) -> None:
    """The checks of :func:`load_module_state` against a module's own state dict ``own``, loading
    nothing: with ``own`` from a module built on the ``meta`` device, a file is checked against
    the sizes it asks for before any memory is allocated."""
    import torch

    prefix = f"cannot load {path} into {name}"
    if not isinstance(state, dict):
        raise ClicaError(f"{prefix}: it holds a {type(state).__name__}, not a state dict")
    bad_keys = [k for k in state if not isinstance(k, str)]
    if bad_keys:
        raise ClicaError(f"{prefix}: it is not a state dict (keys such as {bad_keys[0]!r} are not names)")
    missing = [k for k in own if k not in state and not (may_lack and may_lack(k))]
    unexpected = [k for k in state if k not in own]
    not_tensors = [k for k in state if k in own and torch.is_tensor(own[k]) and not torch.is_tensor(state[k])]
    shapes = [k for k in state if k in own and torch.is_tensor(own[k]) and torch.is_tensor(state[k])
              and state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key{'s' if len(missing) > 1 else ''} (e.g. {_examples(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {_examples(unexpected)})")
    if shapes:
        k = shapes[0]
        problems.append(f"{len(shapes)} of another shape (e.g. {k}: {tuple(state[k].shape)} in the file, "
                        f"{tuple(own[k].shape)} here)")
    if not_tensors:
        problems.append(f"{len(not_tensors)} not tensors (e.g. {_examples(not_tensors)})")
    if problems:
        raise ClicaError(f"{prefix}: {', '.join(problems)}")


def load_optimizer_state(optimizer, state: Any, path) -> None:
    """``optimizer.load_state_dict(state)``; one line when the state does not fit its parameters."""
    import torch

    if not isinstance(state, dict):
        raise ClicaError(f"cannot load {path}: its optimizer state is a {type(state).__name__}, not a dict")
    with loading(path, "optimizer state"):
        optimizer.load_state_dict(state)
    for group in optimizer.param_groups:  # torch checks the number of parameters, not their shapes
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if torch.is_tensor(value) and value.dim() > 0 and value.shape != p.shape:
                    raise ClicaError(f"cannot load {path}: its optimizer state does not fit the model "
                                     f"({key} of shape {tuple(value.shape)} for a parameter of shape "
                                     f"{tuple(p.shape)})")


@contextlib.contextmanager
def loading(path, what: str) -> Iterator[None]:
    """Turn the errors of applying part of a loaded file (``what``) into one line naming ``path``."""
    try:
        yield
    except ClicaError:
        raise
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError) as exc:
        detail = _first_line(exc) if not isinstance(exc, KeyError) else f"no {exc}"
        raise ClicaError(f"cannot load {path}: its {what} does not fit ({detail})") from None
