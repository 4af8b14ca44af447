"""One LayerFit window per data folder: an advisory lock the operating system drops when the process ends.

Every save rewrites a whole file, so two windows writing the same chats and settings would silently
undo each other's changes (the last writer wins). The GUI takes this lock before it reads anything; a
second window finds it held, says another LayerFit is open, and leaves the data alone.

The lock is ``flock`` on POSIX and ``msvcrt.locking`` on Windows, on ``data_dir()/layerfit.lock``. Both
are released by the kernel when the holder dies, even by SIGKILL, so a crash never leaves a stale lock.
The file also holds the holder's process id, for the message.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from core.settings import data_dir

LOCK_NAME = "layerfit.lock"


class InstanceLock:
    """``acquire()`` → True when this process is now the only LayerFit using ``folder``."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else data_dir()
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return True  # a folder we can't write: saving will say so; don't block the app over a lock
        if not _try_lock(fd):
            os.close(fd)
            return False
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder_pid(self) -> int | None:
        """The process id written by the holder (None when unknown)."""
        try:
            text = self.path.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            return None
        return int(text) if text.isascii() and text.isdigit() and len(text) < 12 else None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                _unlock(fd)
            os.close(fd)


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
