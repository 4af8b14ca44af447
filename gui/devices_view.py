"""One memory bar per device (GPU 0, GPU 1, each RPC worker), for plans over several devices; RAM keeps
the meter's own bar (against the machine's RAM) and gets a line with what it holds.

Each row: the device's name and its layer range, a bar segmented like the meter's (weights, KV cache,
compute, overhead) against the device's free memory, and the numbers. The rows come from
``core.devices`` as plain dicts (``DevicePlan.to_json()`` before a load, ``LoadResult.devices`` after
one), so the estimate and the measurement draw the same way. Tests read ``rows``.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from gui import theme
from gui.meter import BarWidget


class DeviceBars(QWidget):
    """The per-device bars. ``set_rows(None)`` hides the whole block (one device: the meter's own bars)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[dict[str, Any]] = []
        self.bars: list[BarWidget] = []
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 4, 0, 0)
        self._grid.setHorizontalSpacing(10)
        self._grid.setVerticalSpacing(2)
        self._grid.setColumnStretch(1, 1)
        self._widgets: list[QWidget] = []
        self.setVisible(False)

    def set_rows(self, rows: list[dict[str, Any]] | None, measured: bool = False) -> None:
        for w in self._widgets:
            self._grid.removeWidget(w)
            w.deleteLater()
        self._widgets = []
        self.bars = []
        self.rows = list(rows or [])
        if not self.rows:
            self.setVisible(False)
            return
        r = 0
        for row in self.rows:
            if row.get("kind") == "host":  # the meter's RAM bar (against the RAM) already draws it
                note = QLabel(f"<b>RAM</b> holds {row.get('layers', '')}: <b>{theme.gib(int(row.get('total', 0)))}</b>"
                              f" {'measured' if measured else 'planned'} (the RAM bar above)")
                note.setWordWrap(True)
                self._grid.addWidget(note, r, 0, 1, 2)
                self._widgets.append(note)
                r += 1
                continue
            title = QLabel(f"<b>{_short(row)}</b>")
            title.setToolTip(str(row.get("name", "")))
            bar = BarWidget()
            segs = [(int(row.get("weights", 0)), theme.WEIGHTS), (int(row.get("kv", 0)), theme.KV),
                    (int(row.get("compute", 0)), theme.COMPUTE), (int(row.get("overhead", 0)), theme.OVERHEAD)]
            free = int(row.get("free", 0))
            is_host = row.get("kind") == "host"
            total = int(row.get("total", sum(b for b, _ in segs)))
            over = (not is_host) and free > 0 and total > free
            bar.set_data(segs, 0 if is_host else free, over=over)
            where = "measured" if measured else "planned"
            text = QLabel(f"{row.get('layers', '')} · <b>{theme.gib(total)}</b> {where}"
                          + (f" of {theme.gib(free)} free" if free and not is_host else "")
                          + (" — <b>does not fit</b>" if over else ""))
            text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            text.setWordWrap(True)
            self._grid.addWidget(title, r, 0)
            self._grid.addWidget(bar, r, 1)
            self._grid.addWidget(text, r + 1, 1)
            self._widgets += [title, bar, text]
            self.bars.append(bar)
            r += 2
        self.setVisible(True)


def _short(row: dict[str, Any]) -> str:
    """"GPU 0", "worker 10.0.0.5:50052", "RAM": the name without the card's long model name."""
    name = str(row.get("name", "?"))
    if row.get("kind") == "cuda" and " (" in name:
        return name.split(" (", 1)[0]
    return name
