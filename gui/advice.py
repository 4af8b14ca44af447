"""Why and what-if: the plan's reasons in plain words, and its suggestions as buttons.

A suggestion button carries a complete ``LoadSettings``; clicking it emits ``suggestion_chosen`` and the
main window applies those settings (the plan, the meter and this panel then follow). After a load,
the fallback steps the engine took are listed here too, so the user sees what the ladder did.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from core.fit import Plan, Suggestion
from gui import theme


class WrapButton(QPushButton):
    """A push button whose text wraps onto several lines (QPushButton never wraps, so a long
    suggestion would force the whole middle column wider than the window)."""

    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel(text, self)
        self.label.setWordWrap(True)
        self.label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 5, 10, 5)
        self._margins = lay.contentsMargins()
        lay.addWidget(self.label)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)

    def text(self) -> str:  # type: ignore[override]
        return self.label.text()

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        m = self._margins
        return self.label.heightForWidth(width - m.left() - m.right()) + m.top() + m.bottom()

    def sizeHint(self) -> QSize:
        m = self._margins
        w = min(self.label.sizeHint().width(), 480) + m.left() + m.right()
        return QSize(w, self.heightForWidth(w))

    def minimumSizeHint(self) -> QSize:
        return QSize(120, self.heightForWidth(max(self.width(), 120)))


class AdvicePanel(QGroupBox):
    """Reasons + suggestion buttons (+ fallback steps after a load)."""

    suggestion_chosen = Signal(object)  # Suggestion

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Why, and what if", parent)
        self.reasons = QLabel("")
        self.reasons.setWordWrap(True)
        self.reasons.setTextFormat(Qt.TextFormat.RichText)
        self.fallbacks = QLabel("")
        self.fallbacks.setWordWrap(True)
        self.fallbacks.setVisible(False)
        self._buttons_host = QWidget()
        self._buttons_host.setStyleSheet("QPushButton#suggestion { text-align: left; padding: 4px 10px; }")
        self._buttons_layout = QVBoxLayout(self._buttons_host)
        self._buttons_layout.setContentsMargins(0, 0, 0, 0)
        self._buttons_layout.setSpacing(4)
        self.buttons: list[QPushButton] = []
        self.suggestions: tuple[Suggestion, ...] = ()
        lay = QVBoxLayout(self)
        lay.setSpacing(6)
        lay.addWidget(self.reasons)
        lay.addWidget(self._buttons_host)
        lay.addWidget(self.fallbacks)
        self.clear()

    def clear(self) -> None:
        self.reasons.setText("<i>Reasons and suggestions appear here once a model is picked.</i>")
        self._set_buttons(())
        self.set_fallbacks(())

    def set_plan(self, plan: Plan) -> None:
        """Show ``plan``'s reasons and suggestions (widgets are only rebuilt when the words change, so a
        dragged slider stays smooth)."""
        if plan.reasons:
            items = "".join(f"<li>{html.escape(r)}</li>" for r in plan.reasons)
            text = f"<ul style='margin-left:-20px'>{items}</ul>"
        else:
            text = "Nothing to explain: the defaults fit."
        if text != self.reasons.text():
            self.reasons.setText(text)
        if [(s.text, s.speed_effect()) for s in plan.suggestions] == \
                [(s.text, s.speed_effect()) for s in self.suggestions] and self.buttons:
            self.suggestions = tuple(plan.suggestions)  # same words: keep the buttons, refresh the payload
            for b, s in zip(self.buttons, self.suggestions, strict=True):
                b.setToolTip(self._tip(s))
        else:
            self._set_buttons(plan.suggestions)

    def set_fallbacks(self, steps: Sequence[object]) -> None:
        """The fallback ladder's steps (core.engine.Fallback: step, reason, processor), or none."""
        if not steps:
            self.fallbacks.setVisible(False)
            self.fallbacks.setText("")
            return
        rows = "".join(
            f"<li><b>{html.escape(str(getattr(s, 'step', '')))}</b>: {html.escape(str(getattr(s, 'reason', '')))}"
            f" → {html.escape(str(getattr(s, 'processor', '')))}</li>" for s in steps)
        self.fallbacks.setText(f"<span style='color:{theme.PARTIAL.name()}'><b>The load did not go as "
                               f"planned; LayerFit stepped down:</b></span><ol>{rows}</ol>")
        self.fallbacks.setVisible(True)

    def _set_buttons(self, suggestions: Sequence[Suggestion]) -> None:
        for b in self.buttons:
            b.setParent(None)
            b.deleteLater()
        self.buttons = []
        self.suggestions = tuple(suggestions)
        for i, s in enumerate(self.suggestions):
            speed = s.speed_effect()
            b = WrapButton(f"→  {s.text}" + (f" ({speed})" if speed else ""))
            b.setObjectName("suggestion")
            b.setToolTip(self._tip(s))
            b.clicked.connect(lambda _checked=False, i=i: self._chosen(i))
            self._buttons_layout.addWidget(b)
            self.buttons.append(b)
        self._buttons_host.setVisible(bool(self.buttons))

    def _chosen(self, i: int) -> None:
        if 0 <= i < len(self.suggestions):
            self.suggestion_chosen.emit(self.suggestions[i])

    @staticmethod
    def _tip(s: Suggestion) -> str:
        names = ", ".join(f"{k} = {'Auto' if v is None else v}" for k, v in s.changes)
        tip = f"Apply: {s.text}. Changes only {names or 'these settings'}. Result: {s.processor}, " \
              f"{s.gpu_layers} layers on the GPU"
        if s.speed_effect():
            tip += f", {s.speed_effect()} predicted"
        if s.saves:
            tip += f", saves {theme.gib(s.saves)} of GPU memory"
        return tip
