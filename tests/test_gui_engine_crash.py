"""Issue #11, GUI side: a llama.cpp crash (SIGSEGV) in the real engine child is explained in the window with the
same words as the CLI (cause and what to do), the window stays usable, and the typed message is kept."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from test_gui_main import load_demo_on_cpu

from core.chats import ChatStore


@pytest.mark.slow
def test_a_segfaulting_engine_is_explained_and_the_chat_is_kept(  # type: ignore[no-untyped-def]
        qtbot, demo_model: Path, messages: list[tuple[str, str]]) -> None:
    w, pid = load_demo_on_cpu(qtbot, demo_model)
    os.kill(pid, signal.SIGSEGV)  # what an AMX build does at the first decode
    typed = "What is the capital of France?"
    with qtbot.waitSignal(w.unloaded, timeout=60000):
        w.chat_panel.input.setPlainText(typed)
        assert w.chat_panel.send()
    qtbot.waitUntil(lambda: not w.chat_panel.is_streaming, timeout=60000)
    errors = [text for level, text in messages if level == "error"]
    assert any("SIGSEGV" in t and "layerfit doctor" in t and "make rebuild-llama" in t for t in errors), errors
    # the window is usable and nothing typed was lost: the message is in the chat, on disk too
    assert w.load_action.isEnabled()
    chat = w.chat_panel._chat
    assert [m.content for m in chat.messages if m.role == "user"] == [typed]
    saved = ChatStore().load(chat.id)
    assert any(m.content == typed for m in saved.messages)


def test_a_long_message_is_elided_in_the_status_bar_not_painted_over_the_engine_state(qtbot) -> None:  # type: ignore[no-untyped-def]
    from test_gui_main import _window

    from gui.notify import notifier

    w = _window(qtbot)
    w.resize(1024, 700)
    qtbot.waitUntil(lambda: w.statusBar().isVisible() and w.statusBar().width() >= 900)
    long = "the engine process was killed by SIGSEGV (llama.cpp crashed). " + "Likely cause: a build. " * 30
    notifier().warning(long)
    shown = w.statusBar().currentMessage()
    assert shown.startswith("Warning: the engine process was killed by SIGSEGV") and shown.endswith("…")
    sb = w.statusBar()
    assert sb.fontMetrics().horizontalAdvance(shown) <= sb.width() - w.engine_state.width()
    assert long in sb.toolTip()  # the whole text is one hover away
