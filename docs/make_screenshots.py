"""Regenerate the README screenshots: the demo model loaded, after one real chat exchange.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshots.py

Uses a throw-away profile, the real engine (llama.cpp on this machine) and the real demo model.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_profile = tempfile.mkdtemp(prefix="layerfit-shots-")
os.environ["LAYERFIT_CONFIG_DIR"] = str(Path(_profile) / "config")
os.environ["LAYERFIT_DATA_DIR"] = str(Path(_profile) / "data")


def main() -> int:
    from PySide6.QtCore import QTimer

    from gui.app import make_app
    from gui.mainwindow import MainWindow

    app = make_app([])
    win = MainWindow()
    win.resize(1440, 900)
    win.show()
    out = ROOT / "docs"
    state = {"sent": False}

    def when_planned() -> None:
        if win.plan is None:
            QTimer.singleShot(200, when_planned)
            return
        win.loaded.connect(lambda _r: QTimer.singleShot(300, send))
        win.load_model()

    def send() -> None:
        win.chat_panel.input.setPlainText("In one sentence, what is a GPU?")
        win.chat_panel.send()
        state["sent"] = True
        QTimer.singleShot(500, wait_reply)

    def wait_reply() -> None:
        if win.chat_panel.is_streaming:
            QTimer.singleShot(300, wait_reply)
            return
        QTimer.singleShot(400, shoot)

    def shoot() -> None:
        win.grab().save(str(out / "screenshot-main.png"))
        win.tabs.setCurrentWidget(win.tradeoff)
        QTimer.singleShot(600, lambda: (win.grab().save(str(out / "screenshot-tradeoff.png")), win.close(),
                                        app.quit()))

    QTimer.singleShot(500, when_planned)
    QTimer.singleShot(120_000, app.quit)  # never hang
    app.exec()
    print("saved" if state["sent"] else "no chat happened", file=sys.stderr)
    return 0 if state["sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
