"""The main window, driven offscreen with pytest-qt: library → settings → plan → meter → advice → load.

Expected numbers are worked out here from the model's shape (KV bytes = layers × kv-heads × (key + value
length) × 2 bytes for f16 × context), never copied from the estimator.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gguf_factory import QWEN25_32B, write_sparse_model, write_tiny_model

from core.engine import ChatEvent, EngineCrashed, Fallback, LoadResult
from core.fit import Plan, make_plan
from core.hardware import Hardware
from core.placement import Placement
from core.sampling import SamplingSettings
from core.settings import AppSettings, settings_path
from core.units import GiB
from gui.library import Role
from gui.load_panel import LoadPanel
from gui.mainwindow import MainWindow
from gui.notify import notifier
from gui.workers import wait_all

# The machine the tests plan for: no real GPU is needed, a what-if 16 GiB card with plenty of RAM.
RAM = 64 * GiB
MACHINE = Hardware((), RAM, 60 * GiB, 8).with_vram(16 * GiB, name="Test GPU 16 GiB")
CPU_MACHINE = Hardware((), RAM, 60 * GiB, 8, gpu_problem="no NVIDIA driver answered")


def _window(qtbot, hardware: Hardware = MACHINE, **kw) -> MainWindow:  # type: ignore[no-untyped-def]
    w = MainWindow(hardware=hardware, **kw)
    qtbot.addWidget(w)
    w.show()
    return w


def load_demo_on_cpu(qtbot, demo_model: Path, *, add: bool = False) -> tuple[MainWindow, int]:  # type: ignore[no-untyped-def]
    """A window with a model (the demo by default; ``add`` puts another file in the library first) really
    loaded on the CPU at 512 tokens; returns it and the engine's pid."""
    w = _window(qtbot, hardware=CPU_MACHINE)
    if add:
        w.library.add_files([str(demo_model)])
        w.library.select_path(str(demo_model))
    _wait_plan(qtbot, w, str(demo_model))
    w.load_panel.ctx_spin.setValue(512)
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.n_ctx == 512)
    with qtbot.waitSignal(w.loaded, timeout=180000):
        w.load_action.trigger()
    pid = w._engine.child_pid if w._engine is not None else None
    assert pid is not None
    return w, pid


def _wait_plan(qtbot, w: MainWindow, path: str | None = None, timeout: int = 60000) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: w.plan is not None and w.meter.state is not None
                    and (path is None or w.plan.model.path == path), timeout=timeout)


@pytest.fixture(autouse=True)
def _drain_workers():  # type: ignore[no-untyped-def]
    yield
    for fake in _fakes:  # a failing test must not leave a fake blocked on the engine thread
        fake.release.set()
        fake.stop()
    _fakes.clear()
    wait_all(60000)


class FakeEngine:
    """Stands in for core.engine.Engine in the window's unit tests (the real one is tested with the demo
    model below). ``load`` waits for ``release`` (set by default) and reports the plan's own numbers as
    measured, or those of ``fallback(plan)`` as a fallback would; ``chat`` streams ``reply`` one character
    a token, waiting after the first for ``stop()`` when ``block_chat``, or raises ``chat_error``;
    ``unload`` raises ``unload_error``."""

    def __init__(self, *, fallback: Callable[[Plan], Plan] | None = None, block_chat: bool = False,
                 chat_error: Exception | None = None, unload_error: Exception | None = None) -> None:
        self.fallback = fallback
        self.block_chat = block_chat
        self.chat_error = chat_error
        self.unload_error = unload_error
        self.release = threading.Event()
        self.release.set()
        self.loads: list[Plan] = []
        self._stop = threading.Event()
        self.interrupts = 0
        _fakes.append(self)

    def load(self, plan: Plan, progress: Callable[[float], None] | None = None,
             cancel: threading.Event | None = None) -> LoadResult:
        self.loads.append(plan)
        self.release.wait(30)
        got = self.fallback(plan) if self.fallback is not None else plan
        placement = Placement(True, got.processor, got.gpu_layers, got.model.n_layer, got.gpu, got.host)
        steps = (Fallback("fewer GPU layers", "out of memory", got.settings, got.gpu_layers, got.processor),) \
            if got is not plan else ()
        return LoadResult(placement, got.settings, steps, load_seconds=0.1, plan=got)

    def chat(self, messages: list[dict[str, str]], sampling: SamplingSettings) -> Iterator[ChatEvent]:
        self._stop.clear()
        if self.chat_error is not None:
            raise self.chat_error
        yield ChatEvent("token", "o")
        if self.block_chat:
            self._stop.wait(30)
        if not self._stop.is_set():
            yield ChatEvent("token", "k")
        yield ChatEvent("done", tokens=2, finish_reason="stopped" if self._stop.is_set() else "stop")

    def stop(self) -> None:
        self._stop.set()

    def interrupt(self) -> None:  # the real one also cancels a load; here a reply is all there is
        self.interrupts += 1
        self._stop.set()

    def unload(self) -> None:
        if self.unload_error is not None:
            raise self.unload_error

    def close(self) -> None:
        pass


_fakes: list[FakeEngine] = []


def _fake_window(qtbot, tmp_path: Path, engine: FakeEngine) -> tuple[MainWindow, str]:  # type: ignore[no-untyped-def]
    """A window with the tiny model picked (a 16 GiB what-if card: all 4 blocks + output fit) and ``engine``."""
    model = str(write_tiny_model(tmp_path / "tiny-chat.gguf"))
    w = _window(qtbot, engine_factory=lambda: engine, prefetch=False)
    w.library.add_files([model])
    w.library.select_path(model)
    _wait_plan(qtbot, w, model)
    return w, model


def _load(qtbot, w: MainWindow) -> None:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(w.loaded, timeout=30000):
        w.load_action.trigger()


def f16_kv_bytes(info, n_ctx: int) -> int:  # type: ignore[no-untyped-def]
    per_token = sum(info.n_head_kv) * (info.key_length + info.value_length) * 2
    return per_token * n_ctx


def test_demo_model_context_slider_moves_the_meter(qtbot, demo_model: Path) -> None:  # type: ignore[no-untyped-def]
    # CPU-only machine first: the KV cache is plain host memory, so its size is exact
    w = _window(qtbot, hardware=CPU_MACHINE)
    _wait_plan(qtbot, w, str(demo_model))  # the demo model is listed and picked first
    info = w.model_info
    assert info is not None and info.n_ctx_train == 8192  # SmolLM2-135M's trained context
    # go to 2048 with the slider (powers of two: 512, 1024, 2048, …)
    w.load_panel.ctx_slider.setValue(2)
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.n_ctx == 2048)
    s = w.meter.state
    assert s is not None and s.source == "plan"
    assert s.gpu.total == 0 and s.processor == "100% CPU" and s.gpu_layers == 0
    assert s.host.kv == f16_kv_bytes(info, 2048)
    w.load_panel.ctx_slider.setValue(w.load_panel.ctx_slider.maximum())  # 8192
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.n_ctx == 8192)
    s = w.meter.state
    assert s.host.kv == f16_kv_bytes(info, 8192) == 4 * f16_kv_bytes(info, 2048)
    assert w.load_panel.ctx_spin.value() == 8192  # the exact box follows the slider
    # what if a 16 GiB card: a 135M model fits entirely, every block plus the output layer
    w.load_panel.set_hardware_choice("16GiB")
    qtbot.waitUntil(lambda: w.meter.state is not None and w.meter.state.gpu_capacity == 16 * GiB)
    s = w.meter.state
    assert s.gpu_layers == s.n_layers == info.n_layer + 1
    assert s.processor == "100% GPU" and s.fits and s.fits_gpu
    assert w.meter.processor.text() == "100% GPU"
    assert s.gpu.kv >= f16_kv_bytes(info, 8192) and s.host.kv == 0


def test_what_if_t4_with_a_32b_model_at_128k(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_sparse_model(tmp_path / "qwen2.5-32b-Q4_K_M.gguf", QWEN25_32B)
    w = _window(qtbot, hardware=CPU_MACHINE, prefetch=False)
    w.load_panel.set_hardware_choice("t4")
    w.library.add_files([str(path)])
    _wait_plan(qtbot, w, str(path.resolve()), timeout=120000)
    w.load_panel.ctx_spin.setValue(131072)
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.n_ctx == 131072)
    plan, s = w.plan, w.meter.state
    assert plan is not None and s is not None
    assert s.gpu_name == "Tesla T4 16 GB"
    # 64 layers × 8 KV heads × (128 + 128) × 2 bytes × 131072 tokens = 32 GiB of f16 KV: can't all be on a T4
    kv = 64 * 8 * 256 * 2 * 131072
    assert kv == 32 * GiB
    assert kv <= s.gpu.kv + s.host.kv < kv + 16 * 1024**2  # GPU buffers round up to allocation granularity
    assert 0 < s.gpu_layers < 65, "partial offload expected"
    assert "CPU/GPU" in s.processor
    assert s.gpu.total <= 15360 * 1024**2 - w.load_panel.headroom()  # the plan respects the usable line
    assert plan.reasons and w.advice.reasons.text()
    assert w.advice.buttons, "suggestions are offered as buttons"
    # clicking a suggestion applies exactly what it names and the plan follows
    qtbot.waitUntil(lambda: any(x.text.startswith("num_ctx") for x in w.advice.suggestions))
    i = next(i for i, x in enumerate(w.advice.suggestions) if x.text.startswith("num_ctx"))
    sug, before = w.advice.suggestions[i], w.load_panel.settings()
    w.advice.buttons[i].click()
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.n_ctx == sug.settings.n_ctx)
    got = w.load_panel.settings()
    assert got == before.with_(n_ctx=int(sug.text.split()[1]))  # the context it names; nothing else
    assert w.plan.gpu_layers == sug.gpu_layers
    assert w.meter.state.processor == sug.processor
    # the trade-off chart marks where layers spill (somewhere at or below 128K)
    qtbot.waitUntil(lambda: w.tradeoff.chart.data is not None, timeout=120000)
    pts = w.tradeoff.chart.data.points
    needs = [p.need_gpu for p in pts]
    assert needs == sorted(needs)  # more context never needs less memory
    assert any(p.gpu_layers < p.n_layers for p in pts)


def test_quantized_kv_needs_flash_attention(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = LoadPanel()
    qtbot.addWidget(panel)
    panel.fa_combo.setCurrentIndex(panel.fa_combo.findData("off"))
    assert not panel.kv_option_enabled("q8_0") and not panel.kv_option_enabled("q4_0")
    assert panel.kv_option_enabled("f16")
    # llama.cpp turns Auto on for a quantized V cache (llama-context.cpp: "enabling flash_attn since it
    # is required for quantized V cache"), so Auto offers q8_0 too; only Off refuses it
    panel.fa_combo.setCurrentIndex(panel.fa_combo.findData("auto"))
    assert panel.kv_option_enabled("q8_0")
    panel.fa_combo.setCurrentIndex(panel.fa_combo.findData("on"))
    assert panel.kv_option_enabled("q8_0")
    panel.kv_combo.setCurrentIndex(panel.kv_combo.findData("q8_0"))
    assert panel.settings().type_k == panel.settings().type_v == "q8_0"
    notices: list[str] = []
    panel.notice.connect(notices.append)
    panel.fa_combo.setCurrentIndex(panel.fa_combo.findData("off"))  # FA off → the cache goes back to f16
    assert panel.settings().type_v == "f16" and panel.settings().flash_attn == "off"
    assert notices and "flash attention" in notices[0]


def test_a_bad_file_shows_its_error_and_the_list_carries_on(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "models"
    folder.mkdir()
    write_tiny_model(folder / "a-good.gguf")
    (folder / "b-broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00 truncated junk")
    settings = AppSettings(model_folders=[str(folder)])
    w = _window(qtbot, settings=settings)
    m = w.library.model

    def rows_done() -> bool:
        return m.rowCount() >= 3 and all(
            m.data(m.index(r, 0), Role.INFO) is not None or m.data(m.index(r, 0), Role.ERROR)
            for r in range(m.rowCount()))

    qtbot.waitUntil(rows_done, timeout=60000)
    bad_row = m.row_of(str((folder / "b-broken.gguf").resolve()))
    good_row = m.row_of(str((folder / "a-good.gguf").resolve()))
    assert bad_row >= 0 and good_row >= 0
    err = m.data(m.index(bad_row, 0), Role.ERROR)
    assert err and "b-broken.gguf" in err
    assert m.data(m.index(good_row, 0), Role.INFO).n_layer == 4  # gguf_factory's default shape
    # picking the broken file explains it and plans nothing; picking the good one plans again
    w.library.view.setCurrentIndex(m.index(bad_row, 0))
    qtbot.waitUntil(lambda: w.plan is None and w.meter.state is None)
    assert "Can't use this file" in w.model_facts.text()
    w.library.view.setCurrentIndex(m.index(good_row, 0))
    _wait_plan(qtbot, w, m.path_at(good_row))


def test_settings_survive_a_new_window(qtbot, tmp_path: Path, demo_model: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "shelf"
    folder.mkdir()
    w = _window(qtbot)
    _wait_plan(qtbot, w, str(demo_model))
    w.library.add_folder(str(folder))
    w.load_panel.set_hardware_choice("rtx3060")
    w.load_panel.set_headroom(int(1.5 * GiB))
    w.load_panel.ctx_spin.setValue(3000)
    w.load_panel.layers_auto.setChecked(False)
    w.load_panel.layers_slider.setValue(12)
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.n_ctx == 3000)
    w.close()  # saves
    saved = AppSettings.load()
    assert saved.last_model == str(demo_model) and saved.model_folders == [str(folder)]

    w2 = _window(qtbot)
    _wait_plan(qtbot, w2, str(demo_model))
    qtbot.waitUntil(lambda: w2.load_panel.settings().n_ctx == 3000)
    s = w2.load_panel.settings()
    assert s.n_gpu_layers == 12
    assert w2.load_panel.hardware_choice() == "rtx3060"
    assert w2.load_panel.headroom() == int(1.5 * GiB)
    assert w2.library.folders == [str(folder)]
    assert w2.plan.hardware.gpu is not None and w2.plan.hardware.gpu.name == "GeForce RTX 3060 12 GB"


@pytest.mark.slow
def test_load_the_demo_model_and_see_measured_numbers(qtbot, demo_model: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("llama_cpp")
    w = _window(qtbot, hardware=CPU_MACHINE)
    _wait_plan(qtbot, w, str(demo_model))
    w.load_panel.ctx_spin.setValue(1024)
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.n_ctx == 1024)
    with qtbot.waitSignal(w.loaded, timeout=180000):
        w.load_action.trigger()
    s = w.meter.state
    assert s is not None and s.source == "measured"
    assert s.processor == "100% CPU" and s.gpu_layers == 0  # no GPU here: it runs on the CPU
    assert s.host.weights > 0
    assert s.diff_host == s.host.total - w.loaded_plan.host.total
    assert "Plan vs measured" in w.meter.diff.text()
    assert w.unload_action.isEnabled()
    # moving a slider shows an estimate again; moving it back shows the measurement
    w.load_panel.ctx_spin.setValue(2048)
    qtbot.waitUntil(lambda: w.meter.state.source == "plan")
    w.load_panel.ctx_spin.setValue(1024)
    qtbot.waitUntil(lambda: w.meter.state.source == "measured")
    with qtbot.waitSignal(w.unloaded, timeout=60000):
        w.unload_action.trigger()
    assert w.load_result is None and w.meter.state.source == "plan"


def test_export_then_import_modelfile_round_trips_through_the_window(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = write_tiny_model(tmp_path / "tiny-chat.gguf")
    w = _window(qtbot)
    w.library.add_files([str(model)])
    w.library.select_path(str(model))
    _wait_plan(qtbot, w, str(model))
    # tune: 1024 context, 3 pinned GPU layers, a colder sampler
    w.load_panel.set_settings(w.load_panel.settings().with_(n_ctx=1024, n_gpu_layers=3))
    w.chat_panel.set_sampling(w.chat_panel.sampling().with_(temperature=0.25, stop=("</s>", "User:")))
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.n_ctx == 1024)
    w.export_modelfile()
    dlg = w.export_dialog
    assert dlg is not None
    text = dlg.modelfile_text()
    assert f"FROM {model}" in text and "PARAMETER num_ctx 1024" in text and "PARAMETER num_gpu 3" in text
    out = tmp_path / "Modelfile"
    dlg.save_to(str(out))
    dlg.close()
    # change everything, then import the file back
    w.load_panel.set_settings(w.load_panel.settings().with_(n_ctx=4096, n_gpu_layers=None))
    w.chat_panel.set_sampling(w.chat_panel.sampling().with_(temperature=0.9, stop=()))
    spec = w.import_modelfile(str(out))
    assert spec is not None
    s = w.load_panel.settings()
    assert (s.n_ctx, s.n_gpu_layers) == (1024, 3)
    samp = w.chat_panel.sampling()
    assert samp.temperature == 0.25 and samp.stop == ("</s>", "User:")


def test_importing_a_broken_modelfile_reports_the_line_and_changes_nothing(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]

    w = _window(qtbot)
    _wait_plan(qtbot, w)
    before = w.load_panel.settings()
    bad = tmp_path / "Modelfile"
    bad.write_text("FROM llama3:8b\nPARAMETER temperature 0.7 # cosy\n")
    messages: list[tuple[str, str]] = []
    notifier().message.connect(lambda level, text: messages.append((level, text)))
    assert w.import_modelfile(str(bad)) is None
    assert messages and messages[-1][0] == "error" and "line 1" in messages[-1][1]
    assert w.load_panel.settings() == before


def test_dropping_a_gguf_on_the_window_adds_it_to_the_library(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    model = write_tiny_model(tmp_path / "dropped.gguf")
    (tmp_path / "notes.txt").write_text("not a model")
    w = _window(qtbot)
    _wait_plan(qtbot, w)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(model)), QUrl.fromLocalFile(str(tmp_path / "notes.txt"))])
    ev = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier)
    w.dropEvent(ev)
    assert ev.isAccepted()
    assert str(model) in w.library.files and not any(f.endswith(".txt") for f in w.library.files)
    qtbot.waitUntil(lambda: w.library.model.row_of(str(model)) >= 0)


# --------------------------------------------------------------------------------------------------
# The window's engine handling, with a fake engine (the real one: the slow tests above and below)
# --------------------------------------------------------------------------------------------------


def test_an_engine_crash_mid_chat_unloads_the_window(qtbot, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                      messages: list[tuple[str, str]]) -> None:
    engine = FakeEngine(chat_error=EngineCrashed("the engine process was killed (SIGKILL)"))
    w, _model = _fake_window(qtbot, tmp_path, engine)
    _load(qtbot, w)
    assert w.load_result is not None and w.meter.state.source == "measured"
    with qtbot.waitSignal(w.unloaded, timeout=10000):
        w.chat_panel.input.setPlainText("hello?")
        assert w.chat_panel.send()
    qtbot.waitUntil(lambda: not w.chat_panel.is_streaming, timeout=10000)
    assert w.load_result is None and w.loaded_plan is None
    assert w.engine_state.text() == "No model loaded"
    assert w.load_action.isEnabled() and not w.unload_action.isEnabled()
    assert not w.chat_panel.send_button.isEnabled()
    assert w.meter.state.source == "plan"
    assert ("error", "Chat: the engine process was killed (SIGKILL)") in messages
    # the next load works
    engine.chat_error = None
    _load(qtbot, w)
    assert w.load_result is not None and w.chat_panel.send_button.isEnabled()
    assert len(engine.loads) == 2


def test_export_after_a_fallback_writes_the_layers_that_loaded(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def two_layers(plan: Plan) -> Plan:  # the fallback ladder settled on 2 GPU layers
        return make_plan(plan.model, plan.settings.with_(n_gpu_layers=2), plan.hardware, plan.headroom)

    w, _model = _fake_window(qtbot, tmp_path, FakeEngine(fallback=two_layers))
    assert w.plan.gpu_layers == 5  # asked for: 4 blocks + the output layer on the 16 GiB card
    _load(qtbot, w)
    assert w.loaded_plan is not None and w.loaded_plan.gpu_layers == 2
    assert w.meter.state.gpu_layers == 2
    w.export_modelfile()
    text = w.export_dialog.modelfile_text()
    w.export_dialog.close()
    assert "PARAMETER num_gpu 2" in text and "PARAMETER num_gpu 5" not in text


def test_changing_the_form_during_a_load_keeps_the_estimate(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    engine = FakeEngine()
    engine.release.clear()
    w, _model = _fake_window(qtbot, tmp_path, engine)
    asked_ctx = w.plan.settings.n_ctx
    w.load_action.trigger()
    qtbot.waitUntil(lambda: len(engine.loads) == 1, timeout=10000)
    w.load_panel.ctx_spin.setValue(asked_ctx // 2)  # changed while the model loads
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.n_ctx == asked_ctx // 2)
    with qtbot.waitSignal(w.loaded, timeout=30000):
        engine.release.set()
    assert w.meter.state.source == "plan"  # not the measurement of the other context
    assert w.load_result is not None and w.unload_action.isEnabled()
    # back to what was loaded: now the measurement is shown
    w.load_panel.ctx_spin.setValue(asked_ctx)
    qtbot.waitUntil(lambda: w.meter.state.source == "measured")


def test_load_is_disabled_while_a_reply_streams(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    engine = FakeEngine(block_chat=True)
    w, _model = _fake_window(qtbot, tmp_path, engine)
    _load(qtbot, w)
    assert w.load_action.isEnabled()
    w.chat_panel.input.setPlainText("tell me a story")
    assert w.chat_panel.send()
    qtbot.waitUntil(lambda: w.chat_panel.transcript.streaming_text() == "o", timeout=10000)
    assert not w.load_action.isEnabled()
    w.load_model()  # the shortcut, or a caller, can't start one either
    assert len(engine.loads) == 1
    w.chat_panel.stop()
    qtbot.waitUntil(lambda: not w.chat_panel.is_streaming, timeout=10000)
    assert w.load_action.isEnabled()


def test_a_failed_unload_is_reported_and_the_window_recovers(qtbot, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                             messages: list[tuple[str, str]]) -> None:
    engine = FakeEngine(unload_error=OSError("the engine did not answer"))
    w, _model = _fake_window(qtbot, tmp_path, engine)
    _load(qtbot, w)
    with qtbot.waitSignal(w.unloaded, timeout=10000):
        w.unload_action.trigger()
    assert w.engine_state.text() == "No model loaded"
    assert w.load_action.isEnabled() and not w.unload_action.isEnabled()
    assert any(level == "error" and text.startswith("Unloading the model:") and "did not answer" in text
               for level, text in messages)
    engine.unload_error = None
    _load(qtbot, w)  # loading again works
    assert w.load_result is not None


@pytest.mark.filterwarnings("ignore:libshiboken. Overflow:RuntimeWarning")  # the value we feed Qt
def test_unusable_saved_settings_are_reported_not_fatal(qtbot, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                        messages: list[tuple[str, str]]) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # the right JSON types, but a context no spin box can hold (2**40 overflows Qt's 32-bit int)
    path.write_text(json.dumps({"load_settings": {"n_ctx": 2**40}, "headroom_mib": 1024,
                                "hardware_choice": "rtx3060"}), encoding="utf-8")
    w = _window(qtbot)
    _wait_plan(qtbot, w)
    assert any(level == "warning" and "load settings" in text for level, text in messages)
    # the other remembered values are still restored
    assert w.load_panel.headroom() == 1 * GiB
    assert w.load_panel.hardware_choice() == "rtx3060"


@pytest.mark.slow
def test_killing_the_real_engine_mid_chat_unloads_the_window(qtbot, demo_model: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("llama_cpp")
    w, pid = load_demo_on_cpu(qtbot, demo_model)
    os.kill(pid, signal.SIGKILL)
    with qtbot.waitSignal(w.unloaded, timeout=60000):
        w.chat_panel.input.setPlainText("Are you there?")
        assert w.chat_panel.send()
    qtbot.waitUntil(lambda: not w.chat_panel.is_streaming, timeout=60000)
    assert w.load_result is None and w.engine_state.text() == "No model loaded"
    assert w.load_action.isEnabled() and not w.unload_action.isEnabled()
    with qtbot.waitSignal(w.loaded, timeout=180000):
        w.load_action.trigger()
    assert w.load_result is not None and w.meter.state.source == "measured"
    assert w._engine.child_pid not in (None, pid)
