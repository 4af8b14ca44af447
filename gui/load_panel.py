"""Load settings: context, GPU layers, KV cache type, flash attention, SWA cache, headroom, hardware.

The panel is a form: it shows the settings the session (``core.session``) owns and emits
``settings_changed`` / ``hardware_changed`` when the user moves a knob; the window passes them on as
intents. The one rule it enforces is core's (``core.loadsettings.kv_type_allowed``: a quantized V cache
needs flash attention On or Auto).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSlider,
    QSpinBox,
    QWidget,
)

from core.archs import arch_layout
from core.gguf_info import ModelInfo
from core.hardware import PRESETS, Hardware, find_preset
from core.loadsettings import V_CACHE_RULE, FlashAttn, KvType, LoadSettings, kv_type_allowed
from core.tradeoff import MIN_CTX, context_stops
from core.units import GiB, SizeError, parse_size
from gui import theme
from gui.plain import tip

THIS_MACHINE = "this machine"
CUSTOM = "custom"
KV_CHOICES = ((KvType.F16.value, "f16"), (KvType.Q8_0.value, "q8_0 (½ memory)"),
              (KvType.Q4_0.value, "q4_0 (¼ memory)"))
FA_CHOICES = ((FlashAttn.AUTO.value, "Auto"), (FlashAttn.ON.value, "On"), (FlashAttn.OFF.value, "Off"))


class LoadPanel(QGroupBox):
    """The load-settings form. ``settings()`` gives the LoadSettings the controls describe."""

    settings_changed = Signal()
    hardware_changed = Signal()
    workers_changed = Signal()  # the list of RPC workers was edited
    notice = Signal(str)  # a rule the panel enforced ("KV cache set back to f16: …")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Load settings", parent)
        self._model: ModelInfo | None = None
        self._stops = context_stops(8192)
        self._base = LoadSettings()  # fields the panel has no control for are carried through

        # Context: slider on powers of two + an exact box
        self.ctx_slider = QSlider(Qt.Orientation.Horizontal)
        self.ctx_slider.setToolTip("Context size (num_ctx). Drag to snap to powers of two; type an exact "
                                   "value in the box. The KV cache grows linearly with it.")
        self.ctx_spin = QSpinBox()
        self.ctx_spin.setSingleStep(512)
        self.ctx_spin.setSuffix(" tokens")
        self.ctx_spin.setGroupSeparatorShown(True)
        self.ctx_spin.setKeyboardTracking(False)
        self.ctx_spin.setToolTip("Exact context size in tokens")
        self.ctx_max = QLabel("")
        self.ctx_max.setToolTip("The context length the model was trained with")
        ctx_row = QHBoxLayout()
        ctx_row.addWidget(self.ctx_slider, 1)
        ctx_row.addWidget(self.ctx_spin)
        ctx_row.addWidget(self.ctx_max)

        # GPU layers: Auto or a manual slider
        self.layers_auto = QCheckBox("Auto")
        self.layers_auto.setChecked(True)
        self.layers_auto.setToolTip("Let LayerFit choose how many layers go to the GPU (as many as fit)")
        self.layers_slider = QSlider(Qt.Orientation.Horizontal)
        self.layers_slider.setToolTip("Layers on the GPU (n_gpu_layers / Ollama's num_gpu). The last count "
                                      "is the output layer.")
        self.layers_value = QLabel("")
        self.layers_value.setMinimumWidth(70)
        layers_row = QHBoxLayout()
        layers_row.addWidget(self.layers_auto)
        layers_row.addWidget(self.layers_slider, 1)
        layers_row.addWidget(self.layers_value)

        # Attention / cache
        self.fa_combo = QComboBox()
        for key, label in FA_CHOICES:
            self.fa_combo.addItem(label, key)
        self.fa_combo.setToolTip("Flash attention: smaller compute buffers at long context, and it is needed "
                                 "for a quantized KV cache. Auto lets llama.cpp decide.")
        self.kv_combo = QComboBox()
        for key, label in KV_CHOICES:
            self.kv_combo.addItem(label, key)
        self.kv_combo.setToolTip("KV cache type (K and V). q8_0 and q4_0 need flash attention (On, or Auto, "
                                 "which then turns on).")
        self.swa_check = QCheckBox("Full-size SWA cache")
        self.swa_check.setToolTip("Sliding-window layers normally keep only the window in the cache. A full-size "
                                  "cache (llama-cpp-python's default) costs much more memory at long context.")
        fa_row = QHBoxLayout()
        fa_row.addWidget(self.fa_combo)
        fa_row.addStretch(1)
        kv_row = QHBoxLayout()
        kv_row.addWidget(self.kv_combo)
        kv_row.addSpacing(10)
        kv_row.addWidget(self.swa_check)
        kv_row.addStretch(1)

        # Hardware + headroom
        self.hw_combo = QComboBox()
        self.hw_combo.setToolTip("Plan for this machine's GPU, or ask 'what if' for another card")
        self.hw_combo.addItem("This machine", THIS_MACHINE)
        for p in PRESETS:
            self.hw_combo.addItem(f"What if: {p.name}", p.key)
        self.hw_combo.addItem("What if: a card with…", CUSTOM)
        self.hw_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.hw_combo.setMinimumContentsLength(18)
        self.hw_custom = QDoubleSpinBox()
        self.hw_custom.setRange(1, 1024)
        self.hw_custom.setDecimals(1)
        self.hw_custom.setValue(16)
        self.hw_custom.setSuffix(" GiB")
        self.hw_custom.setToolTip("Free GPU memory of the what-if card")
        self.hw_custom.setKeyboardTracking(False)
        self.hw_custom.setVisible(False)
        self.headroom_spin = QDoubleSpinBox()
        self.headroom_spin.setRange(0, 64)
        self.headroom_spin.setDecimals(2)
        self.headroom_spin.setSingleStep(0.25)
        self.headroom_spin.setSuffix(" GiB")
        self.headroom_spin.setValue(0.75)
        self.headroom_spin.setKeyboardTracking(False)
        self.headroom_spin.setToolTip("GPU memory to leave free for the desktop and other programs")
        self.ram_spin = QDoubleSpinBox()
        self.ram_spin.setRange(0, 4096)
        self.ram_spin.setDecimals(0)
        self.ram_spin.setSuffix(" GiB RAM")
        self.ram_spin.setSpecialValueText("this machine's RAM")
        self.ram_spin.setKeyboardTracking(False)
        self.ram_spin.setToolTip("RAM of the what-if machine (a T4 server has its own); 0 = this machine's")
        hw_row = QHBoxLayout()
        hw_row.addWidget(self.hw_combo, 1)
        hw_row.addWidget(self.hw_custom)
        # Several devices: more what-if cards of the same kind, and RPC workers (`layerfit worker`).
        self.cards_spin = QSpinBox()
        self.cards_spin.setRange(1, 8)
        self.cards_spin.setPrefix("× ")
        self.cards_spin.setToolTip("How many of the what-if card: plan a box with 2× RTX 3090 before buying it")
        # the what-if machine's own RAM and card count: a row of their own, shown for a what-if card
        self.whatif_row = QWidget()
        wr = QHBoxLayout(self.whatif_row)
        wr.setContentsMargins(0, 0, 0, 0)
        wr.addWidget(self.cards_spin)
        wr.addWidget(self.ram_spin, 1)
        self.whatif_row.setVisible(False)
        self.workers_edit = QLineEdit()
        self.workers_edit.setPlaceholderText("host:port, … or 24GiB (what if)")
        self.workers_edit.setToolTip("Other machines (or this one) running `layerfit worker`: llama.cpp's RPC "
                                     "server. The model is split across them, this machine's GPUs and RAM.")
        self.workers_edit.setClearButtonEnabled(True)
        headroom_row = QHBoxLayout()
        headroom_row.addWidget(self.headroom_spin)
        headroom_row.addWidget(QLabel("for other programs"), 1)

        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.addRow("Plan for", hw_row)
        form.addRow("", self.whatif_row)
        form.addRow("Workers", self.workers_edit)
        form.addRow("Keep free", headroom_row)
        form.addRow("Context", ctx_row)
        form.addRow("GPU layers", layers_row)
        form.addRow("Flash attention", fa_row)
        form.addRow("KV cache", kv_row)

        self._set_ctx_range(8192)
        self.ctx_spin.setValue(4096)
        self._sync_slider_from_spin()
        self._update_layers_enabled()
        self._enforce_kv_rule(announce=False)

        self.ctx_slider.valueChanged.connect(self._on_ctx_slider)
        self.ctx_spin.valueChanged.connect(self._on_ctx_spin)
        self.layers_auto.toggled.connect(self._on_layers_auto)
        self.layers_slider.valueChanged.connect(self._on_layers_slider)
        self.fa_combo.currentIndexChanged.connect(self._on_fa)
        self.kv_combo.currentIndexChanged.connect(self._emit)
        self.swa_check.toggled.connect(self._emit)
        self.hw_combo.currentIndexChanged.connect(self._on_hw_combo)
        self.hw_custom.valueChanged.connect(lambda _v: self.hardware_changed.emit())
        self.ram_spin.valueChanged.connect(lambda _v: self.hardware_changed.emit())
        self.cards_spin.valueChanged.connect(lambda _v: self.hardware_changed.emit())
        self.workers_edit.editingFinished.connect(self._on_workers)
        self.workers_changed.connect(self.hardware_changed)  # saved with the hardware choice
        self._workers: tuple[str, ...] = ()
        self.headroom_spin.valueChanged.connect(self._emit)

    # ---- model ----------------------------------------------------------------------------------------
    def set_model(self, model: ModelInfo | None) -> None:
        """Bound the sliders by the model (trained context, layer count)."""
        self._model = model
        ctx = self.ctx_spin.value()
        n_train = model.n_ctx_train if model and model.n_ctx_train > 0 else 131072
        self._set_ctx_range(n_train)
        self.ctx_spin.blockSignals(True)
        self.ctx_spin.setValue(min(max(ctx, MIN_CTX), n_train))
        self.ctx_spin.blockSignals(False)
        self._sync_slider_from_spin()
        self.layers_slider.blockSignals(True)
        self.layers_slider.setRange(0, (model.n_layer + 1) if model else 1)
        self.layers_slider.blockSignals(False)
        has_swa = bool(model and (model.sliding_window > 0 or any(model.swa_layers) or arch_layout(model).has_swa))
        self.swa_check.setEnabled(has_swa)
        self.swa_check.setToolTip(self.swa_check.toolTip() if has_swa else
                                  "This model has no sliding-window layers, so this setting changes nothing.")
        self._update_layers_label()

    def _set_ctx_range(self, n_ctx_train: int) -> None:
        self._stops = context_stops(n_ctx_train)
        for w in (self.ctx_slider, self.ctx_spin):
            w.blockSignals(True)
        self.ctx_slider.setRange(0, len(self._stops) - 1)
        self.ctx_slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.ctx_slider.setTickInterval(1)
        self.ctx_slider.setPageStep(1)
        self.ctx_spin.setRange(min(MIN_CTX, self._stops[-1]), self._stops[-1])
        self.ctx_max.setText(f"of {theme.tokens(self._stops[-1])} trained")
        for w in (self.ctx_slider, self.ctx_spin):
            w.blockSignals(False)

    # ---- settings in and out ---------------------------------------------------------------------------
    def settings(self) -> LoadSettings:
        kv = self.kv_combo.currentData()
        return self._base.with_(
            n_ctx=self.ctx_spin.value(),
            n_gpu_layers=None if self.layers_auto.isChecked() else self.layers_slider.value(),
            type_k=kv, type_v=kv,
            flash_attn=self.fa_combo.currentData(),
            swa_full=self.swa_check.isChecked(),
        )

    def set_settings(self, s: LoadSettings) -> None:
        """Show ``s`` in the controls (one settings_changed at the end)."""
        self._base = s
        if s.n_ctx > self.ctx_spin.maximum():
            # An Ollama model's num_ctx (or an imported Modelfile's) may exceed the trained context, as
            # llama.cpp allows: widen the range rather than silently shrink the user's context.
            trained = self._stops[-1]
            self._set_ctx_range(s.n_ctx)
            self.ctx_max.setText(f"(trained {theme.tokens(trained)})")
        widgets = (self.ctx_spin, self.ctx_slider, self.layers_auto, self.layers_slider, self.fa_combo,
                   self.kv_combo, self.swa_check)
        for w in widgets:
            w.blockSignals(True)
        try:
            self.ctx_spin.setValue(s.n_ctx)
            self._sync_slider_from_spin()
            self.layers_auto.setChecked(s.n_gpu_layers is None)
            if s.n_gpu_layers is not None:
                self.layers_slider.setValue(s.n_gpu_layers)
            kv = s.type_v if s.type_v in dict(KV_CHOICES) else "f16"
            self.fa_combo.setCurrentIndex(max(0, self.fa_combo.findData(s.flash_attn)))
            self._enforce_kv_rule(announce=False)
            idx = self.kv_combo.findData(kv)
            if self._kv_allowed(kv):
                self.kv_combo.setCurrentIndex(idx)
            self.swa_check.setChecked(s.swa_full)
        finally:
            for w in widgets:
                w.blockSignals(False)
        self._update_layers_enabled()
        self._update_layers_label()
        self.settings_changed.emit()

    def show_resolved_layers(self, gpu_layers: int) -> None:
        """With Auto on, move the (disabled) slider to what the fitter chose."""
        if self.layers_auto.isChecked():
            self.layers_slider.blockSignals(True)
            self.layers_slider.setValue(gpu_layers)
            self.layers_slider.blockSignals(False)
            self._update_layers_label()

    def headroom(self) -> int:
        return int(round(self.headroom_spin.value() * GiB))

    def set_headroom(self, nbytes: int) -> None:
        self.headroom_spin.setValue(nbytes / GiB)

    # ---- hardware -------------------------------------------------------------------------------------------
    def set_machine(self, hw: Hardware) -> None:
        """The probed hardware: labels the "This machine" entry."""
        label = f"This machine ({hw.gpu.name})" if hw.gpu else "This machine (no NVIDIA GPU)"
        self.hw_combo.setItemText(0, label)
        self.hw_combo.setItemData(0, tip(hw.gpu_problem), Qt.ItemDataRole.ToolTipRole)

    def hardware_choice(self) -> str:
        """"this machine", a preset key, or a size like "16.0GiB" (AppSettings.hardware_choice)."""
        key = self.hw_combo.currentData()
        if key == CUSTOM:
            return f"{self.hw_custom.value():g}GiB"
        return str(key)

    def whatif_ram(self) -> int:
        """Bytes of RAM on the what-if machine (0 = this machine's)."""
        return int(round(self.ram_spin.value())) * GiB

    def cards(self) -> int:
        """How many of the what-if card (1 on this machine)."""
        return self.cards_spin.value() if self.hardware_choice() != THIS_MACHINE else 1

    def set_hardware_choice(self, choice: str, whatif_ram: int | None = None, cards: int | None = None) -> None:
        """Show ``choice`` (and the what-if RAM and card count, when given); emits hardware_changed once
        if anything changed."""
        before = (self.hardware_choice(), self.whatif_ram(), self.cards())
        for w in (self.hw_combo, self.hw_custom, self.ram_spin, self.cards_spin):
            w.blockSignals(True)
        try:
            idx = self.hw_combo.findData(choice)
            if idx < 0:
                preset = find_preset(choice)
                if preset is not None:
                    idx = self.hw_combo.findData(preset.key)
            if idx < 0:
                try:
                    size = parse_size(choice)
                except SizeError:
                    size = 0
                if size > 0:
                    self.hw_custom.setValue(size / GiB)
                    idx = self.hw_combo.findData(CUSTOM)
                else:
                    idx = 0
            self.hw_combo.setCurrentIndex(idx)
            if whatif_ram is not None:
                self.ram_spin.setValue(whatif_ram / GiB)
            if cards is not None:
                self.cards_spin.setValue(max(1, min(8, cards)))
        finally:
            for w in (self.hw_combo, self.hw_custom, self.ram_spin, self.cards_spin):
                w.blockSignals(False)
        self._show_hw_extras()
        if (self.hardware_choice(), self.whatif_ram(), self.cards()) != before:
            self.hardware_changed.emit()

    def _show_hw_extras(self) -> None:
        self.hw_custom.setVisible(self.hw_combo.currentData() == CUSTOM)
        self.whatif_row.setVisible(self.hw_combo.currentData() != THIS_MACHINE)

    def workers(self) -> tuple[str, ...]:
        """The RPC workers typed in (host:port each, as written; checked by the planner)."""
        return self._workers

    def set_workers(self, endpoints: tuple[str, ...] | list[str]) -> None:
        self.workers_edit.setText(", ".join(endpoints))
        self._on_workers()

    def _on_workers(self) -> None:
        parts = tuple(p.strip() for p in self.workers_edit.text().replace(";", ",").split(",") if p.strip())
        if parts != self._workers:
            self._workers = parts
            self.workers_changed.emit()

    # ---- internal ---------------------------------------------------------------------------------------------
    def _emit(self, *_args: object) -> None:
        self.settings_changed.emit()

    def _sync_slider_from_spin(self) -> None:
        v = self.ctx_spin.value()
        idx = min(range(len(self._stops)), key=lambda i: abs(self._stops[i] - v))
        self.ctx_slider.blockSignals(True)
        self.ctx_slider.setValue(idx)
        self.ctx_slider.blockSignals(False)

    def _on_ctx_slider(self, idx: int) -> None:
        self.ctx_spin.blockSignals(True)
        self.ctx_spin.setValue(self._stops[idx])
        self.ctx_spin.blockSignals(False)
        self.settings_changed.emit()

    def _on_ctx_spin(self, _v: int) -> None:
        self._sync_slider_from_spin()
        self.settings_changed.emit()

    def _on_layers_auto(self, _on: bool) -> None:
        self._update_layers_enabled()
        self._update_layers_label()
        self.settings_changed.emit()

    def _on_layers_slider(self, _v: int) -> None:
        self._update_layers_label()
        self.settings_changed.emit()

    def _update_layers_enabled(self) -> None:
        self.layers_slider.setEnabled(not self.layers_auto.isChecked())

    def _update_layers_label(self) -> None:
        m = self.layers_slider.maximum()
        prefix = "auto: " if self.layers_auto.isChecked() else ""
        self.layers_value.setText(f"{prefix}{self.layers_slider.value()}/{m}")

    def _kv_allowed(self, kv: str) -> bool:
        return kv_type_allowed(kv, self.fa_combo.currentData())

    def _enforce_kv_rule(self, announce: bool = True) -> None:
        """Offer only the KV types core's rule allows with the chosen flash attention."""
        model = self.kv_combo.model()
        for i in range(self.kv_combo.count()):
            item = model.item(i)  # type: ignore[attr-defined]
            ok = self._kv_allowed(self.kv_combo.itemData(i))
            item.setEnabled(ok)
            item.setToolTip("" if ok else "Needs flash attention On or Auto")
        if not self._kv_allowed(self.kv_combo.currentData()):
            self.kv_combo.blockSignals(True)
            self.kv_combo.setCurrentIndex(self.kv_combo.findData(KvType.F16.value))
            self.kv_combo.blockSignals(False)
            if announce:
                self.notice.emit(f"KV cache set back to f16: {V_CACHE_RULE}.")

    def _on_fa(self, _i: int) -> None:
        self._enforce_kv_rule()
        self.settings_changed.emit()

    def _on_hw_combo(self, _i: int) -> None:
        self._show_hw_extras()
        self.hardware_changed.emit()

    def kv_option_enabled(self, kv: str) -> bool:
        """Whether the KV type ``kv`` can be picked right now (tests and tooltips)."""
        i = self.kv_combo.findData(kv)
        return bool(self.kv_combo.model().item(i).isEnabled())  # type: ignore[attr-defined]

