"""The main window, driven offscreen with pytest-qt: library → settings → plan → meter → advice → load.

Expected numbers are worked out here from the model's shape (KV bytes = layers × kv-heads × (key + value
length) × 2 bytes for f16 × context), never copied from the estimator.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf_factory import QWEN25_32B, write_sparse_model, write_tiny_model

from core.hardware import Hardware
from core.settings import AppSettings
from core.units import GiB
from gui.library import Role
from gui.load_panel import LoadPanel
from gui.mainwindow import MainWindow
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


def _wait_plan(qtbot, w: MainWindow, path: str | None = None, timeout: int = 60000) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: w.plan is not None and w.meter.state is not None
                    and (path is None or w.plan.model.path == path), timeout=timeout)


@pytest.fixture(autouse=True)
def _drain_workers():  # type: ignore[no-untyped-def]
    yield
    wait_all(60000)


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
    # clicking a suggestion applies its settings and the plan follows
    sug = w.advice.suggestions[0]
    w.advice.buttons[0].click()
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.n_ctx == sug.settings.n_ctx
                    and w.plan.settings.type_v == sug.settings.type_v)
    got = w.load_panel.settings()
    assert (got.n_ctx, got.type_k, got.type_v, got.swa_full) == (
        sug.settings.n_ctx, sug.settings.type_k, sug.settings.type_v, sug.settings.swa_full)
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
    panel.fa_combo.setCurrentIndex(panel.fa_combo.findData("auto"))
    assert not panel.kv_option_enabled("q8_0")
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
    from gui.notify import notifier

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
