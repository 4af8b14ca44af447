"""Byte sizes: parsing what users type (``16GiB``, ``12000MiB``) and printing sizes people can read."""

from __future__ import annotations

import re

KiB = 1024
MiB = 1024**2
GiB = 1024**3

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": KiB,
    "m": 1000**2, "mb": 1000**2, "mib": MiB,
    "g": 1000**3, "gb": 1000**3, "gib": GiB,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


class SizeError(ValueError):
    """A size string that can't be read, with a message that says what is accepted."""


def parse_size(text: str | int | float) -> int:
    """Parse ``16GiB``, ``12000MiB``, ``1.5 GB`` or a plain byte count into bytes.

    Binary units (KiB, MiB, GiB, TiB) are powers of 1024; decimal ones (KB, MB, GB) powers of 1000,
    as on a GPU box's label. A bare number is bytes.
    """
    if isinstance(text, (int, float)):
        if text < 0:
            raise SizeError(f"a size can't be negative: {text}")
        return int(text)
    m = _SIZE_RE.match(text)
    if not m or m.group(2).lower() not in _UNITS:
        raise SizeError(f"can't read the size {text!r}: use a number with a unit, like 16GiB, 12000MiB or 8GB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def fmt_bytes(n: float, digits: int = 1) -> str:
    """``1536 MiB`` style for small sizes, ``12.3 GiB`` for large ones; signed values keep their sign."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n >= GiB:
        return f"{sign}{n / GiB:.{digits}f} GiB"
    if n >= MiB:
        return f"{sign}{n / MiB:.0f} MiB"
    if n >= KiB:
        return f"{sign}{n / KiB:.0f} KiB"
    return f"{sign}{int(n)} B"
