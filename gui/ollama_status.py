"""One line under the model's facts: where a running Ollama put the selected Ollama model, beside
LayerFit's plan (core.ollama_compare), or why that can't be said (not loaded, Ollama not running).

The question goes to Ollama off the GUI thread with a short time-out; a stale answer (the user picked
another model meanwhile) is dropped.
"""

from __future__ import annotations

import html

from PySide6.QtWidgets import QLabel, QWidget

from core.hardware import Hardware
from core.ollama import OllamaModel, OllamaStore
from gui import theme
from gui.workers import run_task

TIMEOUT = 3.0  # seconds: a local Ollama answers /api/ps at once


def ps_line(model: OllamaModel, hardware: Hardware, real_machine: bool, headroom: int) -> str:
    """The comparison for ``model`` (worker thread). Raises OllamaUnavailable / OllamaError."""
    from core.ollama_client import OllamaServer, names_match
    from core.ollama_compare import compare, hardware_for_ps

    server = OllamaServer(timeout=TIMEOUT)
    running = server.ps()
    mine = [r for r in running if names_match(r.name, [model.name])]
    if not mine:
        loaded = ", ".join(r.name for r in running) or "nothing"
        return f"Ollama at {server.host} has not loaded {model.name} now (loaded: {loaded})."
    hw = hardware_for_ps(hardware, running) if real_machine else hardware
    return compare(mine, OllamaStore((), (model,)), hw, headroom)[0].text


class OllamaStatusLine(QLabel):
    """Shows ``ps_line`` for the selected Ollama model; hidden for a plain GGUF."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setStyleSheet(f"color:{theme.muted_css(self)};")
        self.setAccessibleName("Ollama placement")
        self._gen = 0
        self._args: tuple[OllamaModel, Hardware, bool, int] | None = None
        self.linkActivated.connect(lambda _link: self.refresh())
        self.hide()

    def check(self, model: OllamaModel | None, hardware: Hardware, real_machine: bool, headroom: int) -> None:
        """Ask Ollama about ``model`` (None hides the line)."""
        self._gen += 1
        if model is None:
            self._args = None
            self.hide()
            return
        self._args = (model, hardware, real_machine, headroom)
        self.refresh()

    def refresh(self) -> None:
        if self._args is None:
            return
        self._gen += 1
        gen, args = self._gen, self._args
        self.setText(f"Asking Ollama where it put {args[0].name}…")
        self.show()
        run_task(lambda: ps_line(*args), on_result=lambda text: self._show(gen, str(text)),
                 on_error=lambda exc: self._show(gen, str(exc)))

    def _show(self, gen: int, text: str) -> None:
        if gen != self._gen:
            return  # another model was picked meanwhile
        self.setText(f"{html.escape(text)} <a href='refresh'>Ask again</a>")
