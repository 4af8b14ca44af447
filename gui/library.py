"""The model library: a Qt list model of GGUF files and the panel around it.

``ModelListModel`` is a real ``QAbstractListModel`` (checked with qtmodeltester). Each row is a file
from the configured folders, a file added by hand (or dropped), or the demo model. Listing only reads
names and sizes (core.library); a header is read off the GUI thread when the row is selected, and the
other rows are filled in one at a time in the background. A bad file shows its error in red and the
list carries on.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QByteArray,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QFont, QFontMetrics, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListView,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.errors import describe
from core.gguf_info import ModelInfo, read_model_info
from core.library import LibraryEntry, list_models
from core.ollama import OllamaModel, OllamaStore, read_store
from gui import dialog_dirs, theme
from gui.plain import tip
from gui.workers import run_task

_Index = QModelIndex | QPersistentModelIndex
#: What a header read is cached under: (path, size, mtime in ns). A file that grows or is rewritten at
#: the same path (a finished download) gets a new key, so its old "truncated" error is not reused.
_CacheKey = tuple[str, int, int | None]
#: A header read: the file's (size, mtime_ns) just before it, and the header or the error in words.
_ReadResult = tuple[tuple[int, int] | None, ModelInfo | None, str | None]


class Role(IntEnum):
    PATH = Qt.ItemDataRole.UserRole + 1
    INFO = Qt.ItemDataRole.UserRole + 2  # ModelInfo | None
    ERROR = Qt.ItemDataRole.UserRole + 3  # str | None
    SOURCE = Qt.ItemDataRole.UserRole + 4  # "demo" | "folder" | "file"
    SUMMARY = Qt.ItemDataRole.UserRole + 5  # one line: arch · params · quant · size · ctx
    READING = Qt.ItemDataRole.UserRole + 6  # bool: header being read
    SIZE = Qt.ItemDataRole.UserRole + 7  # int bytes
    OLLAMA = Qt.ItemDataRole.UserRole + 8  # OllamaModel | None (a row of the Ollama section)
    SECTION = Qt.ItemDataRole.UserRole + 9  # str | None: a caption drawn above this row ("Ollama")


#: Row keys of Ollama models: two names may share one GGUF blob, so a row is keyed by its name.
OLLAMA_PREFIX = "ollama:"


@dataclass
class _Row:
    entry: LibraryEntry
    info: ModelInfo | None = None
    error: str | None = None
    reading: bool = False
    mtime_ns: int | None = None

    @property
    def key(self) -> _CacheKey:
        return (self.entry.path, self.entry.size, self.mtime_ns)


def summary(info: ModelInfo | None, size: int) -> str:
    """"llama · 135M params · Q4_1 · 98 MiB · 8K context" (size alone before the header is read)."""
    if info is None:
        return theme.gib(size)
    parts = [info.arch, f"{theme.params(info.n_params)} params" if info.n_params else "",
             info.file_type, theme.gib(info.file_size or size),
             f"{theme.tokens(info.n_ctx_train)} context" if info.n_ctx_train else ""]
    return " · ".join(p for p in parts if p)


class ModelListModel(QAbstractListModel):
    """Rows of models (see Role). Headers are attached with ``set_info`` / ``set_error``."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[_Row] = []
        self._cache: dict[_CacheKey, tuple[ModelInfo | None, str | None]] = {}
        self._ollama: dict[str, OllamaModel] = {}  # row key → the Ollama model behind it
        self.ollama_caption = "Ollama"

    # ---- Qt model API ---------------------------------------------------------------------------------
    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's default
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows) or index.column() != 0:
            return None
        r = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            # The file name is how users know their models; the GGUF's general.name is often a
            # training-run label ("Smollm2 135M 8k Lc100K Mix1 Ep2"), so it goes in the tooltip.
            name = r.entry.name
            return f"{name} (demo)" if r.entry.source == "demo" else name
        if role == Qt.ItemDataRole.ToolTipRole and r.entry.path in self._ollama:
            return tip(_ollama_tooltip(self._ollama[r.entry.path], r.info, r.error))
        if role == Role.OLLAMA:
            return self._ollama.get(r.entry.path)
        if role == Role.SECTION:
            first = next((i for i, x in enumerate(self._rows) if x.entry.source == "ollama"), -1)
            return self.ollama_caption if index.row() == first else None
        if role == Qt.ItemDataRole.ToolTipRole:  # text from the file and its name: shown literally (tip)
            lines = [r.entry.path]
            if r.info is not None and r.info.name and r.info.name != r.entry.name:
                lines.append(f"name in the file: {r.info.name}")
            if r.error:
                lines.append(f"Problem: {r.error}")
            elif r.info is not None:
                i = r.info
                lines.append(f"{i.arch}, {i.n_layer} layers, {theme.params(i.n_params)} parameters, "
                             f"{i.file_type or '?'}; trained context {i.n_ctx_train:,} tokens")
                if i.n_expert:
                    lines.append(f"Mixture of experts: {i.n_expert} experts, {i.n_expert_used} used per token")
                if i.sliding_window:
                    lines.append(f"Sliding-window attention: window {i.sliding_window:,}")
            return tip("\n".join(lines))
        if role == Role.PATH:
            return r.entry.path
        if role == Role.INFO:
            return r.info
        if role == Role.ERROR:
            return r.error
        if role == Role.SOURCE:
            return r.entry.source
        if role == Role.SUMMARY:
            if r.error:
                return r.error
            text = summary(r.info, r.entry.size) + (" · reading header…" if r.reading else "")
            m = self._ollama.get(r.entry.path)
            if m is not None:
                ctx = m.params.get("num_ctx")
                text = " · ".join(x for x in (f"num_ctx {theme.tokens(ctx)}" if isinstance(ctx, int) else "",
                                              text) if x)
            return text
        if role == Role.READING:
            return r.reading
        if role == Role.SIZE:
            return r.entry.size
        return None

    def flags(self, index: _Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    def roleNames(self) -> dict[int, QByteArray]:
        names = dict(super().roleNames())
        names.update({int(r): QByteArray(r.name.lower().encode()) for r in Role})
        return names

    # ---- updates ------------------------------------------------------------------------------------------
    def set_entries(self, entries: list[LibraryEntry], mtimes: Mapping[str, int] | None = None,
                    ollama: Mapping[str, OllamaModel] | None = None) -> None:
        """Replace the rows; headers read before from the same file (path, size and ``mtimes``) are kept.
        ``ollama`` maps the keys of Ollama rows to their models."""
        self.beginResetModel()
        self._ollama = dict(ollama or {})
        self._rows = []
        for e in entries:
            row = _Row(e, mtime_ns=(mtimes or {}).get(e.path))
            row.info, err = self._cache.get(row.key, (None, None))
            row.error = err or e.problem
            self._rows.append(row)
        self.endResetModel()

    def set_reading(self, path: str, reading: bool) -> None:
        self._update(path, reading=reading)

    def set_info(self, path: str, info: ModelInfo, stamp: tuple[int, int] | None = None) -> None:
        """``path``'s header. ``stamp`` is the file's (size, mtime_ns) when it was read (default: as listed)."""
        self._remember(path, stamp, info, None)
        self._update(path, info=info, error=None, reading=False)

    def set_error(self, path: str, error: str, stamp: tuple[int, int] | None = None) -> None:
        """Why ``path`` can't be used (``stamp`` as for ``set_info``)."""
        self._remember(path, stamp, None, error)
        self._update(path, info=None, error=error, reading=False)

    def forget(self, path: str) -> None:
        """Drop what was read from ``path`` (the next selection reads its header again)."""
        self._cache = {k: v for k, v in self._cache.items() if k[0] != path}
        self._update(path, info=None, error=None)

    def _remember(self, path: str, stamp: tuple[int, int] | None, info: ModelInfo | None,
                  error: str | None) -> None:
        if stamp is not None:
            self._cache[(path, *stamp)] = (info, error)
            return
        row = self.row_of(path)
        if row >= 0:
            self._cache[self._rows[row].key] = (info, error)

    def _update(self, path: str, **changes: Any) -> None:
        row = self.row_of(path)
        if row < 0:
            return
        for k, v in changes.items():
            setattr(self._rows[row], k, v)
        idx = self.index(row, 0)
        self.dataChanged.emit(idx, idx, [])

    # ---- queries ------------------------------------------------------------------------------------------
    def row_of(self, path: str) -> int:
        for i, r in enumerate(self._rows):
            if r.entry.path == path:
                return i
        return -1

    def path_at(self, row: int) -> str:
        return self._rows[row].entry.path

    def ollama_of(self, key: str) -> OllamaModel | None:
        return self._ollama.get(key)

    def file_of(self, key: str) -> str:
        """The file to read for a row: the GGUF blob of an Ollama row, else the row's own path."""
        m = self._ollama.get(key)
        return m.path if m is not None and m.path else key

    def info_of(self, path: str) -> ModelInfo | None:
        row = self.row_of(path)
        return self._rows[row].info if row >= 0 else None

    def error_of(self, path: str) -> str | None:
        row = self.row_of(path)
        return self._rows[row].error if row >= 0 else None

    def next_unread(self) -> str | None:
        """A row whose header hasn't been read yet (background prefetch)."""
        for r in self._rows:
            if r.info is None and r.error is None and not r.reading:
                return r.entry.path
        return None


class ModelDelegate(QStyledItemDelegate):
    """Two lines per model: the name (bold), then the facts in grey, or the error in red."""

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        fm = QFontMetrics(option.font)  # type: ignore[attr-defined]
        extra = fm.height() + 12 if index.data(Role.SECTION) else 0
        return QSize(200, fm.height() * 2 + 14 + extra)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        section = index.data(Role.SECTION)
        if section:  # the Ollama section's caption, above its first row
            fm = QFontMetrics(option.font)  # type: ignore[attr-defined]
            cap = QRect(option.rect)  # type: ignore[attr-defined]
            cap.setHeight(fm.height() + 12)
            painter.save()
            bold = QFont(option.font)  # type: ignore[attr-defined]
            bold.setBold(True)
            painter.setFont(bold)
            painter.setPen(option.palette.color(QPalette.ColorRole.Text))  # type: ignore[attr-defined]
            painter.drawText(cap.adjusted(4, 6, -4, 0), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             QFontMetrics(bold).elidedText(str(section), Qt.TextElideMode.ElideMiddle, cap.width() - 8))
            painter.drawLine(cap.left() + 4, cap.top() + 2, cap.right() - 4, cap.top() + 2)
            painter.restore()
            option = QStyleOptionViewItem(option)
            option.rect = option.rect.adjusted(0, cap.height(), 0, 0)  # type: ignore[attr-defined]
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""  # type: ignore[attr-defined]
        style = opt.widget.style() if opt.widget is not None else None  # type: ignore[attr-defined]
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)  # type: ignore[attr-defined]
        painter.save()
        rect: QRect = opt.rect.adjusted(10, 5, -8, -5)  # type: ignore[attr-defined]
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)  # type: ignore[attr-defined]
        pal = opt.palette  # type: ignore[attr-defined]
        text_role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        bold = QFont(opt.font)  # type: ignore[attr-defined]
        bold.setBold(True)
        fm = QFontMetrics(bold)
        painter.setFont(bold)
        painter.setPen(pal.color(text_role))
        name = fm.elidedText(str(index.data(Qt.ItemDataRole.DisplayRole) or ""), Qt.TextElideMode.ElideMiddle,
                             rect.width())
        painter.drawText(rect.adjusted(0, 0, 0, -rect.height() // 2), Qt.AlignmentFlag.AlignVCenter, name)
        painter.setFont(opt.font)  # type: ignore[attr-defined]
        err = index.data(Role.ERROR)
        if err:
            painter.setPen(theme.BAD if not selected else pal.color(text_role))
            line = f"⚠ {err}"
        else:
            c = pal.color(text_role)
            c.setAlphaF(0.85 if selected else 0.62)
            painter.setPen(c)
            line = str(index.data(Role.SUMMARY) or "")
        line = QFontMetrics(opt.font).elidedText(line, Qt.TextElideMode.ElideRight, rect.width())  # type: ignore[attr-defined]
        painter.drawText(rect.adjusted(0, rect.height() // 2, 0, 0), Qt.AlignmentFlag.AlignVCenter, line)
        painter.restore()


class LibraryPanel(QWidget):
    """The list of models, with Add folder / Add file / Remove. Emits the chosen model's header.

    Signals:
        model_chosen(ModelInfo): the selected model's header is ready (GUI thread).
        ollama_chosen(OllamaModel | None): the Ollama model behind the selection (None for a file),
            emitted just before model_chosen / model_failed, so its params can set the settings.
        model_failed(str path, str error): the selected file can't be used.
        sources_changed(): folders or added files changed (to be saved).
    """

    model_chosen = Signal(object)
    ollama_chosen = Signal(object)  # OllamaModel | None, just before each model_chosen / model_failed
    model_failed = Signal(str, str)
    sources_changed = Signal()
    listed = Signal()  # the list was (re)built

    def __init__(self, folders: list[str] | None = None, files: list[str] | None = None,
                 prefetch: bool = True, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folders: list[str] = list(folders or [])
        self.files: list[str] = list(files or [])
        self.prefetch = prefetch
        self._prefetching = False
        self._selected: str | None = None
        self._pending_select: str | None = None
        self._list_gen = 0

        self.model = ModelListModel(self)
        self.view = QListView()
        self.view.setModel(self.model)
        self.view.setItemDelegate(ModelDelegate(self.view))
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setUniformItemSizes(False)  # the Ollama section's first row carries a caption
        self.view.setAlternatingRowColors(False)
        self.view.setToolTip("")
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)

        title = QLabel("<b>Models</b>")
        self.add_file_btn = QPushButton("+ File…")
        self.add_file_btn.setToolTip("Add one .gguf file (you can also drop .gguf files onto the window)")
        self.add_folder_btn = QPushButton("+ Folder…")
        self.add_folder_btn.setToolTip("Scan a folder (and a few levels below it) for .gguf files")
        self.folders_btn = QToolButton()
        self.folders_btn.setText("Folders")
        self.folders_btn.setToolTip("The folders LayerFit scans; pick one to stop scanning it")
        self.folders_btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.folders_menu = QMenu(self.folders_btn)
        self.folders_btn.setMenu(self.folders_menu)
        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: palette(placeholder-text);")  # follows a light/dark switch

        buttons = QHBoxLayout()
        buttons.addWidget(self.add_file_btn)
        buttons.addWidget(self.add_folder_btn)
        buttons.addWidget(self.folders_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(title)
        lay.addWidget(self.view, 1)
        lay.addLayout(buttons)
        lay.addWidget(self.hint)

        self.add_file_btn.clicked.connect(self._ask_file)
        self.add_folder_btn.clicked.connect(self._ask_folder)
        self.view.selectionModel().currentChanged.connect(self._on_current)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self._rebuild_folders_menu()

    # ---- sources ------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-list the models (off the GUI thread: folders may be slow network shares)."""
        self._list_gen += 1
        gen = self._list_gen
        folders, files = list(self.folders), list(self.files)
        run_task(lambda: _list_all(folders, files), on_result=lambda r: self._on_listed(gen, *r),
                 context="Listing models")

    def add_files(self, paths: list[str]) -> None:
        """Add .gguf files by hand (dialog or drop) and select the first one."""
        added = [str(Path(p).expanduser().resolve()) for p in paths if p.lower().endswith(".gguf")]
        for p in added:
            if p not in self.files:
                self.files.append(p)
        if added:
            self._pending_select = added[0]
            self.sources_changed.emit()
            self.refresh()

    def add_folder(self, folder: str) -> None:
        if folder and folder not in self.folders:
            self.folders.append(folder)
            self._rebuild_folders_menu()
            self.sources_changed.emit()
            self.refresh()

    def remove_folder(self, folder: str) -> None:
        if folder in self.folders:
            self.folders.remove(folder)
            self._rebuild_folders_menu()
            self.sources_changed.emit()
            self.refresh()

    def remove_file(self, path: str) -> None:
        if path in self.files:
            self.files.remove(path)
            self.sources_changed.emit()
            self.refresh()

    def select_path(self, path: str) -> bool:
        """Select ``path`` now, or as soon as it is listed. True when it was already in the list."""
        row = self.model.row_of(path)
        if row < 0:
            self._pending_select = path
            return False
        self.view.setCurrentIndex(self.model.index(row, 0))
        return True

    def selected_path(self) -> str | None:
        return self._selected

    # ---- internals -----------------------------------------------------------------------------------------
    def _on_listed(self, gen: int, entries: list[LibraryEntry], mtimes: dict[str, int],
                   store: OllamaStore | None = None) -> None:
        if gen != self._list_gen:
            return  # a newer listing is on its way
        keep = self._pending_select or self._selected
        ollama = {OLLAMA_PREFIX + m.name: m for m in (store.models if store else ())}
        self.model.ollama_caption = f"Ollama  ({', '.join(_home(d) for d in store.dirs)})" if store else "Ollama"
        self.model.set_entries(entries + [_ollama_entry(m) for m in ollama.values()], mtimes, ollama)
        n, k = len(entries), len(ollama)
        text = ("No models yet: add a folder or a .gguf file, or drop one here." if n + k == 0 else
                f"{n} model{'s' if n != 1 else ''}" + (f" and {k} from Ollama" if k else "")
                + ". Drop .gguf files anywhere to add them.")
        if store is not None and store.problems:
            text += " Ollama: " + "; ".join(store.problems)
        self.hint.setText(text)
        self._pending_select = None
        row = self.model.row_of(keep) if keep else -1
        if row < 0 and n + k and keep is None:
            row = 0
        if row >= 0:
            self.view.setCurrentIndex(self.model.index(row, 0))
        self.listed.emit()
        self._prefetch_next()

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        path = self.model.path_at(current.row())
        if path == self._selected and self.model.data(current, Role.READING):
            return  # already being read; _on_read announces it
        self._selected = path
        info = self.model.info_of(path)
        err = self.model.error_of(path)
        if info is not None:
            self.ollama_chosen.emit(self.model.ollama_of(path))
            self.model_chosen.emit(info)
        elif err is not None:
            self.ollama_chosen.emit(self.model.ollama_of(path))
            self.model_failed.emit(path, err)
        else:
            self._read(path)

    def _read(self, path: str, prefetch: bool = False) -> None:
        if self.model.data(self.model.index(self.model.row_of(path), 0), Role.READING):
            return
        self.model.set_reading(path, True)
        if prefetch:
            self._prefetching = True
        target, om = self.model.file_of(path), self.model.ollama_of(path)
        run_task(lambda: _read_stamped(target, om), on_result=lambda r: self._on_read(path, r, prefetch))

    def _on_read(self, path: str, result: _ReadResult, prefetch: bool) -> None:
        stamp, info, error = result
        if info is not None:
            self.model.set_info(path, info, stamp)
        else:
            self.model.set_error(path, error or "unreadable", stamp)
        if path == self._selected:
            self.ollama_chosen.emit(self.model.ollama_of(path))
            if info is not None:
                self.model_chosen.emit(info)
            else:
                self.model_failed.emit(path, error or "unreadable")
        if prefetch:
            self._prefetching = False
        self._prefetch_next()

    def _prefetch_next(self) -> None:
        if not self.prefetch or self._prefetching:
            return
        nxt = self.model.next_unread()
        if nxt is not None:
            self._read(nxt, prefetch=True)

    def _ask_file(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add GGUF models", dialog_dirs.last_dir(), "GGUF models (*.gguf)")
        if paths:
            dialog_dirs.remember(paths[0])
        self.add_files(paths)

    def _ask_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of GGUF models", dialog_dirs.last_dir())
        if folder:
            dialog_dirs.remember(folder)
        if folder:
            self.add_folder(folder)

    def _rebuild_folders_menu(self) -> None:
        self.folders_menu.clear()
        if not self.folders:
            a = self.folders_menu.addAction("No folders yet")
            a.setEnabled(False)
        for f in self.folders:
            a = self.folders_menu.addAction(f"Stop scanning {f}")
            a.triggered.connect(lambda _c=False, f=f: self.remove_folder(f))
        self.folders_btn.setText("Folders")  # the menu arrow is drawn by the style; the count is in the tip
        self.folders_btn.setToolTip(f"The {len(self.folders)} folder(s) LayerFit scans; pick one to stop scanning it")

    def _context_menu(self, pos: Any) -> None:
        idx = self.view.indexAt(pos)
        if not idx.isValid():
            return
        path = self.model.path_at(idx.row())
        menu = QMenu(self)
        if path in self.files:
            menu.addAction("Remove from list", lambda: self.remove_file(path))
        menu.addAction("Re-read header", lambda: self._reread(path))
        menu.popup(self.view.viewport().mapToGlobal(pos))

    def _reread(self, path: str) -> None:
        self.model.forget(path)
        self._read(path)


def _list_with_mtimes(folders: list[str], files: list[str]) -> tuple[list[LibraryEntry], dict[str, int]]:
    """``list_models`` plus each file's modification time (worker thread: a stat per file)."""
    entries = list_models(folders, files)
    mtimes: dict[str, int] = {}
    for e in entries:
        with contextlib.suppress(OSError):  # the entry already carries its problem ("file not found")
            mtimes[e.path] = os.stat(e.path).st_mtime_ns
    return entries, mtimes


def _read_stamped(path: str, ollama: OllamaModel | None = None) -> _ReadResult:
    """Read ``path``'s header (worker thread): (size, mtime_ns) as it was just before, info or error.
    An Ollama model's header carries its Ollama name (the blob's file name says nothing)."""
    try:
        st = os.stat(path)
        stamp: tuple[int, int] | None = (st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = None
    try:
        info = read_model_info(path)
        if ollama is not None:
            from dataclasses import replace

            info = replace(info, name=ollama.name)
        return stamp, info, None
    except Exception as exc:  # noqa: BLE001 - shown in the row, in words
        return stamp, None, describe(exc)


def _list_all(folders: list[str], files: list[str]) -> tuple[list[LibraryEntry], dict[str, int], OllamaStore]:
    """The folders' and added files' models with their mtimes, and the Ollama store (worker thread)."""
    entries, mtimes = _list_with_mtimes(folders, files)
    try:
        store = read_store()
    except Exception as exc:  # noqa: BLE001 - the Ollama section says why; the rest of the list still shows
        store = OllamaStore((), (), (describe(exc),))
    return entries, mtimes, store


def _ollama_entry(m: OllamaModel) -> LibraryEntry:
    return LibraryEntry(OLLAMA_PREFIX + m.name, m.name, m.size, "ollama", m.problem)


def _home(path: str) -> str:
    home = str(Path.home())
    return "~" + path[len(home):] if path.startswith(home + os.sep) else path


def _ollama_tooltip(m: OllamaModel, info: ModelInfo | None, error: str | None) -> str:
    lines = [f"Ollama model {m.name}", f"GGUF blob: {m.path or '?'}"]
    if m.params:
        lines.append("Parameters: " + ", ".join(f"{k} {v}" for k, v in m.params.items()))
    if m.system:
        lines.append(f"System prompt: {m.system[:200]}")
    if m.projectors:
        lines.append(f"Vision projector: {theme.gib(m.projector_size)} more, loaded with the model")
    if m.shared_with:
        lines.append(f"Same GGUF blob as {', '.join(m.shared_with)}")
    if error:
        lines.append(f"Problem: {error}")
    elif info is not None:
        lines.append(f"{info.arch}, {info.n_layer} layers, {theme.params(info.n_params)} parameters, "
                     f"{info.file_type or '?'}; trained context {info.n_ctx_train:,} tokens")
    return "\n".join(lines)
