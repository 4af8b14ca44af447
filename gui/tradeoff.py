"""The trade-off view: context size (log axis) against the GPU memory it needs, with predicted speed.

One line is the GPU memory needed to keep *every* layer on the GPU at each context size; a dashed
line is what the card can give (free memory minus headroom). Where the first crosses the second,
layers start to spill to the CPU: that point is marked, and the region beyond is shaded. The
predicted tokens per second (right axis) shows what spilling costs. Painted with QPainter (no QtCharts).

The sweep (a plan per context size) runs off the GUI thread; results are tagged and stale ones dropped.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from core.tradeoff import TradeoffData, TradeoffPoint, Where, spill_context, spill_point, spill_words, sweep
from core.units import GiB
from gui import theme
from gui.plain import plain_label

__all__ = ["TradeoffChart", "TradeoffData", "TradeoffPoint", "TradeoffView", "spill_context", "sweep"]


class TradeoffChart(QWidget):
    """The chart itself; ``set_data(TradeoffData)``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.data: TradeoffData | None = None
        self.setMinimumSize(300, 220)

    def sizeHint(self) -> QSize:
        return QSize(640, 360)

    def set_data(self, data: TradeoffData | None) -> None:
        self.data = data
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: ARG002
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        fg = pal.color(QPalette.ColorRole.WindowText)
        grid_c = QColor(fg)
        grid_c.setAlphaF(0.12)
        mut = theme.muted(self)
        d = self.data
        if d is None or not d.points:
            p.setPen(mut)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Pick a model to see how context size trades "
                       "against GPU memory and speed.")
            return
        fm = p.fontMetrics()
        has_speed = any(pt.tok_s for pt in d.points)
        left, right = fm.horizontalAdvance("000.0 GiB") + 14, (fm.horizontalAdvance("0000 tok/s") + 14
                                                                if has_speed else 20)
        top, bottom = fm.height() * 2 + 10, fm.height() * 2 + 14
        plot = QRectF(left, top, max(10, self.width() - left - right), max(10, self.height() - top - bottom))

        xs = [pt.ctx for pt in d.points]
        lx0, lx1 = math.log2(min(xs)), math.log2(max(xs))
        lx1 = lx1 if lx1 > lx0 else lx0 + 1
        ymax_bytes = max(max(pt.need_gpu for pt in d.points), d.usable, 1) * 1.08
        gib_max = ymax_bytes / GiB
        step = _nice_step(gib_max / 5)

        def X(ctx: float) -> float:
            return plot.left() + (math.log2(ctx) - lx0) / (lx1 - lx0) * plot.width()

        def Y(nbytes: float) -> float:
            return plot.bottom() - nbytes / ymax_bytes * plot.height()

        # grid + left axis
        p.setFont(self.font())
        g = 0.0
        while g <= gib_max + 1e-9:
            y = Y(g * GiB)
            p.setPen(QPen(grid_c, 1))
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            p.setPen(mut)
            p.drawText(QRectF(0, y - fm.height() / 2, left - 6, fm.height()),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, f"{g:g} GiB")
            g += step
        for ctx in xs:
            if ctx & (ctx - 1):  # only label powers of two
                continue
            x = X(ctx)
            p.setPen(QPen(grid_c, 1))
            p.drawLine(QPointF(x, plot.top()), QPointF(x, plot.bottom()))
            p.setPen(mut)
            p.drawText(QRectF(x - 30, plot.bottom() + 4, 60, fm.height()), Qt.AlignmentFlag.AlignHCenter,
                       theme.tokens(ctx))
        p.drawText(QRectF(plot.left(), plot.bottom() + fm.height() + 6, plot.width(), fm.height()),
                   Qt.AlignmentFlag.AlignHCenter, "Context size (tokens, log scale)")

        # spill region
        first = spill_point(d.points) if d.usable > 0 else None
        spill = first.ctx if first is not None else None
        if first is not None and spill is not None:
            sx = X(spill)
            prev = [pt.ctx for pt in d.points if pt.ctx < spill]
            if prev:  # the crossing lies between the last fitting point and the first spilling one
                sx = (X(prev[-1]) + sx) / 2
            shade = QColor(theme.BAD)
            shade.setAlphaF(0.08)
            p.fillRect(QRectF(sx, plot.top(), plot.right() - sx, plot.height()), shade)
            p.setPen(QPen(theme.BAD, 1.5, Qt.PenStyle.DotLine))
            p.drawLine(QPointF(sx, plot.top()), QPointF(sx, plot.bottom()))
            p.setPen(theme.BAD)
            label = f"{spill_words(first)} from {theme.tokens(spill)}"
            w = fm.horizontalAdvance(label)
            lx = min(sx + 6, plot.right() - w - 4)
            p.drawText(QPointF(max(plot.left() + 4, lx), plot.top() + fm.ascent() + 2), label)

        # usable line
        if d.usable > 0:
            y = Y(d.usable)
            p.setPen(QPen(theme.GOOD, 2, Qt.PenStyle.DashLine))
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            p.setPen(theme.GOOD)
            p.drawText(QPointF(plot.left() + 6, y - 4), f"usable on {d.card}: {theme.gib(d.usable)}")

        # need line (all layers on GPU)
        path = QPainterPath()
        for i, pt in enumerate(d.points):
            pos = QPointF(X(pt.ctx), Y(pt.need_gpu))
            path.moveTo(pos) if i == 0 else path.lineTo(pos)
        p.setPen(QPen(theme.WEIGHTS, 2.5))
        p.drawPath(path)
        for pt in d.points:
            col = theme.WEIGHTS if pt.where is Where.GPU else theme.BAD
            p.setBrush(col)
            p.setPen(Qt.PenStyle.NoPen)
            p.drawEllipse(QPointF(X(pt.ctx), Y(pt.need_gpu)), 3.5, 3.5)

        # speed series, right axis
        if has_speed:
            smax = max(pt.tok_s or 0 for pt in d.points) * 1.15

            def YS(v: float) -> float:
                return plot.bottom() - v / smax * plot.height()

            sstep = _nice_step(smax / 5)
            v = 0.0
            p.setPen(theme.SPEED)
            while v <= smax + 1e-9:
                p.drawText(QRectF(plot.right() + 6, YS(v) - fm.height() / 2, right - 6, fm.height()),
                           Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, f"{v:g}")
                v += sstep
            spath = QPainterPath()
            start = True
            for pt in d.points:
                if not pt.tok_s:
                    continue
                pos = QPointF(X(pt.ctx), YS(pt.tok_s))
                spath.moveTo(pos) if start else spath.lineTo(pos)
                start = False
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.setPen(QPen(theme.SPEED, 2, Qt.PenStyle.SolidLine))
            p.drawPath(spath)

        # current context marker
        if d.current_ctx >= min(xs):
            cx = X(d.current_ctx)
            p.setPen(QPen(fg, 1, Qt.PenStyle.DashDotLine))
            p.drawLine(QPointF(cx, plot.top()), QPointF(cx, plot.bottom()))
            p.setPen(fg)
            p.drawText(QPointF(min(cx + 4, plot.right() - fm.horizontalAdvance("now") - 2), plot.bottom() - 4), "now")

        # frame + legend
        p.setPen(QPen(grid_c, 1))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(plot)
        bold = QFont(self.font())
        bold.setBold(True)
        p.setFont(bold)
        x = plot.left()
        y = fm.height() + 2
        for colour, text in ((theme.WEIGHTS, "GPU memory for 100% GPU (all layers and experts)"), (theme.GOOD, "usable"),
                             *(((theme.SPEED, "predicted tok/s (right axis)"),) if has_speed else ())):
            p.fillRect(QRectF(x, y - fm.ascent() + 2, 14, fm.ascent() - 4), colour)
            p.setPen(fg)
            p.drawText(QPointF(x + 18, y), text)
            x += 18 + p.fontMetrics().horizontalAdvance(text) + 18


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``raw``."""
    if raw <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


class TradeoffView(QWidget):
    """The chart plus a one-line reading of it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.chart = TradeoffChart()
        self.caption = plain_label(QLabel(""))  # names a card (NVML's or a preset's): never markup
        self.caption.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addWidget(self.chart, 1)
        lay.addWidget(self.caption)

    def set_data(self, data: TradeoffData | None) -> None:
        self.chart.set_data(data)
        if data is None or not data.points:
            self.caption.setText("")
            return
        first = spill_point(data.points)
        if data.usable <= 0:
            self.caption.setText("No NVIDIA GPU here: the blue line is what a card would need. Pick a what-if "
                                 "card under “Plan for” to see where layers would spill.")
        elif first is None:
            self.caption.setText(f"Every charted context size fits entirely on {data.card}.")
        else:
            fitting = [pt.ctx for pt in data.points if pt.where is Where.GPU]
            best = f"Up to {theme.tokens(fitting[-1])} tokens stays 100% on the GPU; " if fitting else \
                "Even the smallest context doesn't fit entirely on the GPU; "
            then = ("the MoE expert weights move to RAM (every layer stays on the GPU) and generation slows "
                    "down." if first.where is Where.EXPERTS else "layers move to the CPU and generation slows down.")
            self.caption.setText(best + f"from {theme.tokens(first.ctx)} " + then)
