"""Export the tuned setup as an Ollama Modelfile: a preview, Save… (atomic), and a copyable
``ollama create NAME -f PATH`` command.

What is written is decided by ``core.export.spec_for_plan`` (the same code as ``layerfit modelfile``), so
the dialog and the CLI can never disagree. The dialog shows the decisions in words ("num_gpu left out:
…"), warns when the plan doesn't fit, and offers "let Ollama decide" for ``num_gpu``.
"""

from __future__ import annotations

import os
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
from core.export import NAME_RULE, default_name, ollama_default_name, spec_for_plan, valid_name
from core.fit import make_plan
from core.hardware import Hardware
from core.loadsettings import LoadSettings
from core.modelfile import ModelfileError, export_modelfile
from core.sampling import SamplingSettings
from gui import dialog_dirs
from gui.notify import notifier
from gui.plain import esc

if TYPE_CHECKING:
    from core.fit import Plan
    from core.gguf_info import ModelInfo

__all__ = ["ExportDialog", "create_command", "default_name", "ollama_default_name", "shell_quote", "valid_name"]


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
                 ollama_source: str | None = None, requested: LoadSettings | None = None,
                 extra_notes: Iterable[str] = ()) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export Ollama Modelfile")
        self.setModal(True)
        self.resize(720, 620)
        self._model_info = model_info
        if plan is None:  # nothing planned yet: the defaults, planned for no particular GPU
            plan = make_plan(model_info, requested or LoadSettings(), Hardware(), suggest=False)
        self._plan = plan
        self._requested = requested
        self._extra_notes = tuple(extra_notes)
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
        self.ollama_decides = QCheckBox("Let Ollama decide the GPU layers (leave num_gpu out)")
        self.ollama_decides.setToolTip("Off: num_gpu is the layer count LayerFit planned for this machine (or your "
                                       "fixed count). On: Ollama makes its own estimate.")
        self.decisions = QLabel()
        self.decisions.setWordWrap(True)
        self.decisions.setTextFormat(Qt.TextFormat.PlainText)
        self.decisions.setAccessibleName("What the Modelfile says, and why")

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
        layout.addWidget(self.ollama_decides)
        layout.addWidget(self.decisions)
        layout.addWidget(QLabel("Preview"))
        layout.addWidget(self.preview, 1)
        layout.addWidget(QLabel("Then run"))
        layout.addWidget(self.command_edit)
        layout.addWidget(self.status)
        layout.addWidget(buttons)

        self.name_edit.textChanged.connect(self._update_command)
        self.include_messages.toggled.connect(self._refresh)
        self.ollama_decides.toggled.connect(self._refresh)
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
        folder = self._saved_path.parent if self._saved_path else Path(dialog_dirs.last_dir())
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
        dialog_dirs.remember(target)
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
        messages = self._messages if self.include_messages.isChecked() else ()
        try:
            out = spec_for_plan(self._plan, self._sampling, requested=self._requested,
                                let_ollama_decide=self.ollama_decides.isChecked(), messages=messages,
                                extra_notes=self._extra_notes)
            self._text = export_modelfile(out.spec)
        except (ModelfileError, ValueError) as exc:
            self._text = ""
            self.preview.setPlainText("")
            self.decisions.setText("")
            self.status.setText(f"<span style='color:#D93B3B'>This setup can't be written as a Modelfile: "
                                f"{esc(exc)}</span>")
            self.save_button.setEnabled(False)
            self._update_command()
            return
        self.notes = out.notes
        self.fits = out.fits
        self.decisions.setText("\n".join(f"• {n}" for n in out.notes[1:]))
        self.decisions.setStyleSheet("" if out.fits else "color: #D93B3B;")
        self.preview.setPlainText(self._text)
        self.save_button.setEnabled(True)
        self._update_command()

    @Slot()
    def _update_command(self) -> None:
        name = self.name()
        ok = valid_name(name)
        self.name_problem.setVisible(not ok)
        if not ok:
            self.name_problem.setText(NAME_RULE)
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
