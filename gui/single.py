"""One LayerFit window per data folder (see core.instance): the lock, the "already open" message, and a
local socket through which a second start asks the open window to come forward.

Two windows would overwrite each other's chats and settings without a word (every save rewrites a whole
file: the last writer wins), so a second start takes no data at all: it says another LayerFit is open and
offers to bring that window to the front.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket
from PySide6.QtWidgets import QMessageBox, QWidget

from core.instance import InstanceLock
from gui.plain import plain_box

RAISE = b"raise\n"


def server_name(folder: Path) -> str:
    """A socket name per data folder (and per user: the folder is in the user's profile)."""
    digest = hashlib.sha1(str(folder.resolve()).encode("utf-8", "replace")).hexdigest()[:16]
    return f"layerfit-{digest}"


class InstanceServer(QObject):
    """Listens for a second start; emits ``raise_requested`` when one asks this window to come forward."""

    raise_requested = Signal()

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        QLocalServer.removeServer(name)  # a socket file left by a crashed window (we hold the lock now)
        self.server = QLocalServer(self)
        self.server.newConnection.connect(self._on_connection)
        self.listening = self.server.listen(name)

    def _on_connection(self) -> None:
        while self.server.hasPendingConnections():
            sock = self.server.nextPendingConnection()
            sock.readyRead.connect(lambda s=sock: self._on_ready(s))
            sock.disconnected.connect(sock.deleteLater)

    def _on_ready(self, sock: QLocalSocket) -> None:
        if bytes(sock.readAll().data()).startswith(RAISE.strip()):
            self.raise_requested.emit()
        sock.disconnectFromServer()


def ask_to_raise(name: str, timeout_ms: int = 2000) -> bool:
    """Ask the window that owns ``name`` to come forward. True when the request was delivered."""
    sock = QLocalSocket()
    sock.connectToServer(name)
    if not sock.waitForConnected(timeout_ms):
        return False
    sock.write(RAISE)
    ok = sock.waitForBytesWritten(timeout_ms)
    sock.disconnectFromServer()
    return bool(ok)


def bring_forward(window: QWidget) -> None:
    window.showNormal()
    window.raise_()
    window.activateWindow()


def already_open_box(lock: InstanceLock, parent: QWidget | None = None) -> QMessageBox:
    """The message a second start shows. Its "Bring it forward" button has the AcceptRole."""
    pid = lock.holder_pid()
    who = f" (process {pid})" if pid else ""
    box = plain_box(QMessageBox(QMessageBox.Icon.Information, "LayerFit is already open",
                                f"Another LayerFit window is already open{who}. Two windows would overwrite "
                                "each other's chats and settings, so this one does not open.", parent=parent))
    box.addButton("Bring it forward", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Close)
    return box


def _ask(box: QMessageBox) -> bool:
    """Show the box (before any window exists, so a modal exec is fine); True for "Bring it forward"."""
    box.exec()
    clicked = box.clickedButton()
    return clicked is not None and box.buttonRole(clicked) == QMessageBox.ButtonRole.AcceptRole


def refuse_second_window(lock: InstanceLock, name: str, choose: Callable[[QMessageBox], bool] = _ask) -> int:
    """A second start: say another LayerFit is open, bring it forward if asked. Returns the exit code."""
    box = already_open_box(lock)
    if choose(box):
        ask_to_raise(name)
    return 0
