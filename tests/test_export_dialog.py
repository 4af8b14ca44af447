"""ExportDialog: preview, atomic Save, and the `ollama create` command on the clipboard (offscreen)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QGuiApplication

from core import hardware
from core.fit import Plan, make_plan
from core.gguf_info import ModelInfo, read_model_info
from core.loadsettings import LoadSettings
from core.sampling import SamplingSettings
from gui.export_dialog import ExportDialog, create_command, default_name, valid_name
from gui.notify import notifier


@pytest.fixture
def tiny_plan(tiny_model: Path) -> tuple[ModelInfo, Plan]:
    info = read_model_info(tiny_model)
    # a machine with a GPU: num_gpu is then the plan's layer count (with no GPU it is left out, see
    # test_gui_trust.py)
    gpu_box = hardware.probe_ram_only().with_vram(16 * 1024**3, name="Test GPU 16 GiB")
    return info, make_plan(info, LoadSettings(n_ctx=512), gpu_box, 0)


def _dialog(qtbot: Any, info: ModelInfo, plan: Plan | None, **kw: Any) -> ExportDialog:
    sampling = SamplingSettings(temperature=0.3, seed=42, system="You are terse.", stop=("User:",))
    dlg = ExportDialog(info, plan, sampling, **kw)
    qtbot.addWidget(dlg)
    return dlg


def test_preview_has_from_with_the_absolute_path_and_the_settings(qtbot: Any, tiny_model: Path,
                                                                  tiny_plan: tuple[ModelInfo, Plan]) -> None:
    info, plan = tiny_plan
    dlg = _dialog(qtbot, info, plan)
    text = dlg.preview.toPlainText()
    lines = text.splitlines()
    assert f"FROM {os.path.abspath(tiny_model)}" in lines
    assert "PARAMETER num_ctx 512" in lines
    assert f"PARAMETER num_gpu {plan.gpu_layers}" in lines
    assert "PARAMETER seed 42" in lines
    assert 'PARAMETER stop "User:"' in lines or "PARAMETER stop User:" in lines
    assert any(line.startswith("SYSTEM") and "You are terse." in line for line in lines)
    assert not any(line.startswith("MESSAGE") for line in lines)
    assert dlg.modelfile_text() == text


def test_save_writes_the_file_and_copy_puts_the_command_on_the_clipboard(
        qtbot: Any, tmp_path: Path, tiny_plan: tuple[ModelInfo, Plan]) -> None:
    info, plan = tiny_plan
    dlg = _dialog(qtbot, info, plan)
    dlg.name_edit.setText("tiny-test:v1")
    target = tmp_path / "out" / "tiny.Modelfile"
    target.parent.mkdir()  # the user picks an existing folder; a typo is refused
    assert dlg.save_to(target)
    assert target.read_text(encoding="utf-8") == dlg.preview.toPlainText()
    assert dlg.saved_path() == target
    assert not [p for p in target.parent.iterdir() if p != target]  # no temp file left behind

    QGuiApplication.clipboard().clear()
    dlg.copy_button.click()  # already saved: copies at once, no file dialog
    assert QGuiApplication.clipboard().text() == f"ollama create tiny-test:v1 -f {target}"
    assert dlg.command_edit.text() == f"ollama create tiny-test:v1 -f {target}"


def test_a_failed_save_says_so_and_touches_nothing(qtbot: Any, tmp_path: Path,
                                                   tiny_plan: tuple[ModelInfo, Plan]) -> None:
    info, plan = tiny_plan
    dlg = _dialog(qtbot, info, plan)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x", encoding="utf-8")
    seen: list[tuple[str, str]] = []

    def record(level: str, text: str) -> None:
        seen.append((level, text))

    notifier().message.connect(record)
    try:
        assert not dlg.save_to(blocker / "tiny.Modelfile")
    finally:
        notifier().message.disconnect(record)
    assert blocker.read_text(encoding="utf-8") == "x"
    assert dlg.saved_path() is None
    assert "Not saved" in dlg.status.text()
    assert seen and seen[0][0] == "error" and seen[0][1].startswith("Saving Modelfile: ")


def test_chat_messages_only_when_asked(qtbot: Any, tiny_plan: tuple[ModelInfo, Plan]) -> None:
    info, plan = tiny_plan
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    dlg = _dialog(qtbot, info, plan, messages=chat)
    assert "MESSAGE" not in dlg.preview.toPlainText()
    dlg.include_messages.setChecked(True)
    lines = dlg.preview.toPlainText().splitlines()
    assert [line for line in lines if line.startswith("MESSAGE")] == ["MESSAGE user Hi", "MESSAGE assistant Hello!"]


def test_without_a_plan_ollama_chooses_the_layers(qtbot: Any, tiny_model: Path,
                                                  tiny_plan: tuple[ModelInfo, Plan]) -> None:
    info, _ = tiny_plan
    dlg = _dialog(qtbot, info, None)
    lines = dlg.preview.toPlainText().splitlines()
    assert f"FROM {os.path.abspath(tiny_model)}" in lines
    assert not any(line.startswith("PARAMETER num_gpu") for line in lines)


def test_an_invalid_name_disables_copy(qtbot: Any, tiny_plan: tuple[ModelInfo, Plan]) -> None:
    info, plan = tiny_plan
    dlg = _dialog(qtbot, info, plan)
    assert dlg.copy_button.isEnabled()
    dlg.name_edit.setText("no spaces allowed")
    assert not dlg.copy_button.isEnabled()
    assert dlg.name_problem.isVisibleTo(dlg)


def test_names_and_quoting() -> None:
    assert default_name("SmolLM2 135M Instruct") == "smollm2-135m-instruct"
    assert default_name("  ***  ") == "my-model"
    assert valid_name("library/llama3:8b-q4")
    assert not valid_name("-leading-dash")
    assert not valid_name("two:colons:here")
    if os.name != "nt":
        assert create_command("m", "/tmp/a b/Modelfile") == "ollama create m -f '/tmp/a b/Modelfile'"
