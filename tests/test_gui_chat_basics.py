"""Issue #13's chat and window basics, offscreen: Enter sends, Markdown and code blocks, regenerate /
edit / delete, chat titles with a date and search, the menu bar, the title, and messages sent while the
window starts."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette, QTextDocument
from PySide6.QtWidgets import QApplication
from test_gui_chat import FakeEngine, _contents, _exchange, _no_stream_outlives_its_test, _panel  # noqa: F401

from core.chats import Chat, ChatStore
from core.settings import AppSettings
from gui.chat_bubbles import CODE_BLOCK, MARKDOWN, BubbleDelegate
from gui.chat_list_model import ChatListRole
from gui.chat_text import code_blocks
from gui.mainwindow import MainWindow
from gui.notify import notifier
from gui.window_menus import about


def test_enter_sends_and_shift_enter_makes_a_new_line(qtbot: Any) -> None:
    engine = FakeEngine("ok")
    panel = _panel(qtbot, engine)
    panel.show()
    panel.input.setFocus()
    qtbot.keyClicks(panel.input, "first line")
    qtbot.keyClick(panel.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(panel.input, "second line")
    assert panel.input.toPlainText() == "first line\nsecond line"
    assert not engine.calls
    qtbot.keyClick(panel.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not panel.is_streaming and len(_contents(panel)) == 2, timeout=10_000)
    assert _contents(panel) == [("user", "first line\nsecond line"), ("assistant", "ok")]
    assert panel.input.toPlainText() == ""


def test_replies_render_markdown_and_code_blocks_can_be_copied(qtbot: Any) -> None:
    reply = "Use **this**:\n\n```python\nprint('hi')\n```\n\nand <b>not</b> raw HTML."
    assert code_blocks(reply) == ["print('hi')"]
    assert code_blocks("a\n```\nx\n```\nb\n~~~sh\ny\nz\n~~~\n") == ["x", "y\nz"]
    assert code_blocks("```\nstill streaming") == ["still streaming"]  # an open fence runs to the end
    panel = _panel(qtbot, FakeEngine(reply))
    _exchange(qtbot, panel, "How?")
    delegate = panel.transcript_view.itemDelegate()
    assert isinstance(delegate, BubbleDelegate)
    doc = delegate._doc(reply, 400, panel.font(), True)
    text = doc.toPlainText()
    assert "**" not in text and "```" not in text and "this" in text  # rendered, not raw
    assert "<b>not</b>" in text  # raw HTML stays visible text, never markup
    block = doc.findBlock(text.index("print"))
    assert block.blockFormat().property(CODE_BLOCK)  # a code block (monospace, shaded)
    assert not doc.findBlock(text.index("this")).blockFormat().property(CODE_BLOCK)
    # a visible Copy code button for the reply's code
    assert panel.copy_code_button.isVisibleTo(panel)
    panel.copy_code_button.click()
    assert QApplication.clipboard().text() == "print('hi')"
    panel.transcript_view.setCurrentIndex(panel.transcript.index(0, 0))  # the question has no code
    assert not panel.copy_code_button.isVisibleTo(panel)
    plain = QTextDocument()
    plain.setMarkdown("**x**", MARKDOWN)
    assert plain.toPlainText() == "x"


def test_regenerate_edit_and_delete(qtbot: Any) -> None:
    engine = FakeEngine("one")
    panel = _panel(qtbot, engine)
    _exchange(qtbot, panel, "Hi")
    engine.reply = "two"
    assert panel.regenerate()
    qtbot.waitUntil(lambda: not panel.is_streaming, timeout=10_000)
    assert _contents(panel) == [("user", "Hi"), ("assistant", "two")]  # replaced, not appended
    assert engine.calls[-1][0] == [{"role": "user", "content": "Hi"}]
    assert ChatStore().load(panel.current_chat.id).messages[-1].content == "two"
    # edit and resend: the message comes back to the box; it and what followed leave the chat
    assert panel.edit_message(0)
    assert panel.input.toPlainText() == "Hi" and _contents(panel) == []
    panel.input.setPlainText("Hello")
    assert panel.send()
    qtbot.waitUntil(lambda: not panel.is_streaming, timeout=10_000)
    assert _contents(panel) == [("user", "Hello"), ("assistant", "two")]
    assert not panel.edit_message(1)  # only your own messages are edited
    assert panel.delete_message(1)
    assert _contents(panel) == [("user", "Hello")]
    assert [m.content for m in ChatStore().load(panel.current_chat.id).messages] == ["Hello"]
    assert not panel.regenerate()  # the last message is not a reply


def test_chats_show_their_date_and_can_be_searched(qtbot: Any) -> None:
    store = ChatStore()
    for t, (q, a) in enumerate((("What is the capital of France?", "Paris"),
                                ("What is the capital of Peru?", "Lima"))):
        c = Chat(created=time.mktime((2026, 3, 1 + t, 10, 0, 0, 0, 0, -1)))
        c.add("user", q)
        c.add("assistant", a)
        c.updated = c.created
        store.save(c)
    panel = _panel(qtbot, None, loaded=False)
    rows = [panel.chat_list.index(r, 0).data() for r in range(panel.chat_list.rowCount())]
    assert any("2026-03-01" in r for r in rows) and any("2026-03-02" in r for r in rows)
    assert len(set(rows)) == len(rows)  # two "What is the capital of …" rows can be told apart
    panel.search.setText("lima")  # searches the messages too, in any case
    assert panel.chat_view.model().rowCount() == 1
    assert "Peru" in panel.chat_view.model().index(0, 0).data(ChatListRole.TITLE)
    panel.search.clear()
    assert panel.chat_view.model().rowCount() == 2


def test_window_menu_title_and_early_messages(qtbot: Any, monkeypatch: Any) -> None:  # type: ignore[no-untyped-def]
    import gui.chat_panel as cp

    real_restore = cp.ChatPanel._restore

    def restore_with_a_warning(self: Any) -> None:  # a damaged chat found while the window is built
        notifier().warning("Skipped a damaged chat (test.json); the file was left as it is.")
        real_restore(self)

    monkeypatch.setattr(cp.ChatPanel, "_restore", restore_with_a_warning)
    from test_gui_main import MACHINE

    w = MainWindow(hardware=MACHINE, prefetch=False)
    qtbot.addWidget(w)
    w.show()
    assert "Skipped a damaged chat" in w.statusBar().currentMessage()
    menus = [a.text().replace("&", "") for a in w.menuBar().actions()]
    assert menus == ["File", "Model", "View", "Help"]
    assert w.actions_.quit.shortcut().toString() == "Ctrl+Q"
    assert {"system", "light", "dark"} == set(w.actions_.schemes)
    window_colour = QPalette.ColorRole.Window
    w.actions_.schemes["dark"].trigger()
    assert QApplication.palette().color(window_colour).lightness() < 100
    w.actions_.schemes["light"].trigger()
    assert QApplication.palette().color(window_colour).lightness() > 150
    assert AppSettings.load().color_scheme in ("light", "system")  # saved (debounced) or not yet
    w.save_settings()
    assert AppSettings.load().color_scheme == "light"
    w.actions_.schemes["system"].trigger()
    box = about(w)
    assert "LayerFit" in box.text()
    box.close()
    qtbot.waitUntil(lambda: w.plan is not None, timeout=60000)  # the demo model is picked first
    assert w.windowTitle().count("LayerFit") == 0  # Qt adds " — LayerFit" once, from the display name
    with qtbot.waitSignal(w.destroyed, timeout=5000, raising=False):
        w.actions_.quit.trigger()
    assert not w.isVisible()


def test_the_layout_fits_1024_by_700_and_dialogs_remember_the_folder(qtbot: Any, tmp_path: Any) -> None:
    from test_gui_main import MACHINE

    from gui import dialog_dirs
    from gui.export_dialog import ExportDialog

    w = MainWindow(hardware=MACHINE, prefetch=False)
    qtbot.addWidget(w)
    w.load_panel.set_hardware_choice("t4")  # the widest form: the what-if row is shown
    w.show()
    qtbot.waitUntil(lambda: w.plan is not None, timeout=60000)
    assert w.minimumSizeHint().width() <= 1024 and w.minimumSizeHint().height() <= 700
    w.resize(1024, 700)
    qtbot.waitUntil(lambda: w.width() == 1024)
    scroll = w.splitter.widget(1)
    center = scroll.widget()  # type: ignore[attr-defined]
    assert center.width() >= center.minimumSizeHint().width()  # the middle column never clips sideways
    assert scroll.viewport().width() >= center.minimumSizeHint().width()  # type: ignore[attr-defined]
    # file dialogs open where the user last was, and that survives a restart
    folder = tmp_path / "modelfiles"
    folder.mkdir()
    dialog_dirs.remember(folder / "x.Modelfile")
    assert dialog_dirs.last_dir() == str(folder)
    dlg = ExportDialog(w.model_info, w.plan, w.chat_panel.sampling(), parent=w)
    qtbot.addWidget(dlg)
    assert dlg.suggested_path().parent == folder
    w.save_settings()
    assert AppSettings.load().last_folder == str(folder)
    dialog_dirs.restore(None)
    assert dialog_dirs.last_dir() != str(folder)
