"""Atomic file writes: write a temp file next to the target, fsync, then ``os.replace``.

A crash or a full disk can never leave a half-written file behind: either the old content or the new
content is on disk. Errors come back as ``SaveError`` with a message a person understands.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from core.errors import PlainError


class SaveError(OSError, PlainError):
    """Saving failed; the previous file (if any) is intact."""

    def __str__(self) -> str:  # the words only: "[Errno 0] …" means nothing to a person
        return str(self.strerror) if self.strerror else super().__str__()


def _describe(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ENOSPC:
        return f"the disk is full, so {path} was not saved (the previous version is intact)"
    if exc.errno == errno.EISDIR:
        return f"{path} is a folder, so it can't be saved as a file (nothing was changed)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write {path} (the previous version is intact)"
    return f"could not save {path}: {exc.strerror or exc} (the previous version is intact)"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once at import (os.umask can only be read by setting it)


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8", *, make_dirs: bool = False) -> None:
    write_bytes_atomic(path, text.encode(encoding), make_dirs=make_dirs)


def write_bytes_atomic(path: str | Path, data: bytes, *, make_dirs: bool = False) -> None:
    """Write ``data`` to ``path`` atomically, keeping an existing file's permissions.

    ``make_dirs`` creates missing parent folders: right for LayerFit's own data folders, wrong for a
    path the user typed (a typo must not leave new folders behind), so it is off by default.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        if make_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.parent.is_dir():
            raise SaveError(errno.ENOENT, f"could not save {path}: the folder {path.parent} does not exist")
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_UMASK
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600; keep what the file had (or the user's default)
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except SaveError:
        raise
    except OSError as exc:
        raise SaveError(exc.errno or 0, _describe(exc, path)) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where folders can't be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """JSON for LayerFit's own files (settings, chats, calibration): their folders are created."""
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n", make_dirs=True)


#: ``tempfile.mkstemp(prefix=".NAME.", suffix=".tmp")``: a dot, the target's name, 8 random characters.
_TEMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def clean_stale_temps(folder: str | Path, min_age_s: float = 600.0) -> int:
    """Remove temp files an interrupted save left in ``folder`` (older than ``min_age_s``); returns how many.

    Only names this module makes (``.NAME.XXXXXXXX.tmp``), only regular files, never recursing: a save
    in progress (younger than ``min_age_s``) is left alone. Errors are ignored: cleaning is a courtesy.
    """
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except (OSError, ValueError):
        return 0
    for e in entries:
        try:
            if not _TEMP_RE.match(e.name) or not e.is_file(follow_symlinks=False):
                continue
            if now - e.stat(follow_symlinks=False).st_mtime < min_age_s:
                continue
            os.unlink(e.path)
            removed += 1
        except OSError:
            continue
    return removed
