"""File dialogs open where the user last was (import, export, adding models), not always in the home
folder. The window restores the folder from ``AppSettings.last_folder`` and saves it back."""

from __future__ import annotations

from pathlib import Path

_last: str | None = None


def last_dir() -> str:
    """The folder of the last file or folder picked in any dialog, else the home folder."""
    if _last and Path(_last).is_dir():
        return _last
    return str(Path.home())


def remember(path: str | Path) -> None:
    """Note the folder of ``path`` (or ``path`` itself, when it is a folder) for the next dialog."""
    global _last
    p = Path(path)
    _last = str(p if p.is_dir() else p.parent)


def restore(folder: str | None) -> None:
    global _last
    _last = folder


def current() -> str | None:
    return _last
