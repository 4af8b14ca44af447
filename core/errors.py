"""Turn any exception into one sentence a person can act on. The CLI and the GUI both use this."""

from __future__ import annotations

import errno


def describe(exc: BaseException) -> str:
    """A plain-words message for ``exc``. Known LayerFit errors already carry one."""
    from core.atomic import SaveError
    from core.gguf_info import ModelFileError
    from core.modelfile import ModelfileError

    if isinstance(exc, (ModelFileError, SaveError, ModelfileError)):
        return str(exc)
    try:
        from core.engine import EngineError

        if isinstance(exc, EngineError):
            return str(exc)
    except ImportError:  # pragma: no cover
        pass
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
