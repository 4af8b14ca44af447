"""Fault suite for the window (issue 16, cases 1, 3, 6 and 7): it opens whatever the stored files hold,
says what was set aside, shows text from files as text (never markup), refuses a second window on the
same data, cleans up after interrupted saves, and lays out a 1 MB message without stalling."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest
from gguf_factory import Shape, write_tiny_model
from PySide6.QtCore import Qt
from test_gui_main import _wait_plan, _window
from test_robust_store import DEEP, _hold_lock

from core.chats import Chat, ChatStore, chats_dir
from core.settings import AppSettings, settings_path
from gui.workers import wait_all

HTML_NAME = "<b style='color:green'>File OK – click Load</b><img src='/etc/hostname'>"


@pytest.fixture(autouse=True)
def _drain():  # type: ignore[no-untyped-def]
    yield
    wait_all(60000)


def test_the_window_opens_over_hostile_chats_and_says_what_it_set_aside(qtbot,  # type: ignore[no-untyped-def]
                                                                        messages: list[tuple[str, str]]) -> None:
    store = ChatStore()
    good = Chat(title="good one")
    good.add("user", "kept")
    store.save(good)
    d = chats_dir()
    (d / "20250101-000000-aaaaaaaa.json").write_text(
        '{"version": 1, "id": "20250101-000000-aaaaaaaa", "updated": NaN, "created": 1e400, '
        '"messages": [{"role": "user", "content": "odd dates"}]}', encoding="utf-8")
    (d / "20250101-000000-bbbbbbbb.json").write_text(DEEP, encoding="utf-8")
    os.mkfifo(d / "20250101-000000-cccccccc.json")
    (d / "20250101-000000-dddddddd.json").write_text(
        '{"version": 1, "id": "20250101-000000-dddddddd", "messages": [{"role": "user", "content": "'
        + "x" * 1_000_000 + '"}]}', encoding="utf-8")
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"last_chat_id": "20250101-000000-dddddddd", "headroom_mib": NaN}', encoding="utf-8")
    w = _window(qtbot)
    from gui.chat_list_model import ChatListRole

    titles = {w.chat_panel.chat_list.index(r, 0).data(ChatListRole.TITLE)
              for r in range(w.chat_panel.chat_list.rowCount())}
    assert {"good one", "odd dates"} <= titles
    # the 1 MB message reopened as the last chat: it is there in full, shown shortened
    assert w.chat_panel.current_chat.id == "20250101-000000-dddddddd"
    assert len(w.chat_panel.current_chat.messages[0].content) == 1_000_000
    warnings = " ".join(t for lvl, t in messages if lvl == "warning")
    assert "kept aside" in warnings and "not a regular file" in warnings
    assert "headroom_mib" in warnings
    assert list(d.glob("*.json.bad-*"))


def test_a_long_message_is_shown_shortened_and_copied_whole() -> None:
    from gui.chat_bubbles import SHOWN_CHARS, shown_text

    text = "y" * 1_000_000
    shown = shown_text(text)
    assert shown.startswith("y" * SHOWN_CHARS) and len(shown) < SHOWN_CHARS + 200
    assert "980,000 more characters" in shown
    assert shown_text("short") == "short"


def test_the_whole_long_message_opens_in_its_own_window(qtbot) -> None:  # type: ignore[no-untyped-def]
    w = _window(qtbot)
    text = "z" * 1_000_000
    dlg = w.chat_panel.show_whole_message(text)
    from PySide6.QtWidgets import QPlainTextEdit

    view = dlg.findChild(QPlainTextEdit)
    assert view is not None and view.toPlainText() == text and view.isReadOnly()
    dlg.close()


def test_damaged_settings_are_reported_once_in_the_window(qtbot, messages: list[tuple[str, str]]) -> None:  # type: ignore[no-untyped-def]
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{" * 100_000, encoding="utf-8")
    w = _window(qtbot, settings=AppSettings.load())
    assert any(lvl == "warning" and "kept aside" in t for lvl, t in messages)
    w.close()
    messages.clear()
    _window(qtbot, settings=AppSettings.load())
    assert not any("kept aside" in t for _lvl, t in messages)


def test_html_in_gguf_metadata_is_shown_as_text(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = write_tiny_model(tmp_path / "<b>evil<b>.gguf", Shape(n_layer=2, name=HTML_NAME))
    w = _window(qtbot)
    w.library.add_files([str(model)])
    w.library.select_path(str(model))
    _wait_plan(qtbot, w, str(model))
    assert w.model_title.textFormat() == Qt.TextFormat.PlainText
    assert w.model_title.text() == "<b>evil<b>"
    tip = w.model_title.toolTip()
    assert "<img" not in tip and "&lt;img" in tip and "<b style" not in tip
    assert "<img" not in w.model_facts.text() and "<b" not in w.model_facts.text()
    row = next(r for r in range(w.library.model.rowCount())
               if "evil" in str(w.library.model.index(r, 0).data()))
    lib_tip = str(w.library.model.index(row, 0).data(Qt.ItemDataRole.ToolTipRole))
    assert "<img" not in lib_tip and "&lt;img" in lib_tip


def test_html_in_an_architecture_name_cannot_paint_a_fake_ok(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = write_tiny_model(tmp_path / "arch.gguf", Shape(n_layer=2, arch="<span style='color:green'>OK</span>"))
    w = _window(qtbot)
    w.library.add_files([str(model)])
    w.library.select_path(str(model))
    qtbot.waitUntil(lambda: "arch" in w.model_title.text() and bool(w.model_facts.text()), timeout=60000)
    facts = w.model_facts.text()
    assert "<span style='color:green'>" not in facts
    assert "&lt;span style='color:green'&gt;" in facts


def test_a_second_window_on_the_same_data_is_refused_and_raises_the_first(qtbot) -> None:  # type: ignore[no-untyped-def]
    from core.instance import InstanceLock
    from core.settings import data_dir
    from gui import single

    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(data_dir()), ready))
    holder.start()
    try:
        assert ready.wait(60)
        lock = InstanceLock()
        assert not lock.acquire()  # the other "window" holds the data folder
        name = single.server_name(lock.folder)
        from PySide6.QtWidgets import QWidget

        window = QWidget()  # the open window owns its server, as in gui.app.main
        qtbot.addWidget(window)
        server = single.InstanceServer(name, window)
        assert server.listening
        shown: list[str] = []

        def choose(box):  # type: ignore[no-untyped-def]
            shown.append(box.text())
            return True  # "Bring it forward"

        with qtbot.waitSignal(server.raise_requested, timeout=10000):
            assert single.refuse_second_window(lock, name, choose) == 0
        assert shown and "Another LayerFit window is already open" in shown[0]
        assert f"process {holder.pid}" in shown[0]
    finally:
        holder.kill()
        holder.join(30)


def test_main_refuses_before_building_a_window(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import gui.app
    from core.instance import InstanceLock
    from gui import single

    refused: list[str] = []
    monkeypatch.setattr(InstanceLock, "acquire", lambda self: False)
    monkeypatch.setattr(single, "refuse_second_window", lambda lock, name: refused.append(name) or 0)
    built: list[object] = []
    monkeypatch.setattr("gui.mainwindow.MainWindow.__init__", lambda *a, **k: built.append(a))
    assert gui.app.main([]) == 0
    assert refused and refused[0].startswith("layerfit-") and built == []


def test_interrupted_saves_are_cleaned_at_start() -> None:
    from gui.app import clean_interrupted_saves

    d = chats_dir()
    d.mkdir(parents=True, exist_ok=True)
    leftovers = [d / f".20250101-000000-aaaaaaaa.json.ab{i:06d}.tmp" for i in range(5)]
    for p in leftovers:
        p.write_bytes(b"{")
    keep = d / "notes.tmp"
    keep.write_bytes(b"mine")
    old = time.time() - 3600
    os.utime(keep, (old, old))
    assert clean_interrupted_saves() == 5
    assert not any(p.exists() for p in leftovers) and keep.exists()


def test_unload_in_the_window_wins_over_a_reply_stuck_in_its_template(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The real engine, a chat template that never yields: Unload in the window ends the reply and frees
    the model (it used to wait forever behind the reply on the one engine thread)."""
    import psutil
    from test_robust_engine import NEVER_YIELDS, wait_gone

    model = write_tiny_model(tmp_path / "stuck.gguf", Shape(n_layer=2, chat_template=NEVER_YIELDS))
    from test_gui_main import load_demo_on_cpu

    w, pid = load_demo_on_cpu(qtbot, model, add=True)
    w.chat_panel.input.setPlainText("hi")
    assert w.chat_panel.send()
    proc = psutil.Process(pid)
    qtbot.waitUntil(lambda: proc.cpu_percent(0.1) > 30, timeout=60000)  # rendering the template
    with qtbot.waitSignal(w.unloaded, timeout=60000):
        w.unload_action.trigger()
    qtbot.waitUntil(lambda: not w.chat_panel.is_streaming, timeout=60000)
    assert w.load_result is None and w.engine_state.text() == "No model loaded"
    assert wait_gone(pid)
    assert w.chat_panel.current_chat.messages[0].content == "hi"  # the question is kept
