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

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox, QSplitter, QTabWidget, QWidget

from core.devices import DevicePlan
from core.engine import Engine, LoadResult
from core.fit import Plan
from core.gguf_info import ModelInfo
from core.hardware import Hardware, probe, probe_ram_only
from core.modelfile import ModelfileSpec
from core.ollama import OllamaModel
from core.session import Change, Loaded, Session
from core.settings import AppSettings
from gui import dialog_dirs
from gui import window_parts as parts
from gui.advice import AdvicePanel
from gui.chat_panel import ChatPanel
from gui.engine_control import EngineControl
from gui.export_dialog import ExportDialog
from gui.library import OLLAMA_PREFIX, LibraryPanel
from gui.load_panel import LoadPanel
from gui.meter import MeterWidget
from gui.model_header import ModelHeader
from gui.notify import notifier
from gui.ollama_status import OllamaStatusLine
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
    # built by gui.window_parts.build_ui
    library: LibraryPanel
    header: ModelHeader
    model_title: QLabel
    model_facts: QLabel
    ollama_line: OllamaStatusLine
    load_panel: LoadPanel
    meter: MeterWidget
    advice: AdvicePanel
    tabs: QTabWidget
    chat_panel: ChatPanel
    tradeoff: TradeoffView
    splitter: QSplitter
    engine_state: QLabel

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
        parts.build_ui(self, prefetch)
        self.actions_ = build_actions(self)
        self.load_action, self.unload_action = self.actions_.load, self.actions_.unload
        self.export_action, self.import_action = self.actions_.export, self.actions_.import_
        self._timers = {name: self._timer(ms) for name, ms in (("advice", 0), ("sweep", 120), ("save", 400))}
        parts.restore_window(self)
        self._connect_signals()
        parts.probe_workers(self)  # restored before the signals were wired: ask them now
        for level, text in notifier().release():
            self._on_message(level, text)
        parts.report_restore_problems(self)
        self._update_actions()
        if hardware is None:
            run_task(probe, on_result=self.session.set_machine, context="Probing the GPU")
        self.load_panel.set_machine(self.session.machine)
        self.library.refresh()

    def _timer(self, ms: int) -> QTimer:
        t = QTimer(self, singleShot=True, interval=ms)
        return t

    # ---- construction -----------------------------------------------------------------------------------
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
        self.load_panel.hardware_changed.connect(lambda: self.session.set_hardware(
            self.load_panel.hardware_choice(), self.load_panel.whatif_ram(), self.load_panel.cards()))
        self.load_panel.workers_changed.connect(self._on_workers)
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
        self.chat_panel.engineLost.connect(self._on_engine_lost)
        self.chat_panel.streamingChanged.connect(self._update_actions)

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
    def device_plan(self) -> DevicePlan | None:
        return self.session.device_plan

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
            parts.report_restore_problems(self)
            parts.start_referee(self)
        elif change is Change.SETTINGS and self.load_panel.settings() != s.settings:
            self.load_panel.set_settings(s.settings)
        elif change is Change.SAMPLING and self.chat_panel.sampling() != s.sampling:
            self.chat_panel.set_sampling(s.sampling)
        elif change is Change.HARDWARE:
            self.load_panel.set_machine(s.machine)
            self.load_panel.set_hardware_choice(s.hardware_choice, s.whatif_ram, s.cards)
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
        parts.render_plan(self)

    def _update_advice(self) -> None:
        parts.update_advice(self)

    def _start_sweep(self) -> None:
        self._sweep_id += 1  # tags the result: a stale sweep is dropped
        parts.start_sweep(self, self._sweep_id)

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

    def _on_workers(self) -> None:
        self.session.set_workers(self.load_panel.workers())
        parts.probe_workers(self)

    def _on_engine_lost(self, _reason: str) -> None:
        self.engine.lost()
        parts.probe_workers(self)  # a worker may be what died: ask them all again for the plan

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
        parts.export_modelfile(self)

    def import_modelfile(self, path: str | None = None) -> ModelfileSpec | None:
        """Read an Ollama Modelfile and apply it (every problem reported at once, with line numbers)."""
        return parts.import_modelfile(self, path)

    def _on_message(self, level: str, text: str) -> None:
        parts.show_message(self, level, text)

    def save_settings(self) -> None:
        parts.save_settings(self)

    def _update_actions(self, *_args: object) -> None:
        busy, streaming = self.engine.loading, self.chat_panel.is_streaming
        self.load_action.setEnabled(self.session.plan is not None and not busy and not streaming)
        self.unload_action.setEnabled(self.session.loaded is not None and not busy)
        self.export_action.setEnabled(self.session.plan is not None)

    # ---- messages, drops, persistence ---------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if parts.gguf_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = parts.gguf_paths(event.mimeData())
        if paths:
            self.library.add_files(paths)
            event.acceptProposedAction()

    def _schedule_save(self, *_args: object) -> None:
        self._timers["save"].start()

    def closeEvent(self, event: QCloseEvent) -> None:
        self._closing = True
        self._timers["save"].stop()
        self.chat_panel.shutdown()
        self.save_settings()
        self.engine.close()
        wait_all(15000)
        super().closeEvent(event)
