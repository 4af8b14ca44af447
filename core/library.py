"""The model library: GGUF files found in the configured folders, the files added by hand, and the demo model.

Scanning only lists files (name, size); headers are read on demand (core.gguf_info), so a folder of
forty-gigabyte files lists instantly and a broken file can't break the list.
"""

from __future__ import annotations

import os
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
    root = Path(folder).expanduser()
    found: list[Path] = []
    if not root.is_dir():
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
        try:
            rp = str(p.expanduser().resolve())
        except OSError:
            rp = str(p)
        if rp in seen:
            return
        seen.add(rp)
        try:
            size = os.stat(rp).st_size
            problem = None
        except OSError as exc:
            size, problem = 0, ("file not found" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc))
        entries.append(LibraryEntry(rp, Path(rp).stem, size, source, problem))

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
