"""Chat persistence: one JSON file per chat under ``data_dir()/"chats"``. No Qt.

Why one file per chat: a save rewrites only the chat that changed, a corrupt file costs one chat and
never the list, and a person can copy or delete a conversation with a file manager. Every write goes
through ``core.atomic.write_json_atomic`` (temp file, fsync, ``os.replace``), so a crash or a full disk
leaves the previous version of the file intact and raises ``SaveError`` with plain words.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from core.atomic import SaveError, write_json_atomic
from core.safeload import StoredFileError, finite_number, read_json, set_aside
from core.settings import data_dir

FORMAT_VERSION = 1
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_ROLES = ("system", "user", "assistant")
TITLE_LENGTH = 48
#: A chat file larger than this is damage, not a conversation (a 1 MB message is still fine).
MAX_CHAT_BYTES = 64 * 2**20
#: Times outside [1970, 9999] are damage: ``datetime`` can't even show them.
MAX_TIME = 253402300799.0

__all__ = [
    "Chat", "ChatFileError", "ChatListing", "ChatStore", "Message", "SaveError", "chats_dir", "new_chat_id",
    "title_from",
]


class NewerFormat(ValueError):
    """A chat file written by a newer LayerFit: not damaged, so it is reported and left where it is."""


class ChatFileError(Exception):
    """A chat file that could not be read. The message names the file and the problem in plain words."""

    def __init__(self, path: str | Path, problem: str, *, damaged: bool = False) -> None:
        self.path = str(path)
        self.problem = problem
        self.damaged = damaged  # the content is broken (worth setting aside), not just unreadable now
        super().__init__(f"chat file {Path(path).name}: {problem}")


def chats_dir() -> Path:
    """Where chats live (follows ``LAYERFIT_DATA_DIR``, so tests never touch a real profile)."""
    return data_dir() / "chats"


def new_chat_id() -> str:
    """A file-name-safe id that sorts by creation time and can't collide: ``20250101-120000-1a2b3c4d``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:8]


def title_from(text: str) -> str:
    """A one-line title from the first user message: whitespace collapsed, cut at a word near 48 chars."""
    one_line = " ".join(text.split())
    if len(one_line) <= TITLE_LENGTH:
        return one_line
    cut = one_line[:TITLE_LENGTH].rsplit(" ", 1)[0] or one_line[:TITLE_LENGTH]
    return cut + "…"


@dataclass
class Message:
    """One turn. ``stats`` holds what the engine reported for an assistant reply (tokens,
    tokens_per_second, time_to_first_token, finish_reason, model); empty for user turns."""

    role: str
    content: str
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.stats:
            d["stats"] = dict(self.stats)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Message:
        if not isinstance(d, dict):
            raise ValueError("a message is not an object")
        role, content = d.get("role"), d.get("content")
        if role not in _ROLES:
            raise ValueError(f"unknown message role {role!r}")
        if not isinstance(content, str):
            raise ValueError("a message has no text")
        stats = d.get("stats") or {}
        if not isinstance(stats, dict):
            raise ValueError("message stats are not an object")
        return cls(role, content, dict(stats))


@dataclass
class Chat:
    """A conversation and what it was made with. Times are Unix seconds.

    ``draft`` is text typed into the input box but not sent yet: it is saved with the chat so that
    closing the app never loses it.
    """

    id: str = field(default_factory=new_chat_id)
    title: str = ""
    created: float = field(default_factory=time.time)
    updated: float = 0.0
    model_path: str | None = None
    system: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    draft: str = ""

    def __post_init__(self) -> None:
        if not self.updated:
            self.updated = self.created

    @property
    def display_title(self) -> str:
        """The title, or one made from the first user message, or "New chat"."""
        if self.title:
            return self.title
        first = next((m.content for m in self.messages if m.role == "user" and m.content.strip()), "")
        return title_from(first) if first else "New chat"

    def add(self, role: str, content: str, stats: dict[str, Any] | None = None) -> Message:
        """Append a message and bump ``updated``."""
        if role not in _ROLES:
            raise ValueError(f"unknown message role {role!r}")
        msg = Message(role, content, dict(stats or {}))
        self.messages.append(msg)
        self.touch()
        return msg

    def touch(self) -> None:
        self.updated = max(time.time(), self.updated)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "id": self.id,
            "title": self.title,
            "created": self.created,
            "updated": self.updated,
            "model_path": self.model_path,
            "system": self.system,
            "sampling": dict(self.sampling),
            "messages": [m.to_dict() for m in self.messages],
            "draft": self.draft,
        }

    @classmethod
    def from_dict(cls, d: Any, fallback_time: float | None = None) -> Chat:
        """Build a Chat from its JSON object; ``ValueError`` says what is wrong with it.

        A date that is not a real time (``NaN``, ``1e300``, negative, not a number) is replaced by
        ``fallback_time`` (the file's modification time when read from disk) instead of failing the chat.
        """
        if not isinstance(d, dict):
            raise ValueError("the file does not hold a chat object")
        version = d.get("version", FORMAT_VERSION)
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise NewerFormat(f"it was written by a newer LayerFit (format {version}); it is left as it is")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError(f"its format version {version!r} is not a number")
        cid = d.get("id")
        if not isinstance(cid, str) or not _ID_RE.match(cid):
            raise ValueError("it has no valid chat id")
        messages = d.get("messages", [])
        if not isinstance(messages, list):
            raise ValueError("its messages are not a list")
        sampling = d.get("sampling") or {}
        if not isinstance(sampling, dict):
            raise ValueError("its sampling settings are not an object")
        model_path = d.get("model_path")
        fallback = finite_number(fallback_time, 0.0, MAX_TIME)
        if fallback is None:
            fallback = time.time()
        created = finite_number(d.get("created"), 0.0, MAX_TIME)
        if created is None:
            created = fallback
        updated = finite_number(d.get("updated"), 0.0, MAX_TIME) or created
        return cls(
            id=cid,
            title=str(d.get("title") or ""),
            created=created,
            updated=updated,
            model_path=str(model_path) if model_path else None,
            system=str(d.get("system") or ""),
            sampling=dict(sampling),
            messages=[Message.from_dict(m) for m in messages],
            draft=str(d.get("draft") or ""),
        )

    def updated_text(self) -> str:
        """``updated`` as local "YYYY-MM-DD HH:MM" for lists and tooltips."""
        try:
            return datetime.fromtimestamp(self.updated).strftime("%Y-%m-%d %H:%M")
        except (OverflowError, OSError, ValueError):  # a time set by hand that the platform can't show
            return "unknown date"


@dataclass(frozen=True)
class ChatListing:
    """The result of ``ChatStore.list()``: readable chats (newest first) and the files that were not."""

    chats: tuple[Chat, ...]
    problems: tuple[ChatFileError, ...] = ()


class ChatStore:
    """Reads and writes chats in one folder (``chats_dir()`` unless given)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else chats_dir()

    def path_for(self, chat_id: str) -> Path:
        """The file of ``chat_id``; refuses ids that could escape the folder."""
        if not _ID_RE.match(chat_id):
            raise ValueError(f"not a valid chat id: {chat_id!r}")
        return self.directory / f"{chat_id}.json"

    def save(self, chat: Chat) -> Path:
        """Write ``chat`` atomically. Raises ``SaveError`` (plain words); the previous file stays intact."""
        path = self.path_for(chat.id)
        write_json_atomic(path, chat.to_dict())
        return path

    def load(self, chat_id: str) -> Chat:
        """Read one chat. Raises ``ChatFileError`` when the file is missing, unreadable or corrupt."""
        return self._read(self.path_for(chat_id))

    def exists(self, chat_id: str) -> bool:
        return _ID_RE.match(chat_id) is not None and self.path_for(chat_id).is_file()

    def list(self) -> ChatListing:
        """All readable chats, most recently updated first. Corrupt files are reported, never raised."""
        chats: list[Chat] = []
        problems: list[ChatFileError] = []
        try:
            paths = sorted(self.directory.glob("*.json"))
        except OSError as exc:  # folder unreadable: no chats, one problem
            return ChatListing((), (ChatFileError(self.directory, exc.strerror or str(exc)),))
        for path in paths:
            try:
                chats.append(self._read(path))
            except ChatFileError as exc:
                if exc.damaged:  # kept aside, so the user hears about it once and the next start is clean
                    moved = set_aside(path)
                    if moved is not None:
                        exc = ChatFileError(path, f"{exc.problem}; it was kept aside as {moved.name}")
                problems.append(exc)
        chats.sort(key=lambda c: (c.updated, c.id), reverse=True)
        return ChatListing(tuple(chats), tuple(problems))

    def delete(self, chat_id: str) -> None:
        """Remove a chat's file (a missing file is fine). Raises ``SaveError`` when it can't be removed."""
        path = self.path_for(chat_id)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise SaveError(exc.errno or 0, f"could not delete {path}: {exc.strerror or exc}") from exc

    def rename(self, chat_id: str, title: str) -> Chat:
        """Give a chat a new title and save it; returns the updated chat."""
        chat = self.load(chat_id)
        chat.title = " ".join(title.split())
        chat.touch()
        self.save(chat)
        return chat

    def most_recent(self, ids_first: Iterable[str | None] = ()) -> Chat | None:
        """The first of ``ids_first`` that loads, else the most recently updated chat, else None."""
        for cid in ids_first:
            if cid and self.exists(cid):
                try:
                    return self.load(cid)
                except ChatFileError:
                    continue
        listing = self.list()
        return listing.chats[0] if listing.chats else None

    def _read(self, path: Path) -> Chat:
        """One chat through the bounded loader (regular files only, size, depth and numbers bounded)."""
        try:
            raw, _replaced = read_json(path, MAX_CHAT_BYTES)
        except StoredFileError as exc:
            problem = "the file does not exist" if exc.kind == "missing" else exc.problem
            raise ChatFileError(path, problem, damaged=exc.damaged) from None
        try:
            mtime: float | None = path.stat().st_mtime
        except (OSError, ValueError):
            mtime = None
        try:
            chat = Chat.from_dict(raw, fallback_time=mtime)
        except (ValueError, TypeError, RecursionError) as exc:  # a newer format is not damage: left alone
            raise ChatFileError(path, str(exc), damaged=not isinstance(exc, NewerFormat)) from None
        if chat.id != path.stem:
            raise ChatFileError(path, f"its id {chat.id!r} does not match the file name")
        return chat
