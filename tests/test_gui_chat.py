"""The chat panel and its Qt models, offscreen.

Unit tests drive ``ChatPanel`` with a small fake engine (a class that yields ``ChatEvent``s, honouring
``stop()`` between tokens like the real one); ``test_real_engine_chat_on_the_demo_model`` does the same
exchange through ``core.engine.Engine`` with the demo model on CPU.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from core.atomic import SaveError
from core.chats import Chat, ChatStore
from core.engine import ChatEvent, EngineCrashed, EngineError
from core.sampling import SamplingSettings
from core.settings import AppSettings
from gui.chat_list_model import ChatListModel, ChatListRole
from gui.chat_model import TranscriptModel, TranscriptRole
from gui.chat_panel import ChatPanel
from gui.workers import engine_pool

MODEL = "/models/fake-model.gguf"


class FakeEngine:
    """Streams ``reply`` one character per token. With ``block_after`` it waits after that many tokens
    until ``stop()`` is called (the real engine's stop flag, checked between tokens)."""

    def __init__(self, reply: str = "Hello world", *, block_after: int | None = None,
                 context_full: bool = False, fail: Exception | None = None) -> None:
        self.reply = reply
        self.block_after = block_after
        self.context_full = context_full
        self.fail = fail
        self.calls: list[tuple[list[dict[str, str]], SamplingSettings]] = []
        self.stop_calls = 0
        self._stop = threading.Event()
        _fakes.append(self)

    def chat(self, messages: list[dict[str, str]], sampling: SamplingSettings) -> Iterator[ChatEvent]:
        self.calls.append(([dict(m) for m in messages], sampling))
        self._stop.clear()
        if self.fail is not None:
            raise self.fail
        sent = 0
        for ch in self.reply:
            if self.block_after is not None and sent == self.block_after:
                self._stop.wait(30)
            if self._stop.is_set():
                break
            yield ChatEvent("token", ch, tokens=1)
            sent += 1
        if self.context_full:
            yield ChatEvent("context_full", "512 of 512 tokens used")
        stopped = self._stop.is_set()
        yield ChatEvent("done", tokens=sent, tokens_per_second=42.0, time_to_first_token=0.5,
                        finish_reason="stopped" if stopped else "stop")

    def stop(self) -> None:
        self.stop_calls += 1
        self._stop.set()


_fakes: list[FakeEngine] = []


@pytest.fixture(autouse=True)
def _no_stream_outlives_its_test() -> Iterator[None]:
    """A failing test must not leave a fake blocked on the engine thread (it would hang later tests)."""
    yield
    for fake in _fakes:
        fake.stop()
    _fakes.clear()
    assert engine_pool().waitForDone(10_000)


def _panel(qtbot: Any, engine: Any | None, loaded: bool = True) -> ChatPanel:
    panel = ChatPanel(lambda: engine)
    qtbot.addWidget(panel)
    panel.resize(1000, 600)
    if loaded:
        panel.set_model_loaded(True, MODEL)
    return panel


def _exchange(qtbot: Any, panel: ChatPanel, text: str) -> None:
    panel.input.setPlainText(text)
    assert panel.send()
    qtbot.waitUntil(lambda: not panel.is_streaming, timeout=10_000)


def _contents(panel: ChatPanel) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in panel.transcript.messages()]


# --------------------------------------------------------------------------------------------------
# ChatPanel with a fake engine
# --------------------------------------------------------------------------------------------------


def test_send_streams_the_reply_and_saves_the_chat(qtbot: Any) -> None:
    engine = FakeEngine("Hello world")
    panel = _panel(qtbot, engine)
    panel.system_edit.setPlainText("Be brief.")
    panel.temperature.setValue(0.25)
    with qtbot.waitSignal(panel.chatSaved, timeout=10_000) as saved:
        _exchange(qtbot, panel, "Hi")

    assert _contents(panel) == [("user", "Hi"), ("assistant", "Hello world")]
    stats = panel.transcript.index(1, 0).data(TranscriptRole.STATS)
    assert stats["tokens"] == len("Hello world")
    assert stats["tokens_per_second"] == 42.0
    assert stats["time_to_first_token"] == 0.5
    # What the engine got: the system prompt as the first message, once; the form's temperature.
    sent, sampling = engine.calls[0]
    assert sent == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert sampling.system == ""
    assert sampling.temperature == 0.25
    # On disk, under the data dir, with its model and settings.
    chat = ChatStore().load(saved.args[0])
    assert [(m.role, m.content) for m in chat.messages] == [("user", "Hi"), ("assistant", "Hello world")]
    assert chat.model_path == MODEL
    assert chat.system == "Be brief."
    assert chat.sampling["temperature"] == 0.25
    assert panel.input.toPlainText() == ""
    assert "42.0 tok/s" in panel.stats_label.text()
    assert "first token 0.50 s" in panel.stats_label.text()


def test_second_turn_sends_the_whole_history(qtbot: Any) -> None:
    engine = FakeEngine("ok")
    panel = _panel(qtbot, engine)
    _exchange(qtbot, panel, "one")
    _exchange(qtbot, panel, "two")
    sent, _ = engine.calls[1]
    assert sent == [{"role": "user", "content": "one"}, {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": "two"}]


def test_streamed_tokens_are_coalesced(qtbot: Any) -> None:
    reply = "x" * 300
    panel = _panel(qtbot, FakeEngine(reply))
    content_updates = []

    def on_changed(top: Any, _bottom: Any, roles: list[int]) -> None:
        if int(TranscriptRole.CONTENT) in [int(r) for r in roles]:
            content_updates.append(top.row())

    panel.transcript.dataChanged.connect(on_changed)
    _exchange(qtbot, panel, "go")
    assert panel.transcript.messages()[-1].content == reply
    # 300 tokens, far fewer repaints of the reply: they were buffered and flushed together.
    assert 1 <= len(content_updates) < 300
    assert set(content_updates) == {1}


def test_stop_mid_stream_ends_the_reply_early(qtbot: Any) -> None:
    engine = FakeEngine("abcdefgh", block_after=3)
    panel = _panel(qtbot, engine)
    panel.input.setPlainText("count")
    assert panel.send()
    qtbot.waitUntil(lambda: panel.transcript.streaming_text() == "abc", timeout=10_000)
    assert panel.stop_button.isEnabled()
    panel.stop()
    qtbot.waitUntil(lambda: not panel.is_streaming, timeout=10_000)

    assert engine.stop_calls == 1
    last = panel.transcript.messages()[-1]
    assert last.content == "abc"  # the fake had 5 more tokens to give
    assert last.stats["stopped"] is True
    assert last.stats["tokens"] == 3
    assert panel.send_button.isEnabled()
    assert not panel.stop_button.isEnabled()


def test_keyboard_ctrl_enter_sends_and_esc_stops(qtbot: Any) -> None:
    engine = FakeEngine("abcdef", block_after=2)
    panel = _panel(qtbot, engine)
    panel.show()
    qtbot.waitExposed(panel)
    panel.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is panel)
    panel.input.setFocus()
    qtbot.keyClicks(panel.input, "hello")
    qtbot.keyClick(panel.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: panel.transcript.streaming_text() == "ab", timeout=10_000)
    qtbot.keyClick(panel.input, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not panel.is_streaming, timeout=10_000)
    assert _contents(panel) == [("user", "hello"), ("assistant", "ab")]
    assert engine.stop_calls == 1


def test_new_chat_keeps_the_old_one_and_can_reopen_it(qtbot: Any) -> None:
    panel = _panel(qtbot, FakeEngine("first reply"))
    _exchange(qtbot, panel, "first question")
    first_id = panel.current_chat.id

    panel.new_chat()
    assert panel.transcript.rowCount() == 0
    assert panel.current_chat.id != first_id
    assert panel.chat_list.rowCount() == 1
    _exchange(qtbot, panel, "second question")
    assert panel.chat_list.rowCount() == 2
    # Newest first in the list.
    assert panel.chat_list.index(0, 0).data(ChatListRole.ID) == panel.current_chat.id
    assert panel.chat_list.index(0, 0).data(ChatListRole.TITLE) == "second question"

    assert panel.open_chat(first_id)
    assert _contents(panel) == [("user", "first question"), ("assistant", "first reply")]


def test_restart_finds_the_chat_and_the_unsent_draft(qtbot: Any) -> None:
    panel = _panel(qtbot, FakeEngine("pong"))
    _exchange(qtbot, panel, "ping")
    chat_id = panel.current_chat.id
    panel.input.setPlainText("a thought I have not sent")
    panel.shutdown()
    panel.close()

    assert AppSettings.load().last_chat_id == chat_id
    again = _panel(qtbot, None, loaded=False)  # a fresh start: no model loaded yet
    assert again.current_chat.id == chat_id
    assert _contents(again) == [("user", "ping"), ("assistant", "pong")]
    assert again.input.toPlainText() == "a thought I have not sent"
    assert not again.send_button.isEnabled()


def test_shutdown_during_a_reply_stops_and_keeps_it(qtbot: Any) -> None:
    engine = FakeEngine("abcdefgh", block_after=4)
    panel = _panel(qtbot, engine)
    panel.input.setPlainText("go")
    assert panel.send()
    qtbot.waitUntil(lambda: panel.transcript.streaming_text() == "abcd", timeout=10_000)
    panel.shutdown()
    assert not panel.is_streaming
    chat = ChatStore().load(panel.current_chat.id)
    assert [(m.role, m.content) for m in chat.messages] == [("user", "go"), ("assistant", "abcd")]


def test_save_failure_says_so_keeps_memory_and_the_previous_file(
        qtbot: Any, messages: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    panel = _panel(qtbot, FakeEngine("fine"))
    _exchange(qtbot, panel, "before")
    path = ChatStore().path_for(panel.current_chat.id)
    before = path.read_bytes()

    real_replace = os.replace

    def disk_full(*_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    _exchange(qtbot, panel, "after")

    errors = [text for level, text in messages if level == "error"]
    assert len(errors) == 1  # said once, not for every later save attempt
    assert "disk is full" in errors[0]
    assert path.read_bytes() == before  # the previous version is intact
    assert _contents(panel)[-2:] == [("user", "after"), ("assistant", "fine")]
    assert len(panel.current_chat.messages) == 4

    monkeypatch.setattr(os, "replace", real_replace)
    panel.shutdown()
    on_disk = json.loads(path.read_text(encoding="utf-8"))
    assert [m["content"] for m in on_disk["messages"]] == ["before", "fine", "after", "fine"]
    assert ("info", "Chat saved again.") in messages


def test_context_full_shows_a_warning(qtbot: Any) -> None:
    panel = _panel(qtbot, FakeEngine("abc", context_full=True))
    _exchange(qtbot, panel, "long story")
    assert panel.context_banner.isVisibleTo(panel)
    assert "context is full" in panel.context_banner.text()
    assert "512 of 512 tokens used" in panel.context_banner.text()
    panel.new_chat()
    assert not panel.context_banner.isVisibleTo(panel)


def test_send_without_a_model_keeps_the_text(qtbot: Any, messages: list[tuple[str, str]]) -> None:
    panel = _panel(qtbot, FakeEngine(), loaded=False)
    panel.input.setPlainText("are you there?")
    assert not panel.send()
    assert panel.input.toPlainText() == "are you there?"
    assert panel.transcript.rowCount() == 0
    assert any(level == "warning" and "Load a model" in text for level, text in messages)


def test_engine_error_is_reported_and_the_question_kept(qtbot: Any, messages: list[tuple[str, str]]) -> None:
    panel = _panel(qtbot, FakeEngine(fail=EngineError("the engine process stopped unexpectedly")))
    _exchange(qtbot, panel, "hello?")
    assert ("error", "Chat: the engine process stopped unexpectedly") in messages
    assert _contents(panel) == [("user", "hello?")]  # no empty reply bubble
    assert [m.content for m in ChatStore().load(panel.current_chat.id).messages] == ["hello?"]
    assert panel.send_button.isEnabled()


def test_an_engine_crash_says_the_engine_is_lost(qtbot: Any, messages: list[tuple[str, str]]) -> None:
    panel = _panel(qtbot, FakeEngine(fail=EngineCrashed("the engine process was killed (SIGKILL)")))
    with qtbot.waitSignal(panel.engineLost, timeout=10_000) as lost:
        _exchange(qtbot, panel, "hello?")
    assert lost.args == ["the engine process was killed (SIGKILL)"]
    assert ("error", "Chat: the engine process was killed (SIGKILL)") in messages
    assert _contents(panel) == [("user", "hello?")]


def test_an_ordinary_engine_error_keeps_the_engine(qtbot: Any) -> None:
    panel = _panel(qtbot, FakeEngine(fail=EngineError("the reply failed: bad grammar")))
    lost: list[str] = []
    panel.engineLost.connect(lost.append)
    _exchange(qtbot, panel, "hello?")
    assert lost == []
    assert panel.send_button.isEnabled()


def test_switching_chats_keeps_a_chat_that_cannot_be_saved(
        qtbot: Any, messages: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    panel = _panel(qtbot, FakeEngine("kept"))
    _exchange(qtbot, panel, "remember me")
    current = panel.current_chat.id
    other = Chat()
    other.add("user", "another chat")
    ChatStore().save(other)
    panel.input.setPlainText("an unsent thought")

    def disk_full(self: ChatStore, chat: Chat) -> Path:
        raise SaveError(errno.ENOSPC, "No space left on device")

    real_save = ChatStore.save
    monkeypatch.setattr(ChatStore, "save", disk_full)
    panel.new_chat()
    assert panel.current_chat.id == current
    assert _contents(panel) == [("user", "remember me"), ("assistant", "kept")]
    assert panel.input.toPlainText() == "an unsent thought"
    assert not panel.open_chat(other.id)
    assert panel.current_chat.id == current
    assert panel.input.toPlainText() == "an unsent thought"
    warnings = [text for level, text in messages if level == "warning"]
    assert len(warnings) == 2 and all("stays open" in w for w in warnings)
    assert ("error", "Saving chat: No space left on device") in messages

    monkeypatch.setattr(ChatStore, "save", real_save)  # room again: now the switch saves and goes ahead
    panel.new_chat()
    assert panel.current_chat.id != current and panel.input.toPlainText() == ""
    assert ChatStore().load(current).draft == "an unsent thought"


@pytest.mark.filterwarnings("ignore:libshiboken. Overflow:RuntimeWarning")  # the value we feed Qt
def test_a_chat_with_unusable_sampling_values_still_opens(qtbot: Any, messages: list[tuple[str, str]]) -> None:
    chat = Chat(system="Be kind.", sampling={"temperature": "hot", "top_k": 2**40})  # Qt's spin boxes are 32-bit
    chat.add("user", "still readable")
    ChatStore().save(chat)
    panel = _panel(qtbot, None, loaded=False)
    assert panel.current_chat.id == chat.id
    assert _contents(panel) == [("user", "still readable")]
    assert panel.system_edit.toPlainText() == "Be kind."
    assert 0 <= panel.sampling().top_k <= 1000  # within the form's range, not 2**40
    assert any(level == "warning" and "sampling" in text for level, text in messages)


def test_sampling_form_round_trip(qtbot: Any) -> None:
    panel = _panel(qtbot, None)
    wanted = SamplingSettings(temperature=0.3, top_p=0.5, top_k=0, min_p=0.0, repeat_penalty=1.25,
                              repeat_last_n=32, seed=7, max_tokens=100, stop=("\n\n", "User:", "a\\b"),
                              system="You are terse.")
    panel.set_sampling(wanted)
    assert panel.stop_edit.toPlainText() == "\\n\\n\nUser:\na\\\\b"  # one per line, escaped
    assert panel.seed.text() == "7"
    assert panel.sampling() == wanted
    panel.seed.setValue(-1)
    assert panel.seed.text() == "random"
    assert panel.sampling().seed is None


def test_a_damaged_chat_file_is_reported_and_skipped(qtbot: Any, messages: list[tuple[str, str]]) -> None:
    store = ChatStore()
    good = Chat()
    good.add("user", "still here")
    store.save(good)
    store.directory.joinpath("broken.json").write_text("{", encoding="utf-8")
    panel = _panel(qtbot, None, loaded=False)
    assert panel.chat_list.rowCount() == 1
    assert panel.current_chat.id == good.id
    assert any(level == "warning" and "broken.json" in text for level, text in messages)
    # kept aside, not deleted: the user is told once, and the next start is clean (issue 16)
    kept = list(store.directory.glob("broken.json.bad-*"))
    assert len(kept) == 1 and kept[0].read_text(encoding="utf-8") == "{"
    assert not store.directory.joinpath("broken.json").exists()


def test_rename_and_delete_from_the_panel(qtbot: Any) -> None:
    panel = _panel(qtbot, FakeEngine("r"))
    _exchange(qtbot, panel, "q")
    chat_id = panel.current_chat.id
    panel.rename_chat(chat_id, "My chat")
    assert panel.chat_list.index(0, 0).data(ChatListRole.TITLE) == "My chat"
    assert ChatStore().load(chat_id).title == "My chat"
    panel.delete_chat(chat_id)
    assert panel.chat_list.rowCount() == 0
    assert not ChatStore().exists(chat_id)
    assert panel.transcript.rowCount() == 0


# --------------------------------------------------------------------------------------------------
# The Qt models on their own
# --------------------------------------------------------------------------------------------------


def test_transcript_buffers_tokens_until_the_flush(qtbot: Any) -> None:
    model = TranscriptModel()
    model.append_message("user", "hi")
    model.begin_stream()
    changes: list[int] = []
    model.dataChanged.connect(lambda top, _b, roles: changes.append(top.row()))
    for piece in ["Hel", "lo", ", ", "you"]:
        model.push_token(piece)
    assert changes == []  # nothing repainted per token
    assert model.index(1, 0).data(TranscriptRole.CONTENT) == ""
    assert model.streaming_text() == "Hello, you"
    qtbot.waitUntil(lambda: model.index(1, 0).data(TranscriptRole.CONTENT) == "Hello, you", timeout=5000)
    assert changes == [1]  # one update for four tokens
    done = model.end_stream({"tokens": 4})
    assert done is not None and done.content == "Hello, you" and done.stats == {"tokens": 4}
    assert model.index(1, 0).data(TranscriptRole.STREAMING) is False


def test_transcript_model_passes_qtmodeltester(qtmodeltester: Any) -> None:
    model = TranscriptModel()
    model.append_message("user", "What is 2+2?")
    model.begin_stream()
    model.push_token("4")
    model.flush()
    model.end_stream({"tokens": 1, "tokens_per_second": 3.0})
    model.append_message("user", "thanks")
    qtmodeltester.check(model)
    assert model.index(1, 0).data(TranscriptRole.ROLE) == "assistant"
    assert "3.0 tok/s" in model.index(1, 0).data(Qt.ItemDataRole.ToolTipRole)
    model.remove_last()
    assert model.rowCount() == 2


def test_chat_list_model_passes_qtmodeltester_and_keeps_order(qtmodeltester: Any) -> None:
    model = ChatListModel()
    chats = []
    for i, when in enumerate([300.0, 100.0, 200.0]):
        c = Chat(id=f"c{i}", created=when)
        c.add("user", f"question {i}")
        c.updated = when
        chats.append(c)
    model.set_chats(chats)
    qtmodeltester.check(model)
    assert [model.index(r, 0).data(ChatListRole.ID) for r in range(3)] == ["c0", "c2", "c1"]
    chats[1].updated = 400.0  # c1 becomes the newest: it moves to the top
    assert model.upsert(chats[1]) == 0
    assert [model.chat_id(r) for r in range(3)] == ["c1", "c0", "c2"]
    new = Chat(id="c3", created=250.0)
    new.updated = 250.0
    assert model.upsert(new) == 2
    assert model.index(2, 0).data(ChatListRole.TITLE) == "New chat"
    model.remove("c0")
    assert [model.chat_id(r) for r in range(3)] == ["c1", "c3", "c2"]
    qtmodeltester.check(model)


# --------------------------------------------------------------------------------------------------
# The real engine, the demo model, on CPU
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_engine_chat_on_the_demo_model(qtbot: Any, demo_model: Path) -> None:
    from core import hardware
    from core.engine import Engine
    from core.fit import make_plan
    from core.gguf_info import read_model_info
    from core.loadsettings import LoadSettings

    plan = make_plan(read_model_info(demo_model), LoadSettings(n_ctx=512), hardware.probe(), 0)
    engine = Engine()
    try:
        engine.load(plan)
        panel = _panel(qtbot, engine, loaded=False)
        panel.set_model_loaded(True, str(demo_model))
        panel.set_sampling(SamplingSettings(temperature=0.0, seed=1, max_tokens=12))
        _exchange(qtbot, panel, "What is the capital of France?")
        reply = panel.transcript.messages()[-1]
        assert reply.role == "assistant"
        assert reply.content.strip()
        assert 1 <= reply.stats["tokens"] <= 12
        assert reply.stats["tokens_per_second"] > 0
        saved = ChatStore().load(panel.current_chat.id)
        assert saved.messages[-1].content == reply.content
        assert saved.model_path == str(demo_model)
    finally:
        engine.close()
