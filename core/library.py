"""The model library: GGUF files found in the configured folders, the files added by hand, and the demo model.

Scanning only lists files (name, size); headers are read on demand (core.gguf_info), so a folder of
forty-gigabyte files lists instantly and a broken file can't break the list.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from core.demo import demo_model_or_none


@dataclass(frozen=True)
class LibraryEntry:
    path: str
    name: str
    size: int
    source: str  # "demo", "folder", "file"
    problem: str | None = None  # e.g. "file not found" for a remembered file that's gone


def scan_folder(folder: str | Path, max_depth: int = 3) -> list[Path]:
    """GGUF files under ``folder`` (a few levels deep; hidden folders and unreadable ones skipped)."""
    found: list[Path] = []
    try:
        root = Path(folder).expanduser()
        if not root.is_dir():
            return found
    except (OSError, RuntimeError, ValueError):  # a NUL in a saved path, no home folder, …
        return found
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
        depth = len(Path(dirpath).parts) - base_depth
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < max_depth else []
        for fn in sorted(filenames):
            if fn.lower().endswith(".gguf") and not fn.startswith("."):
                found.append(Path(dirpath) / fn)
    return found


def list_models(folders: Iterable[str | Path] = (), files: Iterable[str | Path] = (),
                include_demo: bool = True) -> list[LibraryEntry]:
    """All models, demo first, without duplicates (by resolved path)."""
    entries: list[LibraryEntry] = []
    seen: set[str] = set()

    def add(p: Path, source: str) -> None:
        """One entry; whatever is wrong with this path becomes its problem line, never an exception."""
        try:
            rp = str(p.expanduser().resolve())
        except (OSError, RuntimeError, ValueError):  # RuntimeError: a symlink loop (Python 3.11)
            rp = str(p)
        if rp in seen:
            return
        seen.add(rp)
        size, problem = 0, None
        try:
            st = os.stat(rp)
            if stat.S_ISREG(st.st_mode):
                size = st.st_size
            else:
                problem = "a folder, not a file" if stat.S_ISDIR(st.st_mode) else \
                    "not a regular file (a pipe or device), so it is not read"
        except ValueError:
            problem = "the path contains a character no file name can hold (NUL)"
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                problem = "file not found"
            elif exc.errno == errno.ELOOP:
                problem = "a loop of symbolic links"
            else:
                problem = exc.strerror or str(exc)
        name = Path(rp).stem or rp
        entries.append(LibraryEntry(rp.replace("\x00", "\\0"), name.replace("\x00", "\\0"), size, source,
                                    problem))

    if include_demo:
        demo = demo_model_or_none()
        if demo is not None:
            add(demo, "demo")
    for f in files:
        add(Path(f), "file")
    for folder in folders:
        for p in scan_folder(folder):
            add(p, "folder")
    return entries


def path_problem(path: str | Path) -> str:
    """Why ``path`` can't be a model file, in words (for a command line given a bad MODEL)."""
    try:
        st = os.stat(Path(path).expanduser())
    except ValueError:
        return f"{path}: the path contains a character no file name can hold (NUL)"
    except FileNotFoundError:
        return f"no such model file: {path}"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{path} is a loop of symbolic links, not a model file"
        return f"can't read {path}: {exc.strerror or exc}"
    if stat.S_ISDIR(st.st_mode):
        return f"{path} is a folder; give the path of a .gguf file"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is a pipe or a device, not a model file"
    return f"{path} can't be used as a model file"
