"""One bounded reader for every file LayerFit stores (chats, settings, calibration).

A stored file is edited by hand, synced between machines, half-written by a crash, or replaced by
something that is not a file at all. None of that may stop the app from opening, so every read here:

- opens **regular files only** (a FIFO or a device would block the start-up or never end), without
  blocking on the open itself;
- refuses files larger than the caller's limit before reading them (a 200 MB settings file is damage,
  not settings);
- parses JSON with bounded nesting (a ``RecursionError`` from ``[[[[…`` becomes a plain message) and
  bounded numbers: ``NaN``, ``Infinity``, a float that overflows (``1e400``) and an integer with more
  than :data:`MAX_INT_DIGITS` digits are read as ``null`` (and counted), never raised;
- reports every failure as one :class:`StoredFileError` whose message a person understands.

:func:`set_aside` renames a damaged file to ``NAME.bad-<time>`` so the user is told about it once and
the next start is clean; nothing is ever deleted.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import time
from pathlib import Path
from typing import Any

#: Integers longer than this are not numbers any LayerFit file holds (Unix nanoseconds have 19 digits).
MAX_INT_DIGITS = 24
#: Deeper JSON than this is not something LayerFit wrote.
MAX_DEPTH = 64


class StoredFileError(Exception):
    """A stored file that could not be used. ``kind``: "missing", "special", "unreadable", "too_large"
    or "damaged" (only "too_large" and "damaged" files are worth setting aside)."""

    def __init__(self, path: str | Path, kind: str, problem: str) -> None:
        self.path = str(path)
        self.kind = kind
        self.problem = problem
        super().__init__(f"{Path(path).name}: {problem}")

    @property
    def damaged(self) -> bool:
        return self.kind in ("damaged", "too_large")


class _Numbers:
    """JSON number hooks that never raise: out-of-range values become None and are counted."""

    def __init__(self) -> None:
        self.replaced = 0

    def constant(self, _name: str) -> None:  # NaN, Infinity, -Infinity
        self.replaced += 1
        return None

    def float_(self, s: str) -> float | None:
        v = float(s)
        if not math.isfinite(v):
            self.replaced += 1
            return None
        return v

    def int_(self, s: str) -> int | None:
        if len(s.lstrip("-")) > MAX_INT_DIGITS:
            self.replaced += 1
            return None
        return int(s)


def _describe_size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB"


def read_bytes_bounded(path: str | Path, max_bytes: int) -> bytes:
    """The content of a regular file no larger than ``max_bytes``; StoredFileError otherwise."""
    p = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise StoredFileError(p, "missing", "the file does not exist") from None
    except IsADirectoryError:
        raise StoredFileError(p, "special", "it is a folder, not a file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise StoredFileError(p, "unreadable", f"it could not be opened ({_reason(exc)})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a pipe" if stat.S_ISFIFO(st.st_mode) \
                else "a device or socket"
            raise StoredFileError(p, "special", f"it is {kind}, not a regular file, so it was not read")
        if st.st_size > max_bytes:
            raise StoredFileError(p, "too_large", f"it is {_describe_size(st.st_size)}, far larger than this "
                                                  f"kind of file ever is (at most {_describe_size(max_bytes)})")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # it grew while we read it
                raise StoredFileError(p, "too_large", f"it is larger than {_describe_size(max_bytes)}")
        return b"".join(chunks)
    except OSError as exc:
        raise StoredFileError(p, "unreadable", f"it could not be read ({_reason(exc)})") from None
    finally:
        os.close(fd)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "no permission"
        return exc.strerror or type(exc).__name__
    return str(exc) or type(exc).__name__


def _depth_ok(value: Any, limit: int) -> bool:
    """Iterative: is ``value`` nested no deeper than ``limit``?"""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            if d > limit:
                return False
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            if d > limit:
                return False
            stack.extend((x, d + 1) for x in v)
    return True


def parse_json_bounded(text: str, path: str | Path = "data", max_depth: int = MAX_DEPTH) -> tuple[Any, int]:
    """(value, how many out-of-range numbers were read as None). StoredFileError("damaged") otherwise."""
    nums = _Numbers()
    try:
        value = json.loads(text, parse_constant=nums.constant, parse_float=nums.float_, parse_int=nums.int_)
    except json.JSONDecodeError as exc:
        raise StoredFileError(path, "damaged", f"it is not valid JSON (line {exc.lineno})") from None
    except RecursionError:
        raise StoredFileError(path, "damaged", "it is nested far too deeply to be a LayerFit file") from None
    except (ValueError, OverflowError, MemoryError) as exc:
        raise StoredFileError(path, "damaged", f"it holds a value that can't be read ({exc})") from None
    if not _depth_ok(value, max_depth):
        raise StoredFileError(path, "damaged", "it is nested far too deeply to be a LayerFit file")
    return value, nums.replaced


def read_json(path: str | Path, max_bytes: int, max_depth: int = MAX_DEPTH) -> tuple[Any, int]:
    """Read a stored JSON file within bounds: (value, number of out-of-range numbers read as None)."""
    data = read_bytes_bounded(path, max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise StoredFileError(path, "damaged", "it is not text (the file is damaged)") from None
    return parse_json_bounded(text, path, max_depth)


def set_aside(path: str | Path) -> Path | None:
    """Rename a damaged file to ``NAME.bad-<time>`` (never overwriting); None if it couldn't be moved."""
    p = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(100):
        target = p.with_name(f"{p.name}.bad-{stamp}" + (f"-{n}" if n else ""))
        if target.exists():
            continue
        try:
            os.replace(p, target)
        except OSError:
            return None
        return target
    return None


def finite_number(value: Any, lo: float, hi: float) -> float | None:
    """``value`` as a float when it is a real number in [lo, hi]; None otherwise (bools are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        v = float(value)
    except OverflowError:
        return None
    return v if math.isfinite(v) and lo <= v <= hi else None
