"""The selected model's name and facts above the load settings, and where a running Ollama put it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from core.gguf_info import ModelInfo
from core.ollama import OllamaModel
from gui import theme
from gui.ollama_status import OllamaStatusLine
from gui.plain import esc, plain_label, tip


class ModelHeader(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = plain_label(QLabel(""))  # a file or model name: never markup
        self.title.setObjectName("modelTitle")
        self.title.setWordWrap(True)
        f = self.title.font()
        f.setPointSizeF(f.pointSizeF() * 1.25)
        f.setBold(True)
        self.title.setFont(f)
        self.facts = QLabel("")
        self.facts.setTextFormat(Qt.TextFormat.RichText)  # our markup; outside text escaped (esc)
        self.facts.setWordWrap(True)
        self.facts.setStyleSheet("color: palette(placeholder-text);")  # follows a light/dark switch
        self.ollama_line = OllamaStatusLine()  # where a running Ollama put the selected Ollama model
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.title, self.facts, self.ollama_line):
            lay.addWidget(w)

    def show_model(self, info: ModelInfo, om: OllamaModel | None) -> str:
        """Show ``info`` (an Ollama model by its name); returns the name shown."""
        name = om.name if om is not None else Path(info.path).stem
        self.title.setText(name)
        self.title.setToolTip(tip(f"name in the file: {info.name}") if info.name else "")
        facts = [info.arch, f"{theme.params(info.n_params)} parameters" if info.n_params else "",
                 info.file_type, theme.gib(info.file_size), f"{info.n_layer} layers",
                 f"trained context {theme.tokens(info.n_ctx_train)}" if info.n_ctx_train else "",
                 f"MoE {info.n_expert_used}/{info.n_expert} experts" if info.n_expert else "",
                 f"sliding window {info.sliding_window:,}" if info.sliding_window else ""]
        if om is not None:
            facts.insert(0, "Ollama model" + (f" (same blob as {', '.join(om.shared_with)})" if om.shared_with
                                              else ""))
        self.facts.setText(esc(" · ".join(x for x in facts if x)))
        return om.name if om is not None else Path(info.path).name

    def show_problem(self, name: str, error: str) -> None:
        self.title.setText(name)
        self.facts.setText(f"<span style='color:{theme.BAD.name()}'>Can't use this file: {esc(error)}</span>")
