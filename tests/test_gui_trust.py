"""Issue #13, bugs 1–8 (found by a first real use of the window), each reproduced offscreen with pytest-qt.

Every test drives the window the way the user did and checks what the user saw (the Modelfile text, the
form, the meter, the reasons, the chart). Expected numbers are worked out here, from the GGUF's own tensor
table (gguf-py) or from the settings the test set, never copied from the code under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf import GGUFReader
from gguf_factory import QWEN3_30B_A3B, QWEN25_32B, write_sparse_model, write_tiny_model
from test_gui_main import CPU_MACHINE, MACHINE, RAM, FakeEngine, _fakes, _load, _wait_plan, _window

from core.fit import make_plan
from core.hardware import Hardware
from core.loadsettings import LoadSettings
from core.tradeoff import Where
from core.units import GiB
from gui.mainwindow import MainWindow
from gui.workers import wait_all


@pytest.fixture(autouse=True)
def _drain_workers():  # type: ignore[no-untyped-def]
    yield
    for fake in _fakes:
        fake.release.set()
        fake.stop()
    _fakes.clear()
    wait_all(60000)


@pytest.fixture(scope="module")
def shelf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("trust-models")
    return {"tiny": str(write_tiny_model(d / "tiny-chat.gguf")),
            "big": str(write_sparse_model(d / "qwen32b.gguf", QWEN25_32B)),
            "moe": str(write_sparse_model(d / "qwen3-30b-a3b.gguf", QWEN3_30B_A3B))}


def _pick(qtbot, w: MainWindow, path: str) -> None:  # type: ignore[no-untyped-def]
    w.library.add_files([path])
    w.library.select_path(path)
    _wait_plan(qtbot, w, path, timeout=120000)


def _export_text(w: MainWindow) -> str:
    w.export_modelfile()
    assert w.export_dialog is not None
    return w.export_dialog.modelfile_text()


def test_bug1_export_writes_the_selected_model_not_the_loaded_one(qtbot, shelf: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    w = _window(qtbot, engine_factory=FakeEngine, prefetch=False)
    _pick(qtbot, w, shelf["tiny"])
    _load(qtbot, w)
    assert w.meter.state.source == "measured"
    _pick(qtbot, w, shelf["big"])  # select a 32B model while the tiny one stays loaded
    w.load_panel.ctx_spin.setValue(16384)
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.n_ctx == 16384)
    text = _export_text(w)
    assert f"FROM {shelf['big']}" in text and "tiny-chat" not in text
    assert "PARAMETER num_ctx 16384" in text
    assert w.export_dialog.name().startswith("qwen32b")
    layers = [int(line.split()[-1]) for line in text.splitlines() if line.startswith("PARAMETER num_gpu")]
    assert layers and 0 < layers[0] < 65  # the 32B's own partial offload on the 16 GiB card
    w.export_dialog.close()


def test_bug2_a_suggestion_changes_only_what_it_names(qtbot, shelf: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    w = _window(qtbot, prefetch=False)
    _pick(qtbot, w, shelf["big"])
    w.load_panel.ctx_spin.setValue(65536)
    qtbot.waitUntil(lambda: any(s.text.startswith("num_ctx") for s in w.advice.suggestions), timeout=60000)
    i = next(i for i, s in enumerate(w.advice.suggestions) if s.text.startswith("num_ctx"))
    sug = w.advice.suggestions[i]
    assert "tok/s" in w.advice.buttons[i].text()  # its effect on speed, not only memory
    named_ctx = int(sug.text.split()[1])
    w.advice.buttons[i].click()
    qtbot.waitUntil(lambda: w.load_panel.settings().n_ctx == named_ctx)
    assert w.load_panel.layers_auto.isChecked()  # GPU layers stay Auto
    assert w.load_panel.fa_combo.currentData() == "auto"  # flash attention stays Auto
    # drag the context back to 4K: Auto answers for 4K
    w.load_panel.ctx_spin.setValue(4096)
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.n_ctx == 4096)
    auto_4k = make_plan(w.model_info, LoadSettings(n_ctx=4096), MACHINE, w.load_panel.headroom(), suggest=False)
    assert w.plan.gpu_layers == auto_4k.gpu_layers > sug.gpu_layers
    assert w.meter.state.gpu_layers == auto_4k.gpu_layers


def test_bug3_the_moe_chart_and_meter_tell_experts_from_layers(qtbot, shelf: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    reader = GGUFReader(shelf["moe"])
    off_host = sum(int(t.n_bytes) for t in reader.tensors if not t.name.startswith("token_embd"))
    w = _window(qtbot, hardware=Hardware((), RAM, 60 * GiB, 8), prefetch=False)
    w.load_panel.set_hardware_choice("rtx3060")  # a 12 GB card
    _pick(qtbot, w, shelf["moe"])
    w.load_panel.ctx_spin.setValue(32768)
    qtbot.waitUntil(lambda: w.tradeoff.chart.data is not None and w.tradeoff.chart.data.current_ctx == 32768,
                    timeout=120000)
    assert all(p.need_gpu >= off_host for p in w.tradeoff.chart.data.points)  # 100% GPU holds every expert
    qtbot.waitUntil(lambda: any("MoE expert" in s.text for s in w.advice.suggestions), timeout=60000)
    i = next(i for i, s in enumerate(w.advice.suggestions) if "MoE expert" in s.text)
    w.advice.buttons[i].click()
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.experts_on_cpu)
    st = w.meter.state
    assert st.gpu_layers == st.n_layers == 49
    assert "expert" in w.meter.layers.text() and "expert" in w.meter.verdict.text().lower()
    qtbot.waitUntil(lambda: w.tradeoff.chart.data is not None and any(
        p.where is Where.EXPERTS for p in w.tradeoff.chart.data.points), timeout=120000)
    assert "expert" in w.tradeoff.caption.text() and "layers move" not in w.tradeoff.caption.text()


def test_bug4_after_a_load_why_agrees_with_the_meter(qtbot, shelf: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    w = _window(qtbot, hardware=CPU_MACHINE, engine_factory=FakeEngine, prefetch=False)
    w.load_panel.set_hardware_choice("t4")
    _pick(qtbot, w, shelf["tiny"])
    qtbot.waitUntil(lambda: "fit on the GPU" in w.advice.reasons.text())  # the what-if T4 plan
    _load(qtbot, w)  # loads on this CPU-only machine
    qtbot.waitUntil(lambda: w.meter.state.source == "measured")
    assert w.meter.state.processor == "100% CPU"
    qtbot.waitUntil(lambda: "fit on the GPU" not in w.advice.reasons.text())
    assert "No NVIDIA GPU" in w.advice.reasons.text()


def test_bug5_each_model_keeps_its_own_settings(qtbot, shelf: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    w = _window(qtbot, prefetch=False)
    _pick(qtbot, w, shelf["big"])
    w.load_panel.ctx_spin.setValue(32768)
    qtbot.waitUntil(lambda: w.plan.settings.n_ctx == 32768)
    _pick(qtbot, w, shelf["tiny"])
    w.load_panel.ctx_spin.setValue(1024)
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.n_ctx == 1024)
    _pick(qtbot, w, shelf["big"])
    assert w.load_panel.settings().n_ctx == 32768
    w.close()  # saves
    w2 = _window(qtbot, prefetch=False)
    _pick(qtbot, w2, shelf["tiny"])
    assert w2.load_panel.settings().n_ctx == 1024
    _pick(qtbot, w2, shelf["big"])
    assert w2.load_panel.settings().n_ctx == 32768


def test_bug6_a_what_if_card_has_its_own_ram(qtbot, shelf: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    w = _window(qtbot, prefetch=False)
    assert not w.load_panel.ram_spin.isVisibleTo(w)  # this machine: its own RAM
    w.load_panel.set_hardware_choice("t4")
    assert w.load_panel.ram_spin.isVisibleTo(w)
    _pick(qtbot, w, shelf["big"])
    w.load_panel.ram_spin.setValue(2)  # a T4 server with 2 GiB of RAM
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.hardware.ram_available == 2 * GiB)
    assert w.meter.state.ram_available == 2 * GiB
    assert not w.plan.fits  # 17 GiB of weights can't spill into 2 GiB of RAM next to a 15 GiB card


def test_bug7_import_reports_every_problem_and_accepts_what_ollama_accepts(
        qtbot, tmp_path: Path, shelf: dict[str, str], messages: list[tuple[str, str]]) -> None:  # type: ignore[no-untyped-def]
    w = _window(qtbot, prefetch=False)
    broken = tmp_path / "three.Modelfile"
    broken.write_text(f"FROM {shelf['tiny']}\nPARAMETER num_ctx lots\nPARAMETER temprature 0.5\n"
                      "PARAMETER tfs_z 1\n", encoding="utf-8")
    assert w.import_modelfile(str(broken)) is None
    errors = [t for lvl, t in messages if lvl == "error"]
    assert len(errors) == 1 and all(f"line {n}" in errors[0] for n in (2, 3, 4))  # all three at once
    messages.clear()
    lenient = tmp_path / "lenient.Modelfile"
    lenient.write_text(f"FROM {shelf['tiny']}\nPARAMETER penalize_newline true\nPARAMETER num_ctx 1536\n"
                       'TEMPLATE """{{ .Prompt }}"""\nADAPTER ' + shelf["tiny"] + "\nMESSAGE user hi\n"
                       "LICENSE MIT\n", encoding="utf-8")
    spec = w.import_modelfile(str(lenient))
    assert spec is not None
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.n_ctx == 1536)
    warning = next(t for lvl, t in messages if lvl == "warning")
    assert "penalize_newline" in warning and "line 2" in warning
    for word, line in (("TEMPLATE", 4), ("ADAPTER", 5), ("MESSAGE", 6), ("LICENSE", 7)):
        assert f"line {line}: {word}" in warning


def test_bug8_export_semantics(qtbot, shelf: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    # a CPU-only machine never exports num_gpu 0, and says why
    w = _window(qtbot, hardware=CPU_MACHINE, engine_factory=FakeEngine, prefetch=False)
    _pick(qtbot, w, shelf["tiny"])
    _load(qtbot, w)
    text = _export_text(w)
    assert "PARAMETER num_gpu" not in text
    assert "not written as 0" in w.export_dialog.decisions.text()
    assert "PARAMETER num_predict" not in text  # Ollama leaves replies uncapped; so does the export
    w.export_dialog.close()
    w.chat_panel.max_tokens.setValue(2000)  # the user sets a reply length: now it is written
    assert "PARAMETER num_predict 2000" in _export_text(w)
    w.export_dialog.close()

    # a GPU machine: the fitted layers, or Ollama decides; a plan that won't fit is flagged
    small = Hardware((), 8 * GiB, 6 * GiB, 8).with_vram(4 * GiB, name="Small GPU 4 GiB")
    g = _window(qtbot, hardware=small, prefetch=False)
    _pick(qtbot, g, shelf["tiny"])
    assert "PARAMETER num_gpu 5" in _export_text(g)  # 4 blocks + the output layer
    g.export_dialog.ollama_decides.setChecked(True)
    assert "PARAMETER num_gpu" not in g.export_dialog.modelfile_text()
    assert "Ollama decides" in g.export_dialog.decisions.text()
    g.export_dialog.close()
    _pick(qtbot, g, shelf["big"])
    g.load_panel.layers_auto.setChecked(False)
    g.load_panel.layers_slider.setValue(65)  # pinned beyond the 4 GiB card and 6 GiB of RAM
    qtbot.waitUntil(lambda: g.plan is not None and not g.plan.fits)
    text = _export_text(g)
    assert "PARAMETER num_gpu 65" in text  # the user's pin is the user's word
    assert "Warning" in g.export_dialog.decisions.text() and "# Warning" in text
    g.export_dialog.close()
