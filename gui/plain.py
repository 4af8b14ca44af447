"""Text from outside LayerFit (a GGUF's metadata, a file name, a chat template, a server's reply, an error
that quotes any of those) reaches widgets as plain text only.

Qt guesses: a ``QLabel``, a tooltip or a ``QMessageBox`` shows a string as rich text when
``Qt::mightBeRichText`` finds a tag in it. A model whose architecture or name holds HTML could then
paint a fake "File OK" in green, or load a local image into the window. So:

- labels and message boxes that show outside text get ``Qt.TextFormat.PlainText`` (:func:`plain_label`);
- where LayerFit's own markup surrounds outside text, the outside part goes through :func:`esc`;
- tooltips can't be given a format, so :func:`tip` escapes the text and marks it as rich text (``<qt>``),
  which shows the escaped characters literally.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMessageBox


def esc(text: object) -> str:
    """Outside text, escaped for a place that shows LayerFit's own rich text around it."""
    return html.escape(str(text), quote=False)


def tip(text: str | None) -> str:
    """A tooltip that shows ``text`` exactly as written (line breaks kept), never as markup."""
    if not text:
        return ""
    return "<qt>" + esc(text).replace("\n", "<br>") + "</qt>"


def plain_label(label: QLabel) -> QLabel:
    """Make ``label`` show its text literally, whatever it holds."""
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


def plain_box(box: QMessageBox) -> QMessageBox:
    box.setTextFormat(Qt.TextFormat.PlainText)
    return box
