"""Small pieces of the chat's text handling: Enter sends (Shift+Enter makes a new line), and the code
blocks of a Markdown reply (for "Copy code")."""

from __future__ import annotations

import re
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QPlainTextEdit

_FENCE = re.compile(r"^[ ]{0,3}(```+|~~~+)[^\n]*\n(.*?)(?:^[ ]{0,3}\1[ \t]*$|\Z)", re.M | re.S)


def code_blocks(markdown: str) -> list[str]:
    """The fenced code blocks of ``markdown``, without their fences (an unclosed one runs to the end,
    as CommonMark reads it)."""
    return [m.group(2).rstrip("\n") for m in _FENCE.finditer(markdown)]


class EnterSends(QObject):
    """Installed on a text box: Enter (or Return) calls ``send``; Shift+Enter inserts a new line. An
    input method composing text keeps its Enter."""

    def __init__(self, box: QPlainTextEdit, send: Callable[[], object]) -> None:
        super().__init__(box)
        self._send = send
        box.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent) \
                and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
            if mods == Qt.KeyboardModifier.NoModifier:
                self._send()
                return True
            if mods == Qt.KeyboardModifier.ShiftModifier and isinstance(watched, QPlainTextEdit):
                watched.insertPlainText("\n")
                return True
        return super().eventFilter(watched, event)
