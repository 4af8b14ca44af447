"""Turn any exception into one sentence a person can act on. The CLI and the GUI both use this.

The bottom layer of ``core`` (pyproject.toml's import-linter contract): it imports no other core module.
LayerFit's own errors say they are already in words by mixing in ``PlainError``.
"""

from __future__ import annotations

import errno


class PlainError:
    """Mixin for LayerFit's exceptions whose message is already a sentence for the user."""


def describe(exc: BaseException) -> str:
    """A plain-words message for ``exc``. Known LayerFit errors already carry one."""
    if isinstance(exc, PlainError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or exc}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, IsADirectoryError):
        return f"expected a file but got a folder: {exc.filename or exc}"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "the disk is full"
    if isinstance(exc, MemoryError):
        return "ran out of memory"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
