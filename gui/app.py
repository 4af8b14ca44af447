"""Start the GUI: ``main(argv) -> exit code``.

Qt 6's Fusion style follows the system's light or dark scheme by itself (Qt ≥ 6.5 reads the platform's
colour scheme), so LayerFit sets no palette of its own; its meaningful colours (theme.py) read on both.
Set ``LAYERFIT_SCREENSHOT=/path/shot.png`` to save a picture of the window shortly after it shows
(for docs).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

import resources
from core import __version__
from core.settings import APP
from gui.notify import install_excepthooks

SCREENSHOT_DELAY_MS = 1500


def app_icon() -> QIcon:
    """The app icon: the SVG when Qt can render it, the PNG otherwise."""
    here = Path(next(iter(resources.__path__)))  # works for a regular, namespace or frozen package
    icon = QIcon()
    for name in ("layerfit.svg", "layerfit.png"):
        p = here / name
        if p.is_file():
            icon.addFile(str(p))
    return icon


def make_app(argv: Sequence[str] = ()) -> QApplication:
    """The QApplication (created once), with names, style and icon set."""
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication([sys.argv[0] if sys.argv else "layerfit", *argv])
    app.setOrganizationName(APP)
    app.setApplicationName(APP)
    app.setApplicationDisplayName(APP)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("layerfit")
    app.setStyle("Fusion")
    app.setWindowIcon(app_icon())
    return app


def clean_interrupted_saves() -> int:
    """Remove temp files that saves interrupted by a crash or a kill left in LayerFit's folders."""
    from core.atomic import clean_stale_temps
    from core.chats import chats_dir
    from core.settings import config_dir, data_dir

    # Only the window (holding the lock) writes chats and settings: any temp file there is stale. The data
    # folder's calibration store is also written by `layerfit run`, so only old temp files go there.
    # (On Windows the config and data folders can be the same folder.)
    shared = config_dir().resolve() == data_dir().resolve()
    return (clean_stale_temps(chats_dir(), min_age_s=0)
            + clean_stale_temps(config_dir(), min_age_s=600 if shared else 0)
            + (0 if shared else clean_stale_temps(data_dir())))


def main(argv: Sequence[str] | None = None) -> int:
    """Open the main window and run until it closes. Returns the process exit code.

    A second start while a window is open takes no data: it says so and can bring the open window forward.
    """
    app = make_app(list(argv or []))
    install_excepthooks()
    from core.instance import InstanceLock
    from gui import single

    lock = InstanceLock()
    name = single.server_name(lock.folder)
    if not lock.acquire():
        return single.refuse_second_window(lock, name)
    clean_interrupted_saves()  # with the lock held, no other LayerFit is in the middle of a save here
    from gui.mainwindow import MainWindow  # after the QApplication exists

    win = MainWindow()
    server = single.InstanceServer(name, win)
    server.raise_requested.connect(lambda: single.bring_forward(win))
    win.show()
    shot = os.environ.get("LAYERFIT_SCREENSHOT")
    if shot:
        # Docs and launcher checks: save a picture of the window; LAYERFIT_EXIT_AFTER_SCREENSHOT=1 then quits.
        def grab() -> None:
            win.grab().save(shot)
            if os.environ.get("LAYERFIT_EXIT_AFTER_SCREENSHOT"):
                win.close()
                app.quit()

        QTimer.singleShot(SCREENSHOT_DELAY_MS, grab)
    try:
        return int(app.exec())
    finally:
        lock.release()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
