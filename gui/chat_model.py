"""The chat transcript as a Qt list model (one row per message).

Tokens can arrive far faster than a screen refreshes, and every ``dataChanged`` makes the view re-lay-out
a bubble. So streamed tokens are *coalesced*: ``push_token`` only appends to a buffer, and a single-shot
``QTimer`` flushes the buffer into the last row every ``FLUSH_MS`` with one ``dataChanged`` (after
qutebrowser's ``misc/throttle.py``). ``end_stream`` flushes at once, so no text waits on the timer.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QByteArray,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)

from core.chats import Message
from core.reply_stats import ReplyStats
from gui.plain import tip

FLUSH_MS = 60

_Index = QModelIndex | QPersistentModelIndex


class TranscriptRole(IntEnum):
    """Custom data roles of ``TranscriptModel``."""

    ROLE = Qt.ItemDataRole.UserRole + 1  # "user" | "assistant" | "system"
    CONTENT = Qt.ItemDataRole.UserRole + 2  # the message text
    STATS = Qt.ItemDataRole.UserRole + 3  # dict: tokens, tokens_per_second, time_to_first_token, …
    STREAMING = Qt.ItemDataRole.UserRole + 4  # bool: this reply is still arriving


class TranscriptModel(QAbstractListModel):
    """Messages of one chat; the last assistant message can be streaming.

    Signals:
        flushed: buffered tokens were written into the streaming row (once per coalesced update).
    """

    flushed = Signal()

    def __init__(self, parent: QObject | None = None, flush_ms: int = FLUSH_MS) -> None:
        super().__init__(parent)
        self._messages: list[Message] = []
        self._buffer: list[str] = []
        self._streaming_row: int | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(flush_ms)
        self._timer.timeout.connect(self.flush)

    # --- Qt model API -------------------------------------------------------------------------------

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's default argument
        return 0 if parent.isValid() else len(self._messages)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.parent().isValid() or not 0 <= index.row() < len(self._messages):
            return None
        msg = self._messages[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, TranscriptRole.CONTENT):
            return msg.content
        if role == TranscriptRole.ROLE:
            return msg.role
        if role == TranscriptRole.STATS:
            return dict(msg.stats)
        if role == TranscriptRole.STREAMING:
            return index.row() == self._streaming_row
        if role == Qt.ItemDataRole.ToolTipRole:
            return tip(stats_text(msg.stats)) or None
        return None

    def roleNames(self) -> dict[int, QByteArray]:
        names = dict(super().roleNames())
        names.update({
            int(TranscriptRole.ROLE): QByteArray(b"role"),
            int(TranscriptRole.CONTENT): QByteArray(b"content"),
            int(TranscriptRole.STATS): QByteArray(b"stats"),
            int(TranscriptRole.STREAMING): QByteArray(b"streaming"),
        })
        return names

    def flags(self, index: _Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    # --- content -------------------------------------------------------------------------------------

    def messages(self) -> list[Message]:
        """A copy of the messages, with any buffered tokens included."""
        self.flush()
        return [Message(m.role, m.content, dict(m.stats)) for m in self._messages]

    def set_messages(self, messages: list[Message]) -> None:
        """Replace everything (opening another chat). Ends any stream without keeping its buffer."""
        self._timer.stop()
        self._buffer.clear()
        self.beginResetModel()
        self._messages = [Message(m.role, m.content, dict(m.stats)) for m in messages]
        self._streaming_row = None
        self.endResetModel()

    def append_message(self, role: str, content: str, stats: dict[str, Any] | None = None) -> int:
        """Add a message at the end; returns its row."""
        self.flush()
        row = len(self._messages)
        self.beginInsertRows(QModelIndex(), row, row)
        self._messages.append(Message(role, content, dict(stats or {})))
        self.endInsertRows()
        return row

    def remove_last(self) -> None:
        """Drop the last message (an empty reply after an error)."""
        if not self._messages:
            return
        self._timer.stop()
        self._buffer.clear()
        row = len(self._messages) - 1
        self.beginRemoveRows(QModelIndex(), row, row)
        self._messages.pop()
        if self._streaming_row == row:
            self._streaming_row = None
        self.endRemoveRows()

    # --- streaming -----------------------------------------------------------------------------------

    @property
    def is_streaming(self) -> bool:
        return self._streaming_row is not None

    def begin_stream(self) -> int:
        """Add an empty assistant message that ``push_token`` will fill; returns its row."""
        row = self.append_message("assistant", "")
        self._streaming_row = row
        self._emit_changed(row, [TranscriptRole.STREAMING])
        return row

    def push_token(self, text: str) -> None:
        """Buffer a piece of the streaming reply; it shows at the next flush (within ``FLUSH_MS``)."""
        if self._streaming_row is None or not text:
            return
        self._buffer.append(text)
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        """Write buffered tokens into the streaming row with one ``dataChanged``."""
        self._timer.stop()
        if not self._buffer or self._streaming_row is None:
            self._buffer.clear()
            return
        row = self._streaming_row
        self._messages[row].content += "".join(self._buffer)
        self._buffer.clear()
        self._emit_changed(row, [Qt.ItemDataRole.DisplayRole, TranscriptRole.CONTENT])
        self.flushed.emit()

    def end_stream(self, stats: dict[str, Any] | None = None) -> Message | None:
        """Flush, attach ``stats`` to the reply and mark it finished; returns the finished message."""
        if self._streaming_row is None:
            return None
        self.flush()
        row = self._streaming_row
        self._streaming_row = None
        msg = self._messages[row]
        if stats:
            msg.stats.update(stats)
        self._emit_changed(row, [TranscriptRole.STATS, TranscriptRole.STREAMING, Qt.ItemDataRole.ToolTipRole])
        return Message(msg.role, msg.content, dict(msg.stats))

    def streaming_text(self) -> str:
        """The streaming reply so far, including what is still buffered."""
        if self._streaming_row is None:
            return ""
        return self._messages[self._streaming_row].content + "".join(self._buffer)

    def _emit_changed(self, row: int, roles: list[int]) -> None:
        idx = self.index(row, 0)
        self.dataChanged.emit(idx, idx, [int(r) for r in roles])


def stats_text(stats: dict[str, Any] | ReplyStats) -> str:
    """One line for a reply's numbers (core.reply_stats)."""
    return ReplyStats.from_dict(stats).text()
