"""The window's actions, in one place: a menu bar (File, Model, View, Help), the toolbar, shortcuts,
About, and the light/dark choice."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QActionGroup, QColor, QGuiApplication, QKeySequence, QPalette
from PySide6.QtWidgets import QApplication, QMainWindow, QMessageBox, QStyle, QToolBar

from core import __version__

SCHEMES = (("system", "Follow the system"), ("light", "Light"), ("dark", "Dark"))


@dataclass
class Actions:
    load: QAction
    unload: QAction
    export: QAction
    import_: QAction
    quit: QAction
    about: QAction
    schemes: dict[str, QAction]


def dark_palette() -> QPalette:
    """A dark palette for the Fusion style (on platforms whose theme does not switch by itself)."""
    p = QPalette()
    window, base, text = QColor(45, 45, 48), QColor(30, 30, 32), QColor(230, 230, 230)
    for role, colour in ((QPalette.ColorRole.Window, window), (QPalette.ColorRole.Base, base),
                         (QPalette.ColorRole.AlternateBase, window), (QPalette.ColorRole.Button, window),
                         (QPalette.ColorRole.WindowText, text), (QPalette.ColorRole.Text, text),
                         (QPalette.ColorRole.ButtonText, text), (QPalette.ColorRole.ToolTipBase, base),
                         (QPalette.ColorRole.ToolTipText, text), (QPalette.ColorRole.BrightText, QColor("white")),
                         (QPalette.ColorRole.Highlight, QColor(76, 139, 245)),
                         (QPalette.ColorRole.HighlightedText, QColor("white")),
                         (QPalette.ColorRole.Link, QColor(120, 170, 255)),
                         (QPalette.ColorRole.PlaceholderText, QColor(150, 150, 150)),
                         (QPalette.ColorRole.Mid, QColor(90, 90, 95))):
        p.setColor(role, colour)
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(130, 130, 130))
    return p


def apply_color_scheme(scheme: str) -> None:
    """Light, dark or the system's colours: Qt's colour-scheme hint, and a matching palette where the
    platform does not follow the hint."""
    value = {"light": Qt.ColorScheme.Light, "dark": Qt.ColorScheme.Dark}.get(scheme, Qt.ColorScheme.Unknown)
    QGuiApplication.styleHints().setColorScheme(value)
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return
    if scheme == "dark":
        app.setPalette(dark_palette())
    elif scheme == "light":
        app.setPalette(app.style().standardPalette())
    else:
        app.setPalette(QPalette())  # the platform's own
    for w in app.allWidgets():  # a widget with its own style sheet keeps its old palette until re-polished
        if w.styleSheet():
            w.setStyleSheet(w.styleSheet())


def build_actions(win: QMainWindow) -> Actions:
    st = win.style()

    def act(icon: QStyle.StandardPixmap | None, text: str, shortcut: str | None, tip: str) -> QAction:
        a = QAction(st.standardIcon(icon), text, win) if icon is not None else QAction(text, win)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        a.setToolTip(tip)
        a.setStatusTip(tip)
        win.addAction(a)  # shortcuts work wherever the focus is
        return a

    sp = QStyle.StandardPixmap
    a = Actions(
        load=act(sp.SP_MediaPlay, "Load", "Ctrl+L", "Load the model with these settings (Ctrl+L)"),
        unload=act(sp.SP_MediaStop, "Unload", None, "Unload the model and free its memory"),
        export=act(sp.SP_DialogSaveButton, "Export Modelfile…", "Ctrl+E",
                   "Write the selected model's settings as an Ollama Modelfile (Ctrl+E)"),
        import_=act(sp.SP_DialogOpenButton, "Import Modelfile…", "Ctrl+I",
                    "Read an Ollama Modelfile: its model, context, GPU layers and sampling (Ctrl+I)"),
        quit=act(None, "Quit", "Ctrl+Q", "Close LayerFit (Ctrl+Q)"),
        about=act(None, "About LayerFit", None, "Version and what LayerFit is"),
        schemes={},
    )
    a.quit.setMenuRole(QAction.MenuRole.QuitRole)
    a.about.setMenuRole(QAction.MenuRole.AboutRole)

    tb = QToolBar("Main")
    tb.setObjectName("mainToolbar")
    tb.setMovable(False)
    tb.setIconSize(QSize(18, 18))
    tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    for x in (a.load, a.unload, None, a.export, a.import_):
        tb.addSeparator() if x is None else tb.addAction(x)
    win.addToolBar(tb)

    mb = win.menuBar()
    file_menu = mb.addMenu("&File")
    file_menu.addActions([a.import_, a.export])
    file_menu.addSeparator()
    file_menu.addAction(a.quit)
    model_menu = mb.addMenu("&Model")
    model_menu.addActions([a.load, a.unload])
    view_menu = mb.addMenu("&View").addMenu("Colours")
    group = QActionGroup(win)
    for key, label in SCHEMES:
        sa = QAction(label, win, checkable=True)
        sa.setData(key)
        group.addAction(sa)
        view_menu.addAction(sa)
        a.schemes[key] = sa
    mb.addMenu("&Help").addAction(a.about)
    a.quit.triggered.connect(win.close)
    a.about.triggered.connect(lambda: about(win))
    return a


def about(win: QMainWindow) -> QMessageBox:
    box = QMessageBox(QMessageBox.Icon.Information, "About LayerFit",
                      f"LayerFit {__version__}\n\nSee where every byte of a local LLM will live (GPU or RAM) "
                      "before you load it; load it through llama.cpp, chat, and export the settings as an "
                      "Ollama Modelfile.", QMessageBox.StandardButton.Ok, win)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box
