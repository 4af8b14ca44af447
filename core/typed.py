"""Plain JSON into typed dataclasses: keep each value only when it has the field's declared type.

Settings and chat files are edited by hand, synced between machines, or written by older versions. A
value of the wrong type (``"temperature": "hot"``, ``"model_folders": "abc"``) must fall back to the
field's default instead of crashing the app or being misread (a string is not a list of folders).
"""

from __future__ import annotations

import types
import typing
from dataclasses import fields, is_dataclass
from typing import Any

#: Stored floats must be finite and sane (NaN and 1e300 are damage, never a setting).
FLOAT_LIMIT = 1e15


def _accepts(tp: Any, value: Any) -> tuple[bool, Any]:
    """(ok, converted value) for the simple types our dataclasses use."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _accepts(arg, value)
            if ok:
                return True, v
        return False, None
    if tp is type(None):
        return value is None, None
    if tp is Any:
        return True, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:  # (ints too big for a widget are reported where they are applied, per setting)
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= FLOAT_LIMIT
        return ok, float(value) if ok else None
    if tp is str:
        return isinstance(value, str), value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, None
        args = typing.get_args(tp)
        item = args[0] if args else Any
        out = []
        for x in value:
            ok, v = _accepts(item, x)
            if not ok:
                return False, None
            out.append(v)
        return True, (list(out) if origin is list else tuple(out))
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    return False, None


def typed_fields(cls: type, raw: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``raw`` that are fields of dataclass ``cls`` with a value of the right type."""
    assert is_dataclass(cls)
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in raw:
            ok, v = _accepts(hints[f.name], raw[f.name])
            if ok:
                out[f.name] = v
    return out
