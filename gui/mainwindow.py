"""The main window: library on the left, load settings + placement meter + advice in the middle, chat
and the trade-off chart on the right; a menu bar and a toolbar.

The window is layout and wiring. The session's state lives in ``core.session.Session`` (the model and its
settings, the hardware, the plan, the load, pending imports, the chat's settings): widgets send it intents
and render what it says. All wiring is in ``_connect_signals`` (after qutebrowser's mainwindow). The
trade-off sweep and every engine call run off the GUI thread; stale sweep results are dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core.engine import Engine, LoadResult
from core.fit import Plan
from core.gguf_info import ModelInfo
from core.hardware import Hardware, probe, probe_ram_only
from core.modelfile import ModelfileSpec
from core.modelfile_report import read_import
from core.ollama import OllamaModel
from core.session import Change, Loaded, MeterSource, Session
from core.settings import AppSettings
from core.tradeoff import TradeoffData, sweep
from gui import dialog_dirs
from gui.advice import AdvicePanel
from gui.chat_panel import ChatPanel
from gui.engine_control import EngineControl
from gui.export_dialog import ExportDialog
from gui.library import OLLAMA_PREFIX, LibraryPanel
from gui.load_panel import LoadPanel
from gui.meter import MeterWidget
from gui.model_header import ModelHeader
from gui.notify import Level, notifier
from gui.tradeoff import TradeoffView
from gui.window_menus import apply_color_scheme, build_actions
from gui.workers import run_task, wait_all


class MainWindow(QMainWindow):
    """LayerFit's window. ``hardware`` and ``engine_factory`` can be injected (tests); by default the
    hardware is probed off the GUI thread and the engine is ``core.engine.Engine``.

    Signals: plan_changed(Plan), loaded(LoadResult), unloaded().
    """

    plan_changed = Signal(object)
    loaded = Signal(object)
    unloaded = Signal()

    def __init__(self, settings: AppSettings | None = None, *, hardware: Hardware | None = None,
                 engine_factory: Any = None, prefetch: bool = True, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        notifier().hold()  # the chat panel may warn while it is built: shown once the status bar is wired
        self.app_settings = settings if settings is not None else AppSettings.load()
        self.session = Session(self.app_settings, hardware if hardware is not None else probe_ram_only())
        self.engine = EngineControl(self.session, engine_factory or Engine, self)
        self._next_ollama: OllamaModel | None = None
        self.export_dialog: ExportDialog | None = None
        self._error_box: QMessageBox | None = None
        self._closing = False
        self._sweep_id = 0
        self._last_error: str | None = None
        dialog_dirs.restore(self.app_settings.last_folder)
        self.setAcceptDrops(True)
        self._build_ui(prefetch)
        self.actions_ = build_actions(self)
        self.load_action, self.unload_action = self.actions_.load, self.actions_.unload
        self.export_action, self.import_action = self.actions_.export, self.actions_.import_
        self._timers = {name: self._timer(ms) for name, ms in (("advice", 0), ("sweep", 120),
                                                                 ("save", 400))}
        self._restore_window()
        self._connect_signals()
        for level, text in notifier().release():
            self._on_message(level, text)
        self._report_restore_problems()
        self._update_actions()
        if hardware is None:
            run_task(probe, on_result=self.session.set_machine, context="Probing the GPU")
        self.load_panel.set_machine(self.session.machine)
        self.library.refresh()

    def _timer(self, ms: int) -> QTimer:
        t = QTimer(self)
        t.setSingleShot(True)
        t.setInterval(ms)
        return t

    # ---- construction -----------------------------------------------------------------------------------
    def _build_ui(self, prefetch: bool) -> None:
        s = self.app_settings
        self.library = LibraryPanel(s.model_folders, s.extra_models, prefetch=prefetch)
        self.library.setMinimumWidth(200)
        self.header = ModelHeader()
        self.model_title, self.model_facts, self.ollama_line = (self.header.title, self.header.facts,
                                                                 self.header.ollama_line)
        self.load_panel = LoadPanel()
        self.meter = MeterWidget()
        self.meter.setObjectName("meterFrame")
        self.meter.setStyleSheet("QFrame#meterFrame { border: 1px solid palette(mid); border-radius: 6px; }")
        self.advice = AdvicePanel()
        center = QWidget()
        cl = QVBoxLayout(center)
        cl.setContentsMargins(6, 0, 6, 0)
        cl.setSpacing(10)
        for w in (self.header, self.load_panel, QLabel("<b>Where it will live</b>"), self.meter, self.advice):
            cl.addWidget(w)
        cl.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(center)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setMinimumWidth(360)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.tabs = QTabWidget()
        self.chat_panel = ChatPanel(self._engine_for_chat)
        self.tabs.addTab(self.chat_panel, "Chat")
        self.tradeoff = TradeoffView()
        self.tabs.addTab(self.tradeoff, "Trade-off")
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        parts: tuple[tuple[QWidget, int], ...] = ((self.library, 0), (scroll, 3), (self.tabs, 4))
        for i, (part, stretch) in enumerate(parts):
            self.splitter.addWidget(part)
            self.splitter.setStretchFactor(i, stretch)
        self.splitter.setSizes([220, 520, 700])
        self.splitter.setChildrenCollapsible(False)
        self.setCentralWidget(self.splitter)
        self.engine.add_to(self.statusBar())
        self.engine_state = self.engine.state
        self.resize(1440, 900)

    def _connect_signals(self) -> None:
        """Every connection between the window's parts, in one place."""
        notifier().message.connect(self._on_message)
        self.session.subscribe(self._on_session)
        self.library.ollama_chosen.connect(lambda om: setattr(self, "_next_ollama", om))
        self.library.model_chosen.connect(self._on_model_chosen)
        self.library.model_failed.connect(self._on_model_failed)
        self.library.sources_changed.connect(self._schedule_save)
        # the form's intents → the session (the single writer)
        self.load_panel.settings_changed.connect(self._on_form)
        self.load_panel.hardware_changed.connect(
            lambda: self.session.set_hardware(self.load_panel.hardware_choice(), self.load_panel.whatif_ram()))
        self.load_panel.hardware_changed.connect(self._schedule_save)
        self.load_panel.notice.connect(notifier().info)
        self.advice.suggestion_chosen.connect(self.apply_suggestion)
        self._timers["advice"].timeout.connect(self._update_advice)
        self._timers["sweep"].timeout.connect(self._start_sweep)
        self._timers["save"].timeout.connect(self.save_settings)
        self.load_action.triggered.connect(self.load_model)
        self.unload_action.triggered.connect(self.unload_model)
        self.export_action.triggered.connect(self.export_modelfile)
        self.import_action.triggered.connect(lambda: self.import_modelfile())
        for key, action in self.actions_.schemes.items():
            action.triggered.connect(lambda _c=False, k=key: self.set_color_scheme(k))
        self.engine.loaded.connect(self.loaded.emit)
        self.engine.unloaded.connect(self.unloaded.emit)
        self.engine.busy_changed.connect(self._update_actions)
        self.chat_panel.engineLost.connect(lambda _r: self.engine.lost())
        self.chat_panel.streamingChanged.connect(self._update_actions)

    def _restore_window(self) -> None:
        s, problems = self.app_settings, self.session.restore_problems
        try:
            if s.window_geometry:
                self.restoreGeometry(QByteArray.fromBase64(s.window_geometry.encode()))
            if s.window_state:
                self.restoreState(QByteArray.fromBase64(s.window_state.encode()))
        except Exception as exc:  # noqa: BLE001 - a saved value must never stop the window from opening
            problems.append(f"window layout ({exc})")
        self.load_panel.set_headroom(self.session.headroom)
        self.load_panel.set_hardware_choice(self.session.hardware_choice, self.session.whatif_ram)
        self.set_color_scheme(s.color_scheme)
        if s.last_model:
            self.library.select_path(s.last_model)

    def _report_restore_problems(self) -> None:
        problems, self.session.restore_problems = self.session.restore_problems, []
        if problems:
            notifier().warning("Some saved settings could not be used, so they are back to their defaults: "
                               + "; ".join(problems))

    def set_color_scheme(self, scheme: str) -> None:
        self.app_settings.color_scheme = scheme if scheme in self.actions_.schemes else "system"
        self.actions_.schemes[self.app_settings.color_scheme].setChecked(True)
        apply_color_scheme(self.app_settings.color_scheme)
        self._schedule_save()

    # ---- compatibility views of the session (tests and other widgets read these) ------------------------
    @property
    def plan(self) -> Plan | None:
        return self.session.plan

    @property
    def model_info(self) -> ModelInfo | None:
        return self.session.model

    @property
    def ollama_model(self) -> OllamaModel | None:
        return self.session.ollama

    @property
    def load_result(self) -> LoadResult | None:
        return self.session.loaded.result if self.session.loaded is not None else None

    @property
    def loaded_plan(self) -> Plan | None:
        return self.session.loaded.plan if self.session.loaded is not None else None

    @property
    def _engine(self) -> Engine | None:
        return self.engine.engine

    # ---- the session → the widgets ------------------------------------------------------------------------
    def _on_session(self, change: Change) -> None:
        s = self.session
        if change is Change.MODEL and s.model is not None:
            name = self.header.show_model(s.model, s.ollama)
            self.setWindowTitle(name)  # Qt adds " — LayerFit" (the application display name)
            self.load_panel.set_model(s.model)
            self._report_restore_problems()
        elif change is Change.SETTINGS and self.load_panel.settings() != s.settings:
            self.load_panel.set_settings(s.settings)
        elif change is Change.SAMPLING and self.chat_panel.sampling() != s.sampling:
            self.chat_panel.set_sampling(s.sampling)
        elif change is Change.HARDWARE:
            self.load_panel.set_machine(s.machine)
            self.load_panel.set_hardware_choice(s.hardware_choice, s.whatif_ram)
            if s.machine.gpu_problem and not s.machine.gpus:
                self.statusBar().showMessage(f"No GPU: {s.machine.gpu_problem}. Planning for the CPU, or pick a "
                                             "what-if card.", 10000)
        elif change is Change.LOAD:
            lo: Loaded | None = s.loaded
            self.advice.set_fallbacks(lo.result.fallbacks if lo is not None else ())
            self.chat_panel.set_model_loaded(lo is not None, lo.plan.model.path if lo is not None else None)
        if change is Change.PLAN:
            self._render_plan()
        self._update_actions()

    def _render_plan(self) -> None:
        """Meter, layer slider, advice and chart follow the session's one shown plan."""
        s = self.session
        if s.model is None:
            return
        plan = s.shown_plan()
        if plan is None:
            msg = s.plan_error or "no plan"
            self.meter.clear(f"Can't plan this model: {msg}")
            if msg != self._last_error:
                self._last_error = msg
                notifier().error(msg, "Planning")
            return
        self._last_error = None
        if s.meter_source() is MeterSource.MEASURED and s.loaded is not None:
            self.meter.set_measured(s.loaded.result.placement, s.loaded.plan)
        else:
            self.meter.set_plan(plan)
        if s.plan is not None:
            self.load_panel.show_resolved_layers(s.plan.gpu_layers)
        self.ollama_line.check(s.ollama, s.hardware(), not s.is_what_if(), s.headroom)
        self._timers["advice"].start()
        self._timers["sweep"].start()
        self.plan_changed.emit(plan)

    def _update_advice(self) -> None:
        try:
            plan = self.session.advise()
        except Exception as exc:  # noqa: BLE001 - the meter already shows the plan; say why advice is missing
            notifier().error(exc, "Suggestions")
            return
        if plan is not None:
            self.advice.set_plan(plan)
            self.plan_changed.emit(plan)

    def _start_sweep(self) -> None:
        s = self.session
        if s.model is None or s.plan is None:
            return
        self._sweep_id += 1
        sid, model, settings, hw, headroom = self._sweep_id, s.model, s.settings, s.hardware(), s.headroom
        run_task(lambda: sweep(model, settings, hw, headroom), on_result=lambda d: self._on_sweep(sid, d),
                 context="Charting the trade-off")

    def _on_sweep(self, sid: int, data: TradeoffData) -> None:
        if sid == self._sweep_id and not self._closing:  # drop stale sweeps
            self.tradeoff.set_data(data)

    # ---- the user's intents → the session -----------------------------------------------------------------
    def _on_model_chosen(self, info: ModelInfo) -> None:
        om = self._next_ollama if self._next_ollama is not None and self._next_ollama.path == info.path else None
        self.session.select_model(info, OLLAMA_PREFIX + om.name if om is not None else info.path, om)
        self._schedule_save()

    def _on_model_failed(self, path: str, error: str) -> None:
        self.ollama_line.check(None, self.session.hardware(), False, 0)
        self.session.clear_model(error)
        self.header.show_problem(path.removeprefix(OLLAMA_PREFIX) if self._next_ollama else Path(path).name, error)
        self.meter.clear("This file can't be planned. Pick another model.")
        self.advice.clear()
        self.tradeoff.set_data(None)

    def _on_form(self) -> None:
        if self.load_panel.headroom() != self.session.headroom:
            self.session.set_headroom(self.load_panel.headroom())
        self.session.set_settings(self.load_panel.settings())
        self._schedule_save()

    def apply_suggestion(self, suggestion: Any) -> None:
        """Apply exactly what the suggestion names (the session keeps Auto as Auto)."""
        self.session.apply_suggestion(suggestion)
        self.statusBar().showMessage(f"Applied: {suggestion.text}", 6000)

    def _engine_for_chat(self) -> Engine | None:
        return self.engine.engine if self.session.loaded is not None else None

    def load_model(self) -> None:
        """Load the selected model on this machine's hardware (even if a what-if card is shown)."""
        if not self.chat_panel.is_streaming:  # the engine is busy with the reply
            self.engine.load()

    def unload_model(self) -> None:
        if self.chat_panel.is_streaming:
            self.chat_panel.stop()
        self.engine.unload()

    def export_modelfile(self) -> None:
        """Export the *selected* model's plan for this machine (never the loaded one of another model)."""
        s = self.session
        s.set_sampling(self.chat_panel.sampling())
        plan = s.export_plan()
        if s.model is None or plan is None:
            notifier().info("Pick a model first: the Modelfile is written from its plan.")
            return
        notes = ([f"The what-if card ({s.hardware_choice}) was only for planning: this file is for this "
                  "machine's hardware."] if s.is_what_if() else [])
        dlg = ExportDialog(s.model, plan, s.sampling, self.chat_panel.messages(), self, requested=s.settings,
                           ollama_source=s.ollama.name if s.ollama is not None else None, extra_notes=notes)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.open()
        self.export_dialog = dlg  # tests drive the open dialog

    def import_modelfile(self, path: str | None = None) -> ModelfileSpec | None:
        """Read an Ollama Modelfile and apply it: every problem is reported at once, with line numbers;
        nothing is applied from a broken file; what LayerFit can't apply is named."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Import Ollama Modelfile", dialog_dirs.last_dir(),
                                                  "Modelfiles (Modelfile *.modelfile *.Modelfile *.txt);;All files (*)")
            if not path:
                return None
        dialog_dirs.remember(path)
        report = read_import(path, sampling=self.chat_panel.sampling())
        if report.spec is None:
            notifier().error(report.summary(), f"Import {Path(path).name}")
            return None
        spec = report.spec
        if report.warnings or report.not_applied:
            notifier().warning(f"Imported {Path(path).name}.\n" + report.summary())
        if not self.session.begin_import(spec):
            self.library.add_files([spec.from_path])
            self.library.select_path(spec.from_path)
        else:
            notifier().info(f"Imported the Modelfile for {Path(spec.from_path).name}: context "
                            f"{self.session.settings.n_ctx:,}, GPU layers "
                            f"{'auto' if spec.num_gpu is None else spec.num_gpu}.")
        return spec

    def _update_actions(self, *_args: object) -> None:
        busy, streaming = self.engine.loading, self.chat_panel.is_streaming
        self.load_action.setEnabled(self.session.plan is not None and not busy and not streaming)
        self.unload_action.setEnabled(self.session.loaded is not None and not busy)
        self.export_action.setEnabled(self.session.plan is not None)

    # ---- messages, drops, persistence ---------------------------------------------------------------------
    def _on_message(self, level: str, text: str) -> None:
        """The one place messages reach the user: the status bar, plus a (non-blocking) box for errors."""
        prefix = {Level.ERROR.value: "Error: ", Level.WARNING.value: "Warning: "}.get(level, "")
        first = text.splitlines()[0] if text else ""
        self.statusBar().showMessage(prefix + first, 15000 if level != Level.INFO.value else 6000)
        self.statusBar().setToolTip(text)
        if level == Level.ERROR.value and not self._closing:
            box = self._error_box
            if box is None or not box.isVisible():
                box = QMessageBox(QMessageBox.Icon.Critical, "LayerFit", text, QMessageBox.StandardButton.Ok, self)
                box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
                box.destroyed.connect(lambda *_: setattr(self, "_error_box", None))
                self._error_box = box
                box.open()  # not exec(): never block the event loop
            else:
                box.setText(box.text() + "\n\n" + text)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if _gguf_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = _gguf_paths(event.mimeData())
        if paths:
            self.library.add_files(paths)
            event.acceptProposedAction()

    def _schedule_save(self, *_args: object) -> None:
        self._timers["save"].start()

    def save_settings(self) -> None:
        """Write what the window remembers. Re-reads the file first: the chat panel saves its own keys."""
        current = AppSettings.load()
        s = self.app_settings
        s.model_folders, s.extra_models = list(self.library.folders), list(self.library.files)
        self.session.set_sampling(self.chat_panel.sampling())
        self.session.save_into(s)
        s.window_geometry = bytes(self.saveGeometry().toBase64().data()).decode()
        s.window_state = bytes(self.saveState().toBase64().data()).decode()
        s.last_chat_id = current.last_chat_id
        s.last_folder = dialog_dirs.current()
        try:
            s.save()
        except Exception as exc:  # noqa: BLE001 - reported in words
            notifier().error(exc, "Saving settings")

    def closeEvent(self, event: QCloseEvent) -> None:
        self._closing = True
        self._timers["save"].stop()
        self.chat_panel.shutdown()
        self.save_settings()
        self.engine.close()
        wait_all(15000)
        super().closeEvent(event)


def _gguf_paths(mime: Any) -> list[str]:
    if mime is None or not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile().lower().endswith(".gguf")]
