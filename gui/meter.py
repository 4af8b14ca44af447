"""The placement meter: where the model's bytes will live (or, after a load, where they are).

Two bars, one for the GPU against the card's memory and one for RAM, each split into weights, KV
cache, compute buffers and overhead. Memory other programs already use is drawn grey, and the
"usable" line (free memory minus the headroom the user keeps) is marked, so a glance says whether it
fits. Above them: the Ollama-style processor line and the layers on the GPU.

The widget only renders a ``MeterState``; the numbers come from a ``Plan`` or a measured
``Placement``. Tests read ``MeterWidget.state`` instead of pixels.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from core.fit import Plan
from core.placement import DeviceMemory, HostMemory, Placement
from core.session import placement_extras
from gui import theme
from gui.plain import esc


@dataclass(frozen=True)
class MeterState:
    """Everything the meter shows, in bytes. ``source`` is "plan" or "measured"."""

    source: str
    gpu: DeviceMemory
    host: HostMemory
    gpu_name: str | None
    gpu_capacity: int  # the card's memory (0 = no GPU)
    gpu_free: int  # free before loading
    headroom: int
    ram_capacity: int
    ram_available: int
    gpu_layers: int
    n_layers: int  # blocks + the output layer
    processor: str
    fits: bool
    fits_gpu: bool
    diff_gpu: int | None = None  # measured − planned, after a load
    diff_host: int | None = None
    extras: str = ""  # what else is in RAM: "MoE expert weights in RAM" (core.session.placement_extras)
    warning: str = ""  # "not verified for <arch>: numbers may be off" (core.archs)

    @property
    def gpu_usable(self) -> int:
        """What the plan may use on the GPU: free memory minus the headroom."""
        return max(0, self.gpu_free - self.headroom)

    @classmethod
    def from_plan(cls, plan: Plan) -> MeterState:
        gpu = plan.hardware.gpu
        return cls(
            source="plan", gpu=plan.gpu, host=plan.host,
            gpu_name=gpu.name if gpu else None,
            gpu_capacity=gpu.total if gpu else 0, gpu_free=gpu.free if gpu else 0,
            headroom=plan.headroom,
            ram_capacity=plan.hardware.ram_total, ram_available=plan.hardware.ram_available,
            gpu_layers=plan.gpu_layers, n_layers=plan.model.n_layer + 1,
            processor=plan.processor, fits=plan.fits, fits_gpu=plan.fits_gpu, extras=placement_extras(plan),
            warning="; ".join(plan.warnings),
        )

    @classmethod
    def from_measured(cls, placement: Placement, plan: Plan) -> MeterState:
        """The measured placement, with the difference from the plan it was loaded with."""
        base = cls.from_plan(plan)
        gpu = plan.hardware.gpu
        return cls(
            source="measured", gpu=placement.gpu, host=placement.host,
            gpu_name=placement.gpu_name or base.gpu_name,
            gpu_capacity=base.gpu_capacity, gpu_free=base.gpu_free, headroom=base.headroom,
            ram_capacity=base.ram_capacity, ram_available=base.ram_available,
            gpu_layers=placement.gpu_layers, n_layers=plan.model.n_layer + 1,
            processor=placement.processor, fits=True,
            fits_gpu=placement.gpu_layers >= plan.model.n_layer + 1 and gpu is not None,
            diff_gpu=placement.gpu.total - plan.gpu.total,
            diff_host=placement.host.total - plan.host.total, extras=placement_extras(plan),
        )


class BarWidget(QWidget):
    """One horizontal memory bar: coloured segments, other programs' memory in grey, a usable-line mark.

    The scale is the device's capacity, or the demand when it is larger (then the capacity is a red line).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._segments: list[tuple[int, QColor]] = []
        self._capacity = 0
        self._others = 0
        self._limit: int | None = None
        self._over = False
        self._empty_text = ""
        self.setMinimumHeight(26)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(360, 28)

    def set_data(self, segments: list[tuple[int, QColor]], capacity: int, others: int = 0,
                 limit: int | None = None, over: bool = False, empty_text: str = "") -> None:
        """``limit``: the usable-line position in bytes from the left (others + usable)."""
        self._segments = segments
        self._capacity = capacity
        self._others = others
        self._limit = limit
        self._over = over
        self._empty_text = empty_text
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: ARG002 - Qt signature
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = QRectF(self.rect()).adjusted(1, 3, -1, -3)
        pal = self.palette()
        track = QColor(pal.color(QPalette.ColorRole.Base))
        border = QColor(pal.color(QPalette.ColorRole.Mid))
        clip = QPainterPath()
        clip.addRoundedRect(r, 5, 5)
        p.fillPath(clip, track)
        if self._capacity <= 0 and not any(b for b, _ in self._segments):
            p.setPen(theme.muted(self))
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, self._empty_text)
            p.setPen(QPen(border, 1))
            p.drawPath(clip)
            return
        demand = self._others + sum(b for b, _ in self._segments)
        scale_bytes = max(self._capacity, demand, 1)
        px = r.width() / scale_bytes
        p.save()
        p.setClipPath(clip)
        x = r.left()
        if self._others > 0:
            w = self._others * px
            p.fillRect(QRectF(x, r.top(), w, r.height()), theme.OTHERS)
            p.fillRect(QRectF(x, r.top(), w, r.height()), QColor(128, 128, 128, 60))
            x += w
        for nbytes, colour in self._segments:
            if nbytes <= 0:
                continue
            w = nbytes * px
            p.fillRect(QRectF(x, r.top(), w, r.height()), colour)
            p.setPen(QPen(track, 1))
            p.drawLine(QPointF(x + w, r.top()), QPointF(x + w, r.bottom()))
            x += w
        if demand > self._capacity > 0:  # the part that doesn't fit: hatched red
            cx = r.left() + self._capacity * px
            p.fillRect(QRectF(cx, r.top(), r.right() - cx, r.height()),
                       QColor(theme.BAD.red(), theme.BAD.green(), theme.BAD.blue(), 90))
        p.restore()
        if self._limit is not None and 0 < self._limit < scale_bytes:
            lx = r.left() + self._limit * px
            p.setPen(QPen(pal.color(QPalette.ColorRole.WindowText), 2, Qt.PenStyle.DashLine))
            p.drawLine(QPointF(lx, r.top() - 2), QPointF(lx, r.bottom() + 2))
        if demand > self._capacity > 0:
            cx = r.left() + self._capacity * px
            p.setPen(QPen(theme.BAD, 3))
            p.drawLine(QPointF(cx, r.top() - 3), QPointF(cx, r.bottom() + 3))
        p.setPen(QPen(theme.BAD if self._over else border, 2 if self._over else 1))
        p.drawPath(clip)


class MeterWidget(QFrame):
    """The placement meter (see the module docstring). ``set_plan`` / ``set_measured`` / ``clear``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("meter")
        self.state: MeterState | None = None
        self._processor_colour: QColor | None = None
        self._shown_source: str | None = None

        self.processor = QLabel("—")
        f = QFont(self.font())
        f.setPointSizeF(f.pointSizeF() * 1.6)
        f.setBold(True)
        self.processor.setFont(f)
        self.processor.setWordWrap(True)  # "74%/26% CPU/GPU — won't fit" may wrap in a narrow column
        self.processor.setToolTip("Share of the model's memory in RAM (CPU) and VRAM (GPU), as `ollama ps` "
                                  "prints it in its PROCESSOR column.")
        self.layers = QLabel("")
        self.layers.setToolTip("Transformer blocks on the GPU, plus the output layer (it counts as one, as in "
                               "llama.cpp's n_gpu_layers). Blocks are offloaded from the back.")
        self.source = QLabel("")
        self.source.setObjectName("meterSource")
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)

        head = QHBoxLayout()
        head.addWidget(self.processor)
        head.addSpacing(12)
        head.addWidget(self.layers)
        head.addStretch(1)
        head.addWidget(self.source)

        self.gpu_title = QLabel("<b>GPU</b>")
        self.gpu_bar = BarWidget()
        self.gpu_bar.setToolTip("GPU memory: grey = used by other programs, colours = this model, dashed "
                                "line = the usable limit (free memory minus the headroom you keep).")
        self.gpu_text = QLabel("")
        self.ram_title = QLabel("<b>RAM</b>")
        self.ram_bar = BarWidget()
        self.ram_bar.setToolTip("System RAM: grey = used by other programs, colours = this model.")
        self.ram_text = QLabel("")
        for t in (self.gpu_text, self.ram_text):
            t.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            t.setWordWrap(True)

        grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        grid.addWidget(self.gpu_title, 0, 0)
        grid.addWidget(self.gpu_bar, 0, 1)
        grid.addWidget(self.gpu_text, 1, 1)
        grid.addWidget(self.ram_title, 2, 0)
        grid.addWidget(self.ram_bar, 2, 1)
        grid.addWidget(self.ram_text, 3, 1)
        grid.setColumnStretch(1, 1)

        self.legend = QGridLayout()
        self.legend.setHorizontalSpacing(28)
        self.legend.setVerticalSpacing(4)
        self._legend_values: dict[str, QLabel] = {}
        self._legend_names: dict[str, list[QWidget]] = {}
        for col, (key, label, colour) in enumerate(theme.SEGMENTS):
            sw = QLabel()
            sw.setFixedSize(11, 11)
            sw.setStyleSheet(f"background:{colour.name()}; border-radius:2px;")
            name = QLabel(label)
            val = QLabel("")
            val.setObjectName("legendValue")
            self._legend_values[key] = val
            self._legend_names[key] = [sw, name, val]
            box = QHBoxLayout()
            box.setSpacing(5)
            box.addWidget(sw)
            box.addWidget(name)
            cell = QVBoxLayout()
            cell.setSpacing(0)
            cell.addLayout(box)
            val.setContentsMargins(16, 0, 0, 0)
            cell.addWidget(val)
            self.legend.addLayout(cell, col // 2, col % 2)
        self.legend.setColumnStretch(2, 1)

        self.diff = QLabel("")
        self.diff.setWordWrap(True)

        from gui.devices_view import DeviceBars  # one bar per device, for splits over several devices

        self.devices = DeviceBars()

        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 10, 12, 10)
        lay.setSpacing(6)
        lay.addLayout(head)
        lay.addWidget(self.verdict)
        lay.addLayout(grid)
        lay.addWidget(self.devices)
        lay.addLayout(self.legend)
        lay.addWidget(self.diff)
        self.clear("Pick a model to see where it will live.")

    # ---- public slots -------------------------------------------------------------------------------
    def set_plan(self, plan: Plan) -> None:
        """Show an estimate."""
        self._show(MeterState.from_plan(plan))

    def set_measured(self, placement: Placement, plan: Plan) -> None:
        """Show what a load really used, and how far the plan was off."""
        self._show(MeterState.from_measured(placement, plan))

    def set_devices(self, rows: list[dict[str, Any]] | None, measured: bool = False) -> None:
        """One bar per device (GPUs, RPC workers, RAM) when the plan spans several; None: hide them.

        With several devices the single GPU bar is replaced by them (its numbers are their sum).
        """
        self.devices.set_rows(rows, measured)
        multi = bool(rows)
        for w in (self.gpu_title, self.gpu_bar, self.gpu_text):
            w.setVisible(not multi)

    def clear(self, message: str = "") -> None:
        self.set_devices(None)
        self.state = None
        self.processor.setText("—")
        self.processor.setStyleSheet("")
        self._processor_colour = None
        self._shown_source = None
        self.layers.setText("")
        self.source.setText("")
        self.verdict.setText(message)
        self.gpu_bar.set_data([], 0, empty_text="")
        self.ram_bar.set_data([], 0, empty_text="")
        self.gpu_text.setText("")
        self.ram_text.setText("")
        self.diff.setText("")
        for v in self._legend_values.values():
            v.setText("")

    # ---- rendering ----------------------------------------------------------------------------------
    def _show(self, s: MeterState) -> None:
        self.state = s
        colour = theme.processor_colour(s.processor, s.fits)
        self.processor.setText(s.processor if s.fits else f"{s.processor} — won't fit")
        if colour != self._processor_colour:  # style sheets are slow to re-apply; only on a change
            self._processor_colour = colour
            self.processor.setStyleSheet(f"color:{colour.name()};")
        self.layers.setText(f"Layers on GPU: <b>{s.gpu_layers}/{s.n_layers}</b>"
                            + (f" · {html.escape(s.extras)}" if s.extras else ""))
        if s.source != self._shown_source:
            self._shown_source = s.source
            self._set_source_label(s.source)
        verdict = self._verdict(s)
        if s.warning and s.source == "plan":
            verdict += f"<br><span style='color:{theme.PARTIAL.name()}'><b>⚠ {html.escape(s.warning)}</b></span>"
        self.verdict.setText(verdict)

        gpu_segs = [(s.gpu.weights, theme.WEIGHTS), (s.gpu.kv, theme.KV), (s.gpu.rs, theme.RS),
                    (s.gpu.compute, theme.COMPUTE), (s.gpu.overhead, theme.OVERHEAD)]
        host_segs = [(s.host.weights, theme.WEIGHTS), (s.host.repack, theme.REPACK), (s.host.kv, theme.KV),
                     (s.host.rs, theme.RS), (s.host.compute, theme.COMPUTE)]
        if s.gpu_capacity > 0:
            others = max(0, s.gpu_capacity - s.gpu_free)
            over_gpu = others + s.gpu.total > s.gpu_capacity or (s.source == "plan" and s.gpu.total > s.gpu_usable)
            self.gpu_bar.set_data(gpu_segs, s.gpu_capacity, others, limit=others + s.gpu_usable, over=over_gpu)
            self.gpu_title.setText("<b>GPU</b>")
            self.gpu_text.setText(
                f"<b>{theme.gib(s.gpu.total)}</b> for this model · {theme.gib(s.gpu_usable)} usable of "
                f"{theme.gib(s.gpu_capacity)} on {esc(s.gpu_name)} ({theme.gib(s.headroom)} kept free"
                + (f", {theme.gib(others)} used by others" if others >= 64 * 1024**2 else "") + ")")
        else:
            self.gpu_bar.set_data([], 0, empty_text="no NVIDIA GPU: everything runs on the CPU")
            self.gpu_text.setText("")
        ram_others = max(0, s.ram_capacity - s.ram_available)
        over_ram = ram_others + s.host.total > s.ram_capacity > 0
        self.ram_bar.set_data(host_segs, s.ram_capacity, ram_others, limit=None, over=over_ram)
        self.ram_text.setText(
            f"<b>{theme.gib(s.host.total)}</b> for this model · {theme.gib(s.ram_available)} available of "
            f"{theme.gib(s.ram_capacity)}")

        for w in self._legend_names["overhead"]:
            w.setVisible(s.gpu_capacity > 0)
        for w in self._legend_names["rs"]:  # only models with recurrent layers have a state
            w.setVisible(s.gpu.rs + s.host.rs > 0)
        for w in self._legend_names["repack"]:  # llama.cpp's extra copy of repackable host weights
            w.setVisible(s.host.repack > 0)
        for key, _label, _c in theme.SEGMENTS:
            g = getattr(s.gpu, key, 0)
            h = getattr(s.host, key, 0)
            parts = []
            if s.gpu_capacity > 0 and key != "repack":
                parts.append(f"GPU {theme.gib(g, 2)}")
            if key != "overhead":
                parts.append(f"RAM {theme.gib(h, 2)}")
            self._legend_values[key].setText(" · ".join(parts))

        if s.source == "measured" and s.diff_gpu is not None and s.diff_host is not None:
            self.diff.setText(
                f"Plan vs measured: GPU {theme.signed(s.diff_gpu)}, RAM {theme.signed(s.diff_host)} "
                f"(measured − estimated). LayerFit learns from this for later estimates.")
        else:
            self.diff.setText("")

    def _set_source_label(self, source: str) -> None:
        if source == "measured":
            self.source.setText("● Measured after load")
            self.source.setStyleSheet(f"color:{theme.GOOD.name()}; font-weight:bold;")
        else:
            self.source.setText("Estimate")
            self.source.setToolTip("Computed from the file's header before loading; after a load the "
                                   "measured numbers replace it.")
            self.source.setStyleSheet(f"color:{theme.muted_css(self)};")

    @staticmethod
    def _verdict(s: MeterState) -> str:
        if s.source == "measured":
            return "This is what llama.cpp really allocated."
        if not s.fits:
            return (f"<span style='color:{theme.BAD.name()}'><b>Won't fit:</b> this needs more memory than the card and RAM "
                    "have. See the suggestions below.</span>")
        if s.gpu_capacity <= 0:
            return "No GPU to offload to: the whole model runs from RAM on the CPU."
        if s.fits_gpu:
            return "Fits entirely on the GPU."
        if s.gpu_layers == 0:
            return "Nothing fits on the GPU with these settings: it runs on the CPU (slow)."
        if s.gpu_layers >= s.n_layers and s.extras:
            return (f"All {s.n_layers} layers on the GPU; {html.escape(s.extras)}, so the CPU/GPU split counts "
                    "those bytes on the CPU side.")
        return (f"Partial offload: {s.gpu_layers} of {s.n_layers} layers on the GPU, the rest runs on the CPU "
                "(much slower). See why below.")
