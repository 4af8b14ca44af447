"""One channel for every message to the user (after qutebrowser's message bridge).

Workers, widgets and the excepthook all call ``notifier().error(...)`` / ``info(...)``; the main window
connects ``Notifier.message`` once and decides how to show it (status bar, dialog). Tests connect a
recorder to the same signal.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from enum import StrEnum

from PySide6.QtCore import QObject, Signal

from core.errors import describe

log = logging.getLogger("layerfit")


class Level(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class Notifier(QObject):
    """Emits ``message(level, text)`` on the thread that owns it (the GUI thread); safe to call from any thread."""

    message = Signal(str, str)

    def __init__(self) -> None:
        super().__init__()
        self._held: list[tuple[str, str]] | None = None

    def hold(self) -> None:
        """Keep a copy of every message from now on, until ``release``: a window that is still being
        built (its chat panel may warn about a damaged chat) has no status bar to show them in yet."""
        if self._held is None:
            self._held = []

    def release(self) -> list[tuple[str, str]]:
        """Stop holding; the (level, text) messages sent since ``hold``, for the window to show now."""
        held, self._held = self._held or [], None
        return held

    def _send(self, level: Level, text: str) -> None:
        if self._held is not None:
            self._held.append((level.value, text))
        self.message.emit(level.value, text)

    def info(self, text: str) -> None:
        self._send(Level.INFO, text)

    def warning(self, text: str) -> None:
        self._send(Level.WARNING, text)

    def error(self, what: BaseException | str, context: str | None = None) -> None:
        """Report an error in words. ``context`` says what was being done ("Loading model")."""
        text = what if isinstance(what, str) else describe(what)
        if isinstance(what, BaseException):
            log.debug("error", exc_info=what)
        self._send(Level.ERROR, f"{context}: {text}" if context else text)


_notifier: Notifier | None = None


def notifier() -> Notifier:
    """The app's single Notifier (created on first use, on the GUI thread)."""
    global _notifier
    if _notifier is None:
        _notifier = Notifier()
    return _notifier


def install_excepthooks() -> None:
    """Route uncaught exceptions (main thread and Python threads) to the notifier instead of crashing."""

    def hook(exc_type, exc, tb):  # type: ignore[no-untyped-def]
        traceback.print_exception(exc_type, exc, tb, file=sys.stderr)
        notifier().error(exc, "Unexpected error")

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            hook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = hook
    threading.excepthook = thread_hook
