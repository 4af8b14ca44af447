"""Export the tuned setup as an Ollama Modelfile: a preview, Save… (atomic), and a copyable
``ollama create NAME -f PATH`` command.

The text comes from ``core.modelfile`` (the same code as ``layerfit modelfile``), so the dialog and the
CLI can never disagree. Settings a Modelfile cannot carry (KV cache type, flash attention, headroom) are
written by the core as ``#`` comments; the dialog only shows them.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.atomic import SaveError, write_text_atomic
from core.loadsettings import LoadSettings
from core.modelfile import ModelfileError, export_modelfile, spec_from
from core.sampling import SamplingSettings
from gui.notify import notifier
from gui.plain import esc

if TYPE_CHECKING:
    from core.fit import Plan
    from core.gguf_info import ModelInfo

#: What ``ollama create`` accepts as a model name: [namespace/]name[:tag], letters, digits, . _ -
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?(:[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def default_name(model_name: str) -> str:
    """A valid Ollama model name made from the model's name: "SmolLM2 135M Instruct" → "smollm2-135m-instruct"."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", model_name.lower()).strip("-._")
    return slug or "my-model"


def ollama_default_name(source: str) -> str:
    """A name for the tuned copy of an Ollama model: "deepseek-r1:32b" → "deepseek-r1:32b-layerfit"."""
    from core.ollama import parse_name

    n = parse_name(source)
    base = n.display if n is not None else source
    return f"{base}-layerfit" if ":" in base else f"{base}:layerfit"


def valid_name(name: str) -> bool:
    return bool(_NAME_RE.match(name))


def shell_quote(path: str) -> str:
    """Quote a path for the user's shell (POSIX sh, or cmd.exe/PowerShell on Windows)."""
    if os.name == "nt":
        return subprocess.list2cmdline([path])
    return shlex.quote(path)


def create_command(name: str, path: str | Path) -> str:
    """``ollama create NAME -f PATH``, quoted for the shell."""
    return f"ollama create {name} -f {shell_quote(str(path))}"


def _as_pairs(messages: Iterable[Any]) -> tuple[tuple[str, str], ...]:
    """(role, content) pairs from dicts, ``core.chats.Message`` objects or pairs."""
    out: list[tuple[str, str]] = []
    for m in messages:
        if isinstance(m, dict):
            out.append((str(m["role"]), str(m["content"])))
        elif hasattr(m, "role") and hasattr(m, "content"):
            out.append((str(m.role), str(m.content)))
        else:
            role, content = m
            out.append((str(role), str(content)))
    return tuple(out)


class ExportDialog(QDialog):
    """Preview, save and hand over an Ollama Modelfile for ``model_info`` as planned by ``plan``.

    ``plan`` may be None (nothing planned yet): the Modelfile then carries the default load settings and
    lets Ollama choose the GPU layers. ``messages`` are the current chat; they become MESSAGE lines only
    when the user ticks the box (a Modelfile's messages are replayed before every conversation).
    """

    def __init__(self, model_info: ModelInfo, plan: Plan | None, sampling: SamplingSettings,
                 messages: Iterable[Any] = (), parent: QWidget | None = None, *,
                 ollama_source: str | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export Ollama Modelfile")
        self.setModal(True)
        self.resize(720, 620)
        self._model_info = model_info
        self._plan = plan
        self._sampling = sampling
        self._messages = _as_pairs(messages)
        self._text = ""
        self._saved_path: Path | None = None
        self._ollama_source = ollama_source  # the Ollama model this one is made FROM (Create in Ollama)
        self.created: str | None = None  # the name Ollama confirmed, after Create in Ollama

        # The file name is what the user recognises; general.name is often a training-run label.
        self.name_edit = QLineEdit(ollama_default_name(ollama_source) if ollama_source else
                                   default_name(Path(model_info.path).stem or model_info.name))
        self.name_edit.setToolTip("The name Ollama will know the model by (letters, digits, . _ - and an optional :tag)")
        self.name_problem = QLabel()
        self.name_problem.setStyleSheet("color: #D93B3B;")
        self.name_problem.hide()
        n = len(self._messages)
        self.include_messages = QCheckBox(f"Include this chat as MESSAGE lines ({n} message{'s' if n != 1 else ''})")
        self.include_messages.setToolTip("Ollama replays these messages at the start of every conversation")
        self.include_messages.setVisible(bool(self._messages))

        self.preview = QPlainTextEdit()
        self.preview.setReadOnly(True)
        self.preview.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.preview.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.preview.setAccessibleName("Modelfile preview")

        self.command_edit = QLineEdit()
        self.command_edit.setReadOnly(True)
        self.command_edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.command_edit.setAccessibleName("ollama create command")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.save_button = QPushButton("Save…")
        self.copy_button = QPushButton("Copy command")
        self.copy_button.setToolTip("Copy `ollama create NAME -f PATH` to the clipboard")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.save_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.create_button = QPushButton("Create in Ollama")
        self.create_button.setToolTip(f"Create the model in the running Ollama (OLLAMA_HOST) FROM {ollama_source}, "
                                      "with these parameters and system prompt, then list it back")
        buttons.addButton(self.create_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.create_button.setVisible(ollama_source is not None)  # after addButton, which shows it
        buttons.rejected.connect(self.reject)

        form = QFormLayout()
        form.addRow("Model name", self.name_edit)
        form.addRow("", self.name_problem)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.include_messages)
        layout.addWidget(QLabel("Preview"))
        layout.addWidget(self.preview, 1)
        layout.addWidget(QLabel("Then run"))
        layout.addWidget(self.command_edit)
        layout.addWidget(self.status)
        layout.addWidget(buttons)

        self.name_edit.textChanged.connect(self._update_command)
        self.include_messages.toggled.connect(self._refresh)
        self.save_button.clicked.connect(self._on_save_clicked)
        self.copy_button.clicked.connect(self._on_copy_clicked)
        self.create_button.clicked.connect(self.create_in_ollama)
        self._refresh()

    # --- public --------------------------------------------------------------------------------------

    def modelfile_text(self) -> str:
        """The Modelfile as previewed ("" when it could not be made)."""
        return self._text

    def name(self) -> str:
        return self.name_edit.text().strip()

    def saved_path(self) -> Path | None:
        return self._saved_path

    def command(self) -> str:
        """The ``ollama create`` command for the saved file (or the suggested path before a save)."""
        return create_command(self.name() or "NAME", self._saved_path or self.suggested_path())

    def suggested_path(self) -> Path:
        """Where Save… proposes to write: next to the last save, else the home folder, named after NAME."""
        folder = self._saved_path.parent if self._saved_path else Path.home()
        return folder / f"{self.name() or 'model'}.Modelfile"

    def save_to(self, path: str | Path) -> bool:
        """Write the previewed text to ``path`` atomically. False (and a message) when it failed."""
        if not self._text:
            return False
        target = Path(path).expanduser().absolute()
        try:
            write_text_atomic(target, self._text)
        except SaveError as exc:
            message = exc.strerror or str(exc)
            self.status.setText(f"<span style='color:#D93B3B'>Not saved: {esc(message)}</span>")
            notifier().error(message, "Saving Modelfile")
            return False
        self._saved_path = target
        self.status.setText(f"Saved to {target}. Run the command above to create the Ollama model.")
        self._update_command()
        return True

    def create_in_ollama(self) -> None:
        """Create NAME in the running Ollama, FROM the source model, off the GUI thread. The saved
        Modelfile (if any) stays; the outcome is one line in the dialog."""
        name, source, text = self.name(), self._ollama_source, self._text
        if source is None or not text or not valid_name(name):
            return
        from core.ollama_client import OllamaError, OllamaServer, OllamaUnavailable, create_fields
        from gui.workers import run_task

        params, system = create_fields(text)
        server = OllamaServer()
        self.create_button.setEnabled(False)
        self.status.setText(f"Creating {name} in Ollama at {server.host}…")

        def done(_statuses: object) -> None:
            self.created = name
            self.create_button.setEnabled(True)
            self.status.setText(f"Created {name} in Ollama at {server.host} (listed back by the server). "
                                f"Try it: ollama run {name}")

        def failed(exc: BaseException) -> None:
            self.create_button.setEnabled(True)
            why = str(exc) if isinstance(exc, (OllamaUnavailable, OllamaError)) else f"{type(exc).__name__}: {exc}"
            self.status.setText(f"<span style='color:#D93B3B'>Not created: {why}</span>"
                                + (" The Modelfile is saved." if self._saved_path else ""))

        run_task(lambda: server.create(name, source, params, system), on_result=done, on_error=failed)

    def copy_command(self) -> str:
        """Put the ``ollama create`` command on the clipboard and return it."""
        cmd = self.command()
        QGuiApplication.clipboard().setText(cmd)
        return cmd

    # --- internals -----------------------------------------------------------------------------------

    @Slot()
    def _refresh(self) -> None:
        """Make the Modelfile text from the plan and sampling (core.modelfile does the writing)."""
        plan = self._plan
        settings = plan.settings if plan is not None else LoadSettings()
        gpu_layers = plan.gpu_layers if plan is not None else None
        headroom = plan.headroom if plan is not None else None
        model_path = plan.model.path if plan is not None else self._model_info.path
        messages = self._messages if self.include_messages.isChecked() else ()
        try:
            spec = spec_from(model_path, settings, gpu_layers, self._sampling, messages=messages,
                             headroom=headroom)
            self._text = export_modelfile(spec)
        except (ModelfileError, ValueError) as exc:
            self._text = ""
            self.preview.setPlainText("")
            self.status.setText(f"<span style='color:#D93B3B'>This setup can't be written as a Modelfile: "
                                f"{esc(exc)}</span>")
            self.save_button.setEnabled(False)
            self._update_command()
            return
        self.preview.setPlainText(self._text)
        self.save_button.setEnabled(True)
        self._update_command()

    @Slot()
    def _update_command(self) -> None:
        name = self.name()
        ok = valid_name(name)
        self.name_problem.setVisible(not ok)
        if not ok:
            self.name_problem.setText("Use letters, digits, “.”, “_” or “-” (and an optional “:tag”).")
        self.command_edit.setText(self.command())
        self.copy_button.setEnabled(ok and bool(self._text))
        self.create_button.setEnabled(ok and bool(self._text))
        if self._saved_path is None and self._text:
            self.status.setText("Save the Modelfile first; the command uses the path you save to.")

    @Slot()
    def _on_save_clicked(self) -> None:
        path, _filter = QFileDialog.getSaveFileName(self, "Save Modelfile", str(self.suggested_path()),
                                                    "Modelfile (*.Modelfile Modelfile);;All files (*)")
        if path:
            self.save_to(path)

    @Slot()
    def _on_copy_clicked(self) -> None:
        if self._saved_path is None:
            self._on_save_clicked()
            if self._saved_path is None:
                return
        cmd = self.copy_command()
        self.status.setText(f"Copied: {cmd}")
