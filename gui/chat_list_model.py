"""Saved chats as a Qt list model, newest first. The rows are summaries; ``core.chats`` holds the truth."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from PySide6.QtCore import QAbstractListModel, QByteArray, QModelIndex, QObject, QPersistentModelIndex, Qt

from core.chats import Chat, ChatFileError, ChatStore
from gui.plain import tip

_Index = QModelIndex | QPersistentModelIndex


SEARCH_CHARS = 20000  # how much of a chat the search box looks through


class ChatListRole(IntEnum):
    """Custom data roles of ``ChatListModel``."""

    ID = Qt.ItemDataRole.UserRole + 1
    UPDATED = Qt.ItemDataRole.UserRole + 2  # Unix seconds
    MODEL_PATH = Qt.ItemDataRole.UserRole + 3
    MESSAGE_COUNT = Qt.ItemDataRole.UserRole + 4
    TITLE = Qt.ItemDataRole.UserRole + 5  # the title alone (the display adds the date)
    SEARCH = Qt.ItemDataRole.UserRole + 6  # lower-case title and message text, for the search box


@dataclass(frozen=True)
class ChatSummary:
    """What the list shows of a chat, without holding its messages."""

    id: str
    title: str
    updated: float
    updated_text: str
    model_path: str | None
    message_count: int
    search: str = ""

    @classmethod
    def of(cls, chat: Chat) -> ChatSummary:
        text = " ".join([chat.display_title, *(m.content for m in chat.messages)]).lower()
        return cls(chat.id, chat.display_title, chat.updated, chat.updated_text(), chat.model_path,
                   len(chat.messages), text[:SEARCH_CHARS])


class ChatListModel(QAbstractListModel):
    """One row per saved chat, most recently updated first."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[ChatSummary] = []

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's default argument
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.parent().isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{row.title}\n{row.updated_text}"  # two chats that start alike still differ by date
        if role == ChatListRole.TITLE:
            return row.title
        if role == ChatListRole.SEARCH:
            return row.search
        if role == Qt.ItemDataRole.ToolTipRole:
            model = row.model_path.replace("\\", "/").rsplit("/", 1)[-1] if row.model_path else "no model"
            return tip(f"{row.title}\n{row.updated_text} · {row.message_count} messages · {model}")
        if role == ChatListRole.ID:
            return row.id
        if role == ChatListRole.UPDATED:
            return row.updated
        if role == ChatListRole.MODEL_PATH:
            return row.model_path
        if role == ChatListRole.MESSAGE_COUNT:
            return row.message_count
        return None

    def roleNames(self) -> dict[int, QByteArray]:
        names = dict(super().roleNames())
        names.update({
            int(ChatListRole.ID): QByteArray(b"chatId"),
            int(ChatListRole.UPDATED): QByteArray(b"updated"),
            int(ChatListRole.MODEL_PATH): QByteArray(b"modelPath"),
            int(ChatListRole.MESSAGE_COUNT): QByteArray(b"messageCount"),
            int(ChatListRole.TITLE): QByteArray(b"title"),
            int(ChatListRole.SEARCH): QByteArray(b"searchText"),
        })
        return names

    def flags(self, index: _Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    # --- content -------------------------------------------------------------------------------------

    def reload(self, store: ChatStore) -> tuple[ChatFileError, ...]:
        """Read the store again; returns the files that could not be read (the caller reports them)."""
        listing = store.list()
        self.set_chats(listing.chats)
        return listing.problems

    def set_chats(self, chats: tuple[Chat, ...] | list[Chat]) -> None:
        self.beginResetModel()
        self._rows = sorted((ChatSummary.of(c) for c in chats), key=lambda r: (r.updated, r.id), reverse=True)
        self.endResetModel()

    def row_of(self, chat_id: str) -> int:
        """The row of ``chat_id``, or -1."""
        return next((i for i, r in enumerate(self._rows) if r.id == chat_id), -1)

    def chat_id(self, row: int) -> str | None:
        return self._rows[row].id if 0 <= row < len(self._rows) else None

    def upsert(self, chat: Chat) -> int:
        """Insert or update ``chat`` and keep newest-first order; returns its row."""
        summary = ChatSummary.of(chat)
        old = self.row_of(chat.id)
        rest = [r for r in self._rows if r.id != chat.id]
        key = (summary.updated, summary.id)
        new = next((i for i, r in enumerate(rest) if (r.updated, r.id) < key), len(rest))
        if old < 0:
            self.beginInsertRows(QModelIndex(), new, new)
            self._rows = rest[:new] + [summary] + rest[new:]
            self.endInsertRows()
            return new
        if new != old:
            # A move, not remove + insert, so that a view keeps its selection on the chat.
            self.beginMoveRows(QModelIndex(), old, old, QModelIndex(), new if new < old else new + 1)
            self._rows = rest[:new] + [summary] + rest[new:]
            self.endMoveRows()
        else:
            self._rows[old] = summary
        idx = self.index(new, 0)
        self.dataChanged.emit(idx, idx)
        return new

    def remove(self, chat_id: str) -> None:
        row = self.row_of(chat_id)
        if row >= 0:
            self.beginRemoveRows(QModelIndex(), row, row)
            del self._rows[row]
            self.endRemoveRows()
