"""A delegate that draws the transcript as chat bubbles: the user's on the right, replies on the left.

Text is laid out with a ``QTextDocument`` (wrap at word boundaries, or anywhere for long URLs) and the
layouts are cached by (text, width), because a view asks for every row's size hint on each relayout and
the streaming row changes ~15 times a second.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, QRectF, QSize, Qt
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QColor,
    QFont,
    QFontDatabase,
    QPainter,
    QPalette,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextFormat,
    QTextOption,
)
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from gui.chat_model import TranscriptRole, stats_text

_Index = QModelIndex | QPersistentModelIndex

MARGIN = 10  # around each row
PAD_X, PAD_Y = 12, 8  # inside a bubble
RADIUS = 10.0
MAX_FRACTION = 0.82  # a bubble takes at most this share of the view's width
HEADER_GAP = 3
CACHE_SIZE = 512
#: A bubble shows at most this many characters; the rest is summarised in a line (Copy still copies all).
#: Qt lays out a long unbroken line in quadratic time: a 1 MB message without spaces took over 120 s.
SHOWN_CHARS = 20_000
#: A run this long without a space is wrapped anywhere (word-boundary search on it is the slow path).
LONG_RUN = re.compile(r"\S{200}")


def shown_text(text: str) -> str:
    """What a bubble shows of ``text``: all of it, or its start and a line saying how much is left out."""
    if len(text) <= SHOWN_CHARS:
        return text
    rest = len(text) - SHOWN_CHARS
    return (text[:SHOWN_CHARS] + f"\n\n[… {rest:,} more characters not shown here. Right-click → Show whole "
                                 "message, or Copy message.]")
MARKDOWN = QTextDocument.MarkdownFeature(QTextDocument.MarkdownFeature.MarkdownDialectGitHub.value
                                         | QTextDocument.MarkdownFeature.MarkdownNoHTML.value)


#: A block format property that marks a code block (after ``_style_code``).
CODE_BLOCK = QTextFormat.Property.UserProperty + 1


def _has_code(doc: QTextDocument) -> bool:
    block = doc.begin()
    while block.isValid():
        if block.blockFormat().property(CODE_BLOCK):
            return True
        block = block.next()
    return False


def _style_code(doc: QTextDocument) -> None:
    """Code blocks in a monospace font on a faint background. Qt's Markdown reader marks them as
    non-breakable lines; here they may wrap (a long command must not run out of its bubble)."""
    mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    block = doc.begin()
    while block.isValid():
        fmt = block.blockFormat()
        if fmt.nonBreakableLines():
            cursor = QTextCursor(block)
            bf = QTextBlockFormat(fmt)
            bf.setBackground(QColor(128, 128, 128, 40))
            bf.setNonBreakableLines(False)
            bf.setProperty(CODE_BLOCK, True)
            cursor.setBlockFormat(bf)
            cursor.select(QTextCursor.SelectionType.BlockUnderCursor)
            cf = QTextCharFormat()
            cf.setFontFamilies(mono.families())
            cursor.mergeCharFormat(cf)
        block = block.next()


class BubbleDelegate(QStyledItemDelegate):
    """Paints one message as a rounded bubble with a small header ("You", "Assistant") and, under a
    finished reply, its numbers (tokens, tok/s, time to first token)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._docs: OrderedDict[tuple[str, int, str], QTextDocument] = OrderedDict()

    # --- layout --------------------------------------------------------------------------------------

    def _doc(self, text: str, width: int, font: QFont, markdown: bool = False) -> QTextDocument:
        key = (text, width, font.key() + ("|md" if markdown else ""))
        doc = self._docs.get(key)
        if doc is not None:
            self._docs.move_to_end(key)
            return doc
        doc = QTextDocument()
        doc.setDocumentMargin(0)
        doc.setDefaultFont(font)
        opt = QTextOption()
        opt.setWrapMode(QTextOption.WrapMode.WrapAnywhere if LONG_RUN.search(text) else
                        QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        doc.setDefaultTextOption(opt)
        if markdown:
            # Replies are Markdown (headings, lists, code blocks); raw HTML in them stays text.
            doc.setMarkdown(text, MARKDOWN)
            _style_code(doc)
        else:
            doc.setPlainText(text)
        doc.setTextWidth(width)
        self._docs[key] = doc
        if len(self._docs) > CACHE_SIZE:
            self._docs.popitem(last=False)
        return doc

    @staticmethod
    def _small(font: QFont) -> QFont:
        f = QFont(font)
        f.setPointSizeF(max(6.0, font.pointSizeF() * 0.85))
        return f

    @staticmethod
    def _is_markdown(index: _Index) -> bool:
        return str(index.data(TranscriptRole.ROLE) or "") == "assistant"

    def _parts(self, option: QStyleOptionViewItem, index: _Index) -> tuple[str, str, str, bool]:
        role = str(index.data(TranscriptRole.ROLE) or "")
        text = shown_text(str(index.data(TranscriptRole.CONTENT) or ""))
        streaming = bool(index.data(TranscriptRole.STREAMING))
        stats = index.data(TranscriptRole.STATS) or {}
        if streaming and not text:
            text = "…"
        footer = "" if streaming else stats_text(stats)
        header = {"user": "You", "assistant": "Assistant", "system": "System"}.get(role, role)
        if streaming:
            header += "  ·  writing…"
        return header, text, footer, role == "user"

    def _text_width(self, option: QStyleOptionViewItem) -> int:
        avail = option.rect.width() if option.rect.width() > 0 else 600
        return max(80, int(avail * MAX_FRACTION) - 2 * PAD_X - 2 * MARGIN)

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        header, text, footer, _ = self._parts(option, index)
        width = self._text_width(option)
        doc = self._doc(text, width, option.font, self._is_markdown(index))
        small = option.fontMetrics.height() * 0.85
        h = MARGIN + small + HEADER_GAP + PAD_Y * 2 + doc.size().height() + MARGIN
        if footer:
            h += HEADER_GAP + small
        return QSize(option.rect.width() if option.rect.width() > 0 else width, int(h + 0.5))

    # --- painting ------------------------------------------------------------------------------------

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        header, text, footer, mine = self._parts(option, index)
        width = self._text_width(option)
        doc = self._doc(text, width, option.font, self._is_markdown(index))
        # a code block's shading spans the text width: the bubble does too, so the shading stays inside
        bubble_w = (width if _has_code(doc) else min(width, int(doc.idealWidth() + 1))) + 2 * PAD_X
        bubble_w = max(bubble_w, 48)
        bubble_h = doc.size().height() + 2 * PAD_Y
        small = self._small(option.font)
        small_h = option.fontMetrics.height() * 0.85
        rect = option.rect
        left = rect.right() - MARGIN - bubble_w if mine else rect.left() + MARGIN
        top = rect.top() + MARGIN
        pal: QPalette = option.palette
        muted = QColor(pal.color(QPalette.ColorRole.Text))
        muted.setAlphaF(0.6)

        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)

        # header
        painter.setFont(small)
        painter.setPen(muted)
        align = Qt.AlignmentFlag.AlignRight if mine else Qt.AlignmentFlag.AlignLeft
        head_rect = QRectF(rect.left() + MARGIN, top, rect.width() - 2 * MARGIN, small_h)
        painter.drawText(head_rect, int(align | Qt.AlignmentFlag.AlignVCenter), header)

        # bubble
        bubble = QRectF(left, top + small_h + HEADER_GAP, bubble_w, bubble_h)
        base = pal.color(QPalette.ColorRole.Base)
        dark = base.lightness() < 128
        if mine:
            fill = QColor(pal.color(QPalette.ColorRole.Highlight))
            fill.setAlphaF(0.32 if dark else 0.18)
        else:
            fill = QColor(pal.color(QPalette.ColorRole.Text))
            fill.setAlphaF(0.10 if dark else 0.06)
        if option.state & QStyle.StateFlag.State_Selected:
            border = QColor(pal.color(QPalette.ColorRole.Highlight))
        else:
            border = QColor(pal.color(QPalette.ColorRole.Text))
            border.setAlphaF(0.12)
        painter.setPen(border)
        painter.setBrush(fill)
        painter.drawRoundedRect(bubble, RADIUS, RADIUS)

        # text
        painter.translate(bubble.left() + PAD_X, bubble.top() + PAD_Y)
        ctx = QAbstractTextDocumentLayout.PaintContext()
        ctx.palette.setColor(QPalette.ColorRole.Text, pal.color(QPalette.ColorRole.Text))
        if text == "…" and not index.data(TranscriptRole.CONTENT):
            ctx.palette.setColor(QPalette.ColorRole.Text, muted)
        doc.documentLayout().draw(painter, ctx)
        painter.translate(-(bubble.left() + PAD_X), -(bubble.top() + PAD_Y))

        # footer: the reply's numbers
        if footer:
            painter.setFont(small)
            painter.setPen(muted)
            foot = QRectF(rect.left() + MARGIN, bubble.bottom() + HEADER_GAP, rect.width() - 2 * MARGIN, small_h)
            painter.drawText(foot, int(align | Qt.AlignmentFlag.AlignVCenter), footer)
        painter.restore()
