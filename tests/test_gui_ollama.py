"""The library's Ollama section, offscreen: it lists a real store (tests/ollama_store_factory.py), and
picking the derived model opens it at its own num_ctx 131072 with the reasons it doesn't fit a small card."""

from __future__ import annotations

from pathlib import Path

import pytest
from ollama_fake_server import FakeOllama, closed_port
from ollama_store_factory import build_seed_store
from PySide6.QtCore import Qt

from core.hardware import Hardware
from core.ollama_client import create_fields
from core.settings import AppSettings
from core.units import GiB
from gui.library import Role
from gui.mainwindow import MainWindow
from gui.workers import wait_all

SMALL_CARD = Hardware((), 64 * GiB, 60 * GiB, 8).with_vram(2 * GiB, name="Test GPU 2 GiB")


@pytest.fixture
def store(tmp_path: Path, demo_model: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ollama" / "models"
    build_seed_store(root, demo_model, tiny_model)
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    return root


@pytest.fixture(autouse=True)
def _drain_workers():  # type: ignore[no-untyped-def]
    yield
    wait_all(60000)


def _window(qtbot) -> MainWindow:  # type: ignore[no-untyped-def]
    w = MainWindow(hardware=SMALL_CARD, prefetch=False)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.library.model.row_of("ollama:smollm2:135m-max-context") >= 0, timeout=30000)
    return w


def _select(qtbot, w: MainWindow, name: str) -> None:  # type: ignore[no-untyped-def]
    row = w.library.model.row_of("ollama:" + name)
    w.library.view.setCurrentIndex(w.library.model.index(row, 0))
    qtbot.waitUntil(lambda: w.plan is not None and w.model_info is not None and w.model_info.name == name
                    and w.plan.model.name == name, timeout=60000)


def test_ollama_section_lists_the_store(qtbot, store: Path) -> None:  # type: ignore[no-untyped-def]
    w = _window(qtbot)
    m = w.library.model
    rows = [m.index(i, 0) for i in range(m.rowCount())]
    ollama_rows = [ix for ix in rows if ix.data(Role.SOURCE) == "ollama"]
    names = {ix.data() for ix in ollama_rows}
    assert names == {"smollm2:135m", "smollm2:135m-max-context", "hf.co/someone/tiny-GGUF:Q8_0",
                     "me/looker:latest", "notgguf:latest", "gone:latest", "broken:latest"}
    # One caption above the section's first row, naming the store.
    captions = [ix.data(Role.SECTION) for ix in rows if ix.data(Role.SECTION)]
    assert len(captions) == 1 and captions[0].startswith("Ollama") and str(store) in captions[0]
    assert ollama_rows[0].data(Role.SECTION) == captions[0]
    # Broken entries are a line each; the others are not.
    errors = {ix.data(): ix.data(Role.ERROR) for ix in ollama_rows if ix.data(Role.ERROR)}
    assert set(errors) == {"notgguf:latest", "gone:latest", "broken:latest"}
    derived = next(ix for ix in ollama_rows if ix.data() == "smollm2:135m-max-context")
    assert "num_ctx 128K" in derived.data(Role.SUMMARY)
    tooltip = m.data(derived, Qt.ItemDataRole.ToolTipRole)
    assert "num_ctx 131072" in tooltip and "Same GGUF blob as smollm2:135m" in tooltip
    assert "terse geography tutor" in tooltip
    assert "from Ollama" in w.library.hint.text()


def test_picking_the_derived_model_opens_at_128k_with_its_reasons(qtbot, store: Path) -> None:  # type: ignore[no-untyped-def]
    w = _window(qtbot)
    _select(qtbot, w, "smollm2:135m-max-context")
    assert w.load_panel.settings().n_ctx == 131072
    assert w.load_panel.ctx_spin.value() == 131072
    plan = w.plan
    assert plan is not None and plan.settings.n_ctx == 131072
    assert not plan.fits_gpu and plan.gpu_layers < plan.n_layers_total
    # The advice panel follows the plan one event-loop turn later.
    qtbot.waitUntil(lambda: "131072" in w.advice.reasons.text().replace(",", ""), timeout=10000)
    assert "beyond what the model was trained for" in w.advice.reasons.text()
    qtbot.waitUntil(lambda: any(s.text.startswith("num_ctx") for s in w.advice.suggestions), timeout=10000)
    assert w.model_title.text() == "smollm2:135m-max-context"
    assert "Ollama model" in w.model_facts.text()
    assert w.chat_panel.sampling().system == "You are a terse geography tutor."
    assert w.chat_panel.sampling().temperature == pytest.approx(0.2)
    # The base model shares the blob but not the params: it opens at LayerFit's default context.
    _select(qtbot, w, "smollm2:135m")
    assert w.load_panel.settings().n_ctx == 4096
    assert w.plan is not None and w.plan.fits_gpu
    assert w.chat_panel.sampling().system == ""


def test_export_dialog_creates_the_tuned_model_in_ollama(qtbot, store: Path,  # type: ignore[no-untyped-def]
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeOllama()
    monkeypatch.setenv("OLLAMA_HOST", fake.host)
    try:
        w = _window(qtbot)
        _select(qtbot, w, "smollm2:135m-max-context")
        w.export_modelfile()
        dlg = w.export_dialog
        assert dlg is not None and dlg.create_button.isVisible() and dlg.create_button.isEnabled()
        assert dlg.name() == "smollm2:135m-max-context-layerfit"
        dlg.create_button.click()
        qtbot.waitUntil(lambda: dlg.created is not None, timeout=20000)
        assert "Created smollm2:135m-max-context-layerfit" in dlg.status.text()
        params, system = create_fields(dlg.modelfile_text())
        assert params["num_ctx"] == 131072  # what the plan says, the same as the saved Modelfile
        create = [b for _, p, b in fake.requests if p == "/api/create"]
        assert create == [{"model": "smollm2:135m-max-context-layerfit", "from": "smollm2:135m-max-context",
                           "stream": False, "parameters": params, "system": "You are a terse geography tutor."}]
        # (the window's own Ollama line asked /api/ps when the model was picked)
        assert [p for _, p, _ in fake.requests if p != "/api/ps"] == ["/api/create", "/api/tags"]
        dlg.close()
    finally:
        fake.close()


def test_create_with_ollama_down_is_one_line_in_the_dialog(qtbot, store: Path,  # type: ignore[no-untyped-def]
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", closed_port())
    w = _window(qtbot)
    _select(qtbot, w, "smollm2:135m")
    w.export_modelfile()
    dlg = w.export_dialog
    assert dlg is not None
    dlg.create_button.click()
    qtbot.waitUntil(lambda: "Not created" in dlg.status.text(), timeout=20000)
    assert "not running" in dlg.status.text() and dlg.created is None
    assert dlg.create_button.isEnabled()  # try again once Ollama runs
    assert dlg.modelfile_text().startswith("# Modelfile made by LayerFit")  # the Modelfile is still there
    dlg.close()


def test_no_create_button_for_a_plain_gguf(qtbot, store: Path) -> None:  # type: ignore[no-untyped-def]
    w = _window(qtbot)
    demo_row = next(i for i in range(w.library.model.rowCount())
                    if w.library.model.index(i, 0).data(Role.SOURCE) == "demo")
    w.library.view.setCurrentIndex(w.library.model.index(demo_row, 0))
    qtbot.waitUntil(lambda: w.plan is not None and w.ollama_model is None
                    and w.plan.model.name != "smollm2:135m", timeout=60000)
    w.export_modelfile()
    assert w.export_dialog is not None and not w.export_dialog.create_button.isVisible()
    w.export_dialog.close()


def test_a_new_window_reopens_the_ollama_model_with_the_users_settings(qtbot, store: Path) -> None:  # type: ignore[no-untyped-def]
    w = _window(qtbot)
    _select(qtbot, w, "smollm2:135m-max-context")
    w.load_panel.ctx_spin.setValue(32768)  # the user tunes it down from the params' 131072
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.n_ctx == 32768, timeout=20000)
    w.close()  # saves
    assert AppSettings.load().last_model == "ollama:smollm2:135m-max-context"  # a name: two names share the blob

    w2 = _window(qtbot)
    qtbot.waitUntil(lambda: w2.plan is not None and w2.plan.model.name == "smollm2:135m-max-context"
                    and w2.load_panel.settings().n_ctx == 32768, timeout=60000)
    assert w2.library.selected_path() == "ollama:smollm2:135m-max-context"


@pytest.mark.slow
def test_an_ollama_blob_loads_in_the_window_and_answers_paris(qtbot, store: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("llama_cpp")
    cpu = Hardware((), 64 * GiB, 60 * GiB, 8, gpu_problem="no NVIDIA driver answered")
    w = MainWindow(hardware=cpu, prefetch=False)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.library.model.row_of("ollama:smollm2:135m") >= 0, timeout=30000)
    _select(qtbot, w, "smollm2:135m")
    w.load_panel.ctx_spin.setValue(1024)
    w.chat_panel.set_sampling(w.chat_panel.sampling().with_(temperature=0.0, max_tokens=40))
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.n_ctx == 1024)
    with qtbot.waitSignal(w.loaded, timeout=180000):
        w.load_action.trigger()
    assert w.loaded_plan is not None
    blob = Path(w.loaded_plan.model.path)
    assert blob.parent == store / "blobs" and blob.name.startswith("sha256-")  # in place: no copy
    w.chat_panel.input.setPlainText("What is the capital of France? Answer in one sentence.")
    assert w.chat_panel.send()
    qtbot.waitUntil(lambda: not w.chat_panel.is_streaming and len(w.chat_panel.messages()) >= 2, timeout=120000)
    reply = w.chat_panel.messages()[-1]
    assert reply["role"] == "assistant" and "Paris" in reply["content"]
    with qtbot.waitSignal(w.unloaded, timeout=60000):
        w.unload_action.trigger()


def test_the_window_says_where_a_running_ollama_put_the_model(qtbot, store: Path,  # type: ignore[no-untyped-def]
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeOllama()
    fake.running("smollm2:135m-max-context", size=3 * GiB, size_vram=0, context_length=131072)
    monkeypatch.setenv("OLLAMA_HOST", fake.host)
    try:
        w = _window(qtbot)
        _select(qtbot, w, "smollm2:135m-max-context")
        qtbot.waitUntil(lambda: "Ollama put 0 of 31 layers" in w.ollama_line.text(), timeout=20000)
        assert w.ollama_line.isVisible()
        assert f"set num_gpu {w.plan.gpu_layers}" in w.ollama_line.text()  # the same card: 2 GiB, as planned
        _select(qtbot, w, "smollm2:135m")
        qtbot.waitUntil(lambda: "has not loaded smollm2:135m" in w.ollama_line.text(), timeout=20000)
        demo_row = next(i for i in range(w.library.model.rowCount())
                        if w.library.model.index(i, 0).data(Role.SOURCE) == "demo")
        w.library.view.setCurrentIndex(w.library.model.index(demo_row, 0))
        qtbot.waitUntil(lambda: not w.ollama_line.isVisible(), timeout=20000)  # a plain GGUF: no line
    finally:
        fake.close()


def test_the_window_says_in_one_line_when_ollama_is_down(qtbot, store: Path) -> None:  # type: ignore[no-untyped-def]
    w = _window(qtbot)  # OLLAMA_HOST points where nothing listens (conftest)
    _select(qtbot, w, "smollm2:135m-max-context")
    qtbot.waitUntil(lambda: "not running at 127.0.0.1:9" in w.ollama_line.text(), timeout=20000)
    assert w.plan is not None and w.plan.settings.n_ctx == 131072  # planning doesn't need the server
