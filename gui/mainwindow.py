"""The main window: library on the left, load settings + placement meter + advice in the middle, chat
and the trade-off chart on the right; a toolbar with Load / Unload / Export.

All wiring between widgets lives in ``_connect_signals`` (after qutebrowser's mainwindow). Widgets
expose signals and slots and never reach into each other. The plan is recomputed synchronously (an
estimate takes milliseconds) but coalesced through a 0-ms single-shot timer, so dragging a slider
makes one plan per event-loop turn, not one per pixel. The trade-off sweep and every engine call run
off the GUI thread; results carry a request id and stale ones are dropped.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QStyle,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from core import referee
from core.archs import arch_layout
from core.devices import DevicePlan, is_multi, multi_plan
from core.engine import Engine, LoadCancelled, LoadResult
from core.errors import describe
from core.fit import Plan, Suggestion, make_plan
from core.gguf_info import ModelInfo
from core.hardware import Hardware, probe, probe_ram_only
from core.loadsettings import LoadSettings
from core.modelfile import ModelfileError, ModelfileSpec, read_modelfile
from core.ollama import OllamaModel
from core.rpc import WorkerError, WorkerInfo
from core.rpc import probe as rpc_probe
from core.rpc import what_if_worker as rpc_what_if
from core.settings import AppSettings
from core.units import MiB
from gui import theme
from gui.advice import AdvicePanel
from gui.chat_panel import ChatPanel
from gui.export_dialog import ExportDialog
from gui.library import OLLAMA_PREFIX, LibraryPanel
from gui.load_panel import THIS_MACHINE, LoadPanel
from gui.meter import MeterWidget
from gui.notify import Level, notifier
from gui.ollama_status import OllamaStatusLine
from gui.plain import esc, plain_box, plain_label, tip
from gui.tradeoff import TradeoffData, TradeoffView, sweep
from gui.workers import engine_pool, run_task, wait_all

SAVE_DEBOUNCE_MS = 400
SWEEP_DEBOUNCE_MS = 120


@dataclass(frozen=True)
class PlanInputs:
    """What a plan was made from; equal inputs give an equal plan."""

    model_path: str
    settings: LoadSettings
    hardware_choice: str
    headroom: int


class MainWindow(QMainWindow):
    """LayerFit's window. ``hardware`` and ``engine_factory`` can be injected (tests); by default the
    hardware is probed off the GUI thread and the engine is ``core.engine.Engine``.

    Signals:
        plan_changed(Plan): a new estimate is shown.
        loaded(LoadResult): a load finished (the meter shows measured numbers).
        unloaded(): the model was unloaded.
    """

    plan_changed = Signal(object)
    loaded = Signal(object)
    unloaded = Signal()

    def __init__(self, settings: AppSettings | None = None, *, hardware: Hardware | None = None,
                 engine_factory: Callable[[], Engine] | None = None, prefetch: bool = True,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.app_settings = settings if settings is not None else AppSettings.load()
        self._engine_factory = engine_factory or Engine
        self._engine: Engine | None = None
        self.model_info: ModelInfo | None = None
        self.ollama_model: OllamaModel | None = None  # the Ollama model behind the selection, if any
        self.plan: Plan | None = None
        self.device_plan: DevicePlan | None = None  # the split when the plan spans several devices
        self._worker_infos: dict[str, WorkerInfo] = {}  # answers of the RPC workers, by endpoint as typed
        self._worker_problems: dict[str, str] = {}  # why a worker can't be used, by endpoint as typed
        self.plan_inputs: PlanInputs | None = None
        self.load_result: LoadResult | None = None
        self.loaded_plan: Plan | None = None
        self.loaded_inputs: PlanInputs | None = None
        self._loading = False
        self._cancel: threading.Event | None = None
        self._sweep_id = 0
        self._import_spec: ModelfileSpec | None = None
        self.export_dialog: ExportDialog | None = None
        self._restore_for: str | None = self.app_settings.last_model if self.app_settings.load_settings else None
        self._last_plan_error: str | None = None
        self._error_box: QMessageBox | None = None
        self._closing = False

        self.setWindowTitle("LayerFit")
        self.setAcceptDrops(True)
        self._build_ui(prefetch)
        self._build_actions()
        self._plan_timer = QTimer(self)
        self._plan_timer.setSingleShot(True)
        self._plan_timer.setInterval(0)
        # Suggestions cost a few plans each; they follow one event-loop turn after the meter, so a
        # dragged slider repaints the meter within a frame and the advice catches up when it rests.
        self._advice_timer = QTimer(self)
        self._advice_timer.setSingleShot(True)
        self._advice_timer.setInterval(0)
        self._sweep_timer = QTimer(self)
        self._sweep_timer.setSingleShot(True)
        self._sweep_timer.setInterval(SWEEP_DEBOUNCE_MS)
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(SAVE_DEBOUNCE_MS)
        restore_problems = self._restore_settings()
        self._connect_signals()
        if self.load_panel.workers():  # restored before the signals were wired: ask them now
            self._probe_workers()
        self._update_actions()
        if restore_problems:
            notifier().warning("Some saved settings could not be used, so they are back to their defaults: "
                               + "; ".join(restore_problems))
        if self.app_settings.notice:  # the settings file was damaged (kept aside) or held bad values
            notifier().warning(self.app_settings.notice)

        if hardware is not None:
            self._set_machine(hardware)
        else:
            self._set_machine(probe_ram_only())
            run_task(probe, on_result=self._set_machine, context="Probing the GPU")
        self.library.refresh()

    # ================================================================================================
    # construction
    # ================================================================================================
    def _build_ui(self, prefetch: bool) -> None:
        self.library = LibraryPanel(self.app_settings.model_folders, self.app_settings.extra_models,
                                    prefetch=prefetch)
        self.library.setMinimumWidth(240)
        self.load_panel = LoadPanel()
        self.meter = MeterWidget()
        self.advice = AdvicePanel()

        self.model_title = plain_label(QLabel(""))  # a file name: never markup
        self.model_title.setObjectName("modelTitle")
        self.model_title.setWordWrap(True)
        f = self.model_title.font()
        f.setPointSizeF(f.pointSizeF() * 1.25)
        f.setBold(True)
        self.model_title.setFont(f)
        self.model_facts = QLabel("")
        self.model_facts.setTextFormat(Qt.TextFormat.RichText)  # our markup; outside text escaped
        self.model_facts.setWordWrap(True)
        self.model_facts.setStyleSheet(f"color:{theme.muted_css(self)};")
        self.ollama_line = OllamaStatusLine()  # where a running Ollama put the selected Ollama model

        meter_box = QWidget()
        mb = QVBoxLayout(meter_box)
        mb.setContentsMargins(0, 0, 0, 0)
        meter_title = QLabel("<b>Where it will live</b>")
        mb.addWidget(meter_title)
        self.meter.setObjectName("meterFrame")
        self.meter.setStyleSheet("QFrame#meterFrame { border: 1px solid palette(mid); border-radius: 6px; }")
        mb.addWidget(self.meter)

        center = QWidget()
        cl = QVBoxLayout(center)
        cl.setContentsMargins(6, 0, 6, 0)
        cl.setSpacing(10)
        cl.addWidget(self.model_title)
        cl.addWidget(self.model_facts)
        cl.addWidget(self.ollama_line)
        cl.addWidget(self.load_panel)
        cl.addWidget(meter_box)
        cl.addWidget(self.advice)
        cl.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(center)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setMinimumWidth(420)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        self.tabs = QTabWidget()
        self.chat_panel = ChatPanel(self._engine_for_chat)
        self.tabs.addTab(self.chat_panel, "Chat")
        self.tradeoff = TradeoffView()
        self.tabs.addTab(self.tradeoff, "Trade-off")

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.library)
        self.splitter.addWidget(scroll)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setStretchFactor(2, 3)
        self.splitter.setSizes([220, 590, 630])
        self.splitter.setChildrenCollapsible(False)
        self.setCentralWidget(self.splitter)

        # status bar: messages, load progress + Cancel, engine state
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setMaximumWidth(220)
        self.progress.setFormat("Loading… %p%")
        self.progress.setVisible(False)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop loading the model")
        self.cancel_btn.setVisible(False)
        self.engine_state = plain_label(QLabel("No model loaded"))
        sb = self.statusBar()
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.cancel_btn)
        sb.addPermanentWidget(self.engine_state)
        self.resize(1440, 900)

    def _build_actions(self) -> None:
        st = self.style()
        self.load_action = QAction(st.standardIcon(QStyle.StandardPixmap.SP_MediaPlay), "Load", self)
        self.load_action.setShortcut(QKeySequence("Ctrl+L"))
        self.load_action.setToolTip("Load the model with these settings (Ctrl+L)")
        self.unload_action = QAction(st.standardIcon(QStyle.StandardPixmap.SP_MediaStop), "Unload", self)
        self.unload_action.setToolTip("Unload the model and free its memory")
        self.export_action = QAction(st.standardIcon(QStyle.StandardPixmap.SP_DialogSaveButton),
                                     "Export Modelfile…", self)
        self.export_action.setShortcut(QKeySequence("Ctrl+E"))
        self.export_action.setToolTip("Write these settings as an Ollama Modelfile (Ctrl+E)")
        self.import_action = QAction(st.standardIcon(QStyle.StandardPixmap.SP_DialogOpenButton),
                                     "Import Modelfile…", self)
        self.import_action.setShortcut(QKeySequence("Ctrl+I"))
        self.import_action.setToolTip("Read an Ollama Modelfile: its model, context, GPU layers and sampling (Ctrl+I)")
        tb = QToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.setIconSize(QSize(18, 18))
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        tb.addAction(self.load_action)
        tb.addAction(self.unload_action)
        tb.addSeparator()
        tb.addAction(self.export_action)
        tb.addAction(self.import_action)
        self.addToolBar(tb)
        for a in (self.load_action, self.unload_action, self.export_action, self.import_action):
            self.addAction(a)  # shortcuts work wherever the focus is

    def _connect_signals(self) -> None:
        """Every connection between the window's parts, in one place."""
        # one channel for every message to the user
        notifier().message.connect(self._on_message)
        # library → model
        self.library.ollama_chosen.connect(self._on_ollama_chosen)
        self.library.model_chosen.connect(self._on_model_chosen)
        self.library.model_failed.connect(self._on_model_failed)
        self.library.sources_changed.connect(self._schedule_save)
        # settings → plan (coalesced) → meter, advice, chart
        self.load_panel.settings_changed.connect(self._schedule_plan)
        self.load_panel.settings_changed.connect(self._schedule_save)
        self.load_panel.hardware_changed.connect(self._schedule_plan)
        self.load_panel.hardware_changed.connect(self._schedule_save)
        self.load_panel.notice.connect(notifier().info)
        self.load_panel.workers_changed.connect(self._probe_workers)
        self._plan_timer.timeout.connect(self._update_plan)
        self._advice_timer.timeout.connect(self._update_advice)
        self._sweep_timer.timeout.connect(self._start_sweep)
        self.advice.suggestion_chosen.connect(self.apply_suggestion)
        # actions
        self.load_action.triggered.connect(self.load_model)
        self.unload_action.triggered.connect(self.unload_model)
        self.export_action.triggered.connect(self.export_modelfile)
        self.import_action.triggered.connect(lambda: self.import_modelfile())
        self.cancel_btn.clicked.connect(self.cancel_load)
        # engine state → chat
        self.loaded.connect(self._tell_chat_loaded)
        self.unloaded.connect(lambda: self.chat_panel.set_model_loaded(False, None))
        self.chat_panel.engineLost.connect(self._on_engine_lost)
        self.chat_panel.streamingChanged.connect(self._update_actions)
        # persistence
        self._save_timer.timeout.connect(self.save_settings)

    def _restore_settings(self) -> list[str]:
        """Put back what the window remembered. A value that can't be used (a hand-edited or foreign
        file) leaves its default in place; the returned lines say which, for the user."""
        s = self.app_settings
        problems: list[str] = []
        with _restoring("window layout", problems):
            if s.window_geometry:
                self.restoreGeometry(QByteArray.fromBase64(s.window_geometry.encode()))
            if s.window_state:
                self.restoreState(QByteArray.fromBase64(s.window_state.encode()))
        with _restoring("memory headroom", problems):
            self.load_panel.set_headroom(s.headroom_mib * MiB)
        with _restoring("hardware", problems):
            self.load_panel.set_hardware_choice(s.hardware_choice)
            self.load_panel.cards_spin.setValue(max(1, min(8, int(s.what_if_cards))))
        if s.workers:
            with _restoring("workers", problems):
                self.load_panel.set_workers([str(x) for x in s.workers])
        if s.load_settings:
            with _restoring("load settings", problems):
                self.load_panel.set_settings(LoadSettings.from_dict(s.load_settings))
        if s.last_model:
            with _restoring("last model", problems):
                self.library.select_path(s.last_model)
        return problems

    # ================================================================================================
    # model + plan
    # ================================================================================================
    def _set_machine(self, hw: Hardware) -> None:
        self.load_panel.set_machine(hw)
        if hw.gpu_problem and not hw.gpus:
            self.statusBar().showMessage(f"No GPU: {hw.gpu_problem}. Planning for the CPU, or pick a what-if "
                                         "card.", 10000)
        self._schedule_plan()

    def _on_ollama_chosen(self, model: OllamaModel | None) -> None:
        """The library says which Ollama model (if any) the next model_chosen is: remember it."""
        self.ollama_model = model

    def _on_model_chosen(self, info: ModelInfo) -> None:
        self.model_info = info
        self.load_panel.set_model(info)
        om = self.ollama_model if self.ollama_model is not None and self.ollama_model.path == info.path else None
        if om is not None:
            # An Ollama model starts from its own params (num_ctx, num_gpu, ...) and system prompt, the
            # way Ollama would run it: its -max-context variant opens at its long context.
            self.load_panel.set_settings(om.load_settings())
            self.chat_panel.set_sampling(om.sampling())
        key = self._library_key()
        if self._restore_for is not None and key == self._restore_for:
            # a bad value was reported when the window opened; the defaults stay
            with contextlib.suppress(TypeError, ValueError, OverflowError):
                self.load_panel.set_settings(LoadSettings.from_dict(self.app_settings.load_settings))
            self._restore_for = None
        if self._import_spec is not None and info.path == self._import_spec.from_path:
            self._apply_import()
        self.model_title.setText(om.name if om is not None else Path(info.path).stem)
        self.ollama_line.check(om, self.load_panel.hardware(), self.load_panel.hardware_choice() == THIS_MACHINE,
                               self.load_panel.headroom())
        self.model_title.setToolTip(tip(f"name in the file: {info.name}") if info.name else "")
        facts = [info.arch, f"{theme.params(info.n_params)} parameters" if info.n_params else "",
                 info.file_type, theme.gib(info.file_size), f"{info.n_layer} layers",
                 f"trained context {theme.tokens(info.n_ctx_train)}" if info.n_ctx_train else "",
                 f"MoE {info.n_expert_used}/{info.n_expert} experts" if info.n_expert else "",
                 f"sliding window {info.sliding_window:,}" if info.sliding_window else ""]
        if om is not None:
            facts.insert(0, "Ollama model" + (f" (same blob as {', '.join(om.shared_with)})" if om.shared_with
                                              else ""))
        self.model_facts.setText(esc(" · ".join(x for x in facts if x)))
        self.setWindowTitle(f"LayerFit — {om.name if om is not None else Path(info.path).name}")
        self._schedule_plan()
        self._schedule_save()
        self._update_actions()
        self._start_referee(info)

    def _start_referee(self, info: ModelInfo) -> None:
        """An architecture LayerFit has not verified: let llama.cpp's no-alloc pass check the numbers in
        the background (a child process, about a second); the plan then says "checked by llama.cpp"."""
        if arch_layout(info).verified:
            return
        inputs = self.current_inputs()
        if inputs is None:
            return
        try:
            settings = make_plan(info, inputs.settings, self.load_panel.hardware(), inputs.headroom,
                                 suggest=False).settings
        except Exception:  # noqa: BLE001 - the plan itself reports planning errors
            return
        path = info.path

        def done(result: object) -> None:
            if isinstance(result, referee.RefereeResult) and result.ok:
                referee.remember(path, settings, result)
                if self.model_info is not None and self.model_info.path == path:
                    self._schedule_plan()

        run_task(lambda: referee.run_referee(path, settings), on_result=done, on_error=lambda _exc: None)

    def _library_key(self) -> str:
        """The library's key for the current model: its path, or "ollama:NAME" for an Ollama model."""
        om, info = self.ollama_model, self.model_info
        if om is not None and info is not None and om.path == info.path:
            return OLLAMA_PREFIX + om.name
        return info.path if info is not None else ""

    def _on_model_failed(self, path: str, error: str) -> None:
        self.ollama_line.check(None, self.load_panel.hardware(), False, 0)
        self.model_info = None
        self.plan = None
        self.plan_inputs = None
        self.model_title.setText(path.removeprefix("ollama:") if self.ollama_model else Path(path).name)
        self.model_facts.setText(f"<span style='color:{theme.BAD.name()}'>Can't use this file: "
                                 f"{esc(error)}</span>")
        self.meter.clear("This file can't be planned. Pick another model.")
        self.advice.clear()
        self.tradeoff.set_data(None)
        self._update_actions()

    def _schedule_plan(self, *_args: object) -> None:
        self._plan_timer.start()

    def current_inputs(self) -> PlanInputs | None:
        if self.model_info is None:
            return None
        return PlanInputs(self.model_info.path, self.load_panel.settings(), self.load_panel.hardware_choice(),
                          self.load_panel.headroom())

    def _update_plan(self) -> None:
        """Plan for the current inputs and show it (GUI thread: an estimate takes milliseconds)."""
        inputs = self.current_inputs()
        if inputs is None or self.model_info is None:
            return
        try:
            multi = self._plan_devices(inputs)
            self.device_plan = multi[1] if multi is not None else None
            if multi is not None:
                plan = multi[0]
            else:
                plan = make_plan(self.model_info, inputs.settings, self.load_panel.hardware(), inputs.headroom,
                                 suggest=False)
        except Exception as exc:  # noqa: BLE001 - shown to the user, once per distinct message
            self.plan = None
            self.meter.clear(f"Can't plan this model: {exc}")
            msg = str(exc)
            if msg != self._last_plan_error:
                self._last_plan_error = msg
                notifier().error(exc, "Planning")
            self._update_actions()
            return
        self._last_plan_error = None
        self.plan = plan
        self.plan_inputs = inputs
        if self.loaded_plan is not None and self.load_result is not None and inputs == self.loaded_inputs:
            self.meter.set_measured(self.load_result.placement, self.loaded_plan)
            self.meter.set_devices(list(self.load_result.devices) or None, measured=True)
        else:
            self.meter.set_plan(plan)
            self.meter.set_devices(self.device_plan.to_json() if self.device_plan is not None else None)
        self.load_panel.show_resolved_layers(plan.gpu_layers)
        self._advice_timer.start()
        self._sweep_timer.start()
        self._update_actions()
        self.plan_changed.emit(plan)

    def _update_advice(self) -> None:
        """The same plan with reasons and suggestions (a few more estimates), for the advice panel."""
        inputs, model = self.plan_inputs, self.model_info
        if inputs is None or model is None or self.plan is None or self.plan.model is not model:
            return
        if self.device_plan is not None:  # the per-device plan already carries its reasons
            self.advice.set_plan(self.plan)
            return
        try:
            plan = make_plan(model, inputs.settings, self.load_panel.hardware(), inputs.headroom)
        except Exception as exc:  # noqa: BLE001 - the meter already shows the plan; say why advice is missing
            notifier().error(exc, "Suggestions")
            return
        self.plan = plan
        self.advice.set_plan(plan)
        self.plan_changed.emit(plan)

    def _plan_devices(self, inputs: PlanInputs) -> tuple[Plan, DevicePlan] | None:
        """The plan over several devices (workers, or more than one GPU); None for one GPU.

        Workers are probed off the GUI thread (``_probe_workers``); here only their last answers are
        used, and one not yet answered or unusable is a reason in words.
        """
        hw = self.load_panel.hardware()
        workers = self.load_panel.workers()
        assert self.model_info is not None
        if not is_multi(hw, workers):
            return None
        infos = [self._worker_infos[w] for w in workers if w in self._worker_infos]
        problems = [self._worker_problems.get(w, f"worker {w}: checking whether it answers…")
                    for w in workers if w not in self._worker_infos]
        plan, dp = multi_plan(self.model_info, inputs.settings, hw, inputs.headroom, infos=infos)
        plan = replace(plan, reasons=tuple(problems) + plan.reasons)
        return plan, replace(dp, problems=tuple(problems))

    def _probe_workers(self) -> None:
        """Ask each typed worker for its devices and memory (network: a background thread)."""
        endpoints = self.load_panel.workers()
        # Workers the loaded model is using are busy with this app's engine (a worker serves one
        # client at a time): their last answer stands.
        in_use = {str(d.get("endpoint")) for d in (self.load_result.devices if self.load_result else ())}
        known = {ep: info for ep, info in self._worker_infos.items() if ep in in_use}

        def work() -> tuple[dict[str, WorkerInfo], dict[str, str]]:
            ok: dict[str, WorkerInfo] = {}
            bad: dict[str, str] = {}
            for ep in endpoints:
                hypothetical = rpc_what_if(ep) or known.get(ep)
                if hypothetical is not None:
                    ok[ep] = hypothetical
                    continue
                try:
                    ok[ep] = rpc_probe(ep)
                except WorkerError as exc:
                    bad[ep] = f"{exc}; planning without it"
            return ok, bad

        def done(res: tuple[dict[str, WorkerInfo], dict[str, str]]) -> None:
            if self._closing or endpoints != self.load_panel.workers():
                return  # stale: the list changed meanwhile
            self._worker_infos, self._worker_problems = res
            for msg in res[1].values():
                notifier().warning(msg)
            self._schedule_plan()

        run_task(work, on_result=done, context="Checking the workers")
        self._schedule_plan()

    def apply_suggestion(self, suggestion: Suggestion) -> None:
        """Put a suggestion's settings into the form (the plan follows)."""
        self.load_panel.set_settings(suggestion.settings)
        self.statusBar().showMessage(f"Applied: {suggestion.text}", 6000)

    def _start_sweep(self) -> None:
        if self.model_info is None or self.plan is None:
            return
        self._sweep_id += 1
        sid = self._sweep_id
        model, settings = self.model_info, self.load_panel.settings()
        hw, headroom = self.load_panel.hardware(), self.load_panel.headroom()
        run_task(lambda: sweep(model, settings, hw, headroom), on_result=lambda d: self._on_sweep(sid, d),
                 context="Charting the trade-off")

    def _on_sweep(self, sid: int, data: TradeoffData) -> None:
        if sid == self._sweep_id and not self._closing:  # drop stale sweeps
            self.tradeoff.set_data(data)

    # ================================================================================================
    # engine
    # ================================================================================================
    def _engine_for_chat(self) -> Engine | None:
        return self._engine if self.load_result is not None else None

    def _tell_chat_loaded(self, _result: LoadResult) -> None:
        path = self.loaded_plan.model.path if self.loaded_plan is not None else None
        self.chat_panel.set_model_loaded(True, path)

    def _ensure_engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._engine_factory()
        return self._engine

    def load_model(self) -> None:
        """Load the current plan's model (on this machine's hardware, even if a what-if card is shown)."""
        if (self._loading or self.plan is None or self.model_info is None or self.plan_inputs is None
                or self.chat_panel.is_streaming):  # the engine is busy with the reply
            return
        inputs = self.plan_inputs
        plan = self.plan
        # What-if workers (a size instead of host:port) are for planning only.
        workers = tuple(w for w in self.load_panel.workers() if rpc_what_if(w) is None)
        model = self.model_info
        machine = self.load_panel.machine()
        use_multi = is_multi(machine, workers)
        if len(workers) < len(self.load_panel.workers()):
            notifier().info("What-if workers are only for planning: loading without them.")
        if use_multi:
            if inputs.hardware_choice != THIS_MACHINE:
                notifier().info("Loading on this machine's hardware (the what-if cards are only for planning).")
        elif inputs.hardware_choice != THIS_MACHINE:
            machine = self.load_panel.machine()
            try:
                plan = make_plan(self.model_info, inputs.settings, machine, inputs.headroom)
            except Exception as exc:  # noqa: BLE001
                notifier().error(exc, "Planning for this machine")
                return
            notifier().info("Loading on this machine's hardware (the what-if card is only for planning).")
        engine = self._ensure_engine()
        cancel = threading.Event()
        self._cancel = cancel
        self._loading = True
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.cancel_btn.setVisible(True)
        self.cancel_btn.setEnabled(True)
        self.engine_state.setText(f"Loading {Path(plan.model.path).name}…")
        self._update_actions()
        self.loaded_plan = None
        self.load_result = None
        self.advice.set_fallbacks(())
        self.chat_panel.set_model_loaded(False, None)

        def work(progress: Callable[[Any], None]) -> LoadResult:
            if use_multi:
                # Ask the workers again now: one that died since planning is left out, in words. A
                # worker serves one client at a time, so the model loaded now lets go of them first.
                engine.unload()
                multi, dp = multi_plan(model, inputs.settings, machine, inputs.headroom, workers)
                return engine.load(multi, progress=lambda f: progress(float(f)), cancel=cancel, devices=dp)
            return engine.load(plan, progress=lambda f: progress(float(f)), cancel=cancel)

        run_task(work, on_progress=self._on_load_progress,
                 on_result=lambda r: self._on_loaded(plan, inputs, r),
                 on_error=self._on_load_error, on_finished=self._on_load_finished, pool=engine_pool())

    def cancel_load(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self.cancel_btn.setEnabled(False)
            self.engine_state.setText("Cancelling…")

    def _on_load_progress(self, fraction: float) -> None:
        self.progress.setValue(int(max(0.0, min(1.0, fraction)) * 100))

    def _on_loaded(self, asked: Plan, inputs: PlanInputs, result: LoadResult) -> None:
        self._on_load_finished()  # idle again before anyone hears about the load (finished comes later)
        plan = result.plan or asked  # after a fallback, the plan that really loaded
        self.loaded_plan = plan
        self.loaded_inputs = inputs
        self.load_result = result
        if self.current_inputs() == inputs:
            self.meter.set_measured(result.placement, plan)
            self.meter.set_devices(list(result.devices) or None, measured=True)
        else:  # the form changed while loading: the meter keeps showing an estimate for it
            self._schedule_plan()
        self.advice.set_fallbacks(result.fallbacks)
        pl = result.placement
        self._update_actions()
        self.engine_state.setText(f"Loaded {Path(plan.model.path).name}: {pl.processor}, "
                                  f"{pl.gpu_layers}/{plan.model.n_layer + 1} layers on GPU "
                                  f"({result.load_seconds:.1f} s)")
        if result.fallbacks:
            notifier().warning(f"Loaded after {len(result.fallbacks)} fallback step(s): "
                               + "; ".join(f"{f.step} ({f.reason})" for f in result.fallbacks))
        else:
            notifier().info(f"Model loaded: {pl.processor}")
        self.loaded.emit(result)

    def _on_load_error(self, exc: BaseException) -> None:
        self._on_load_finished()
        if isinstance(exc, LoadCancelled):
            notifier().info("Loading was cancelled.")
        else:
            notifier().error(exc, "Loading the model")
        self.engine_state.setText("No model loaded")
        self._schedule_plan()

    def _on_load_finished(self) -> None:
        self._loading = False
        self._cancel = None
        self.progress.setVisible(False)
        self.cancel_btn.setVisible(False)
        self._update_actions()

    def unload_model(self) -> None:
        if self._engine is None or self.load_result is None or self._loading:
            return
        if self.chat_panel.is_streaming:
            self.chat_panel.stop()
        engine = self._engine
        engine.interrupt()  # a reply stuck before its first token must not keep Unload waiting
        self.load_result = None
        self.loaded_plan = None
        self.loaded_inputs = None
        self.engine_state.setText("Unloading…")
        self._update_actions()
        run_task(engine.unload, on_result=lambda _r: self._on_unloaded(), on_error=self._on_unload_error,
                 pool=engine_pool())

    def _on_unload_error(self, exc: BaseException) -> None:
        # The window already let go of the model; the next load starts a fresh engine process anyway.
        notifier().error(exc, "Unloading the model")
        self._on_unloaded()

    def _on_engine_lost(self, _reason: str) -> None:
        """The engine process died during a reply (the chat panel has said why): nothing is loaded now."""
        if self.load_result is None:
            return
        self.load_result = None
        self.loaded_plan = None
        self.loaded_inputs = None
        self._on_unloaded()
        if self.load_panel.workers():  # a worker may be what died: ask them all again for the plan
            self._probe_workers()

    def _on_unloaded(self) -> None:
        self.engine_state.setText("No model loaded")
        self.advice.set_fallbacks(())
        self._update_plan()  # the estimate replaces the measurement now, before anyone looks
        self._update_actions()
        self.unloaded.emit()

    def export_modelfile(self) -> None:
        """Open the Modelfile export dialog for the current model, plan and sampling settings."""
        if self.model_info is None or self.plan is None:
            notifier().info("Pick a model first: the Modelfile is written from its plan.")
            return
        plan = self.loaded_plan if self.load_result is not None and self.loaded_plan is not None else self.plan
        om = self.ollama_model
        source = om.name if om is not None and om.path == self.model_info.path else None
        dlg = ExportDialog(self.model_info, plan, self.chat_panel.sampling(), self.chat_panel.messages(), self,
                           ollama_source=source)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.open()
        self.export_dialog = dlg  # tests drive the open dialog

    def import_modelfile(self, path: str | None = None) -> ModelfileSpec | None:
        """Read an Ollama Modelfile and apply it: select its model, then its load and sampling settings.

        Every problem (a registry model in FROM, a deprecated parameter, a trailing comment, …) is
        reported with its line number through the notifier; nothing is applied from a broken file.
        """
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Import Ollama Modelfile", str(Path.home()),
                                                  "Modelfiles (Modelfile *.modelfile *.txt);;All files (*)")
            if not path:
                return None
        sampling = self.chat_panel.sampling()
        if _file_size(path) > LARGE_MODELFILE_BYTES:  # parse off the GUI thread; apply when it is checked
            name = Path(path).name

            def parsed(spec: ModelfileSpec) -> None:
                self._use_import(spec)

            run_task(lambda: read_modelfile(path, sampling=sampling), on_result=parsed,
                     on_error=lambda exc: notifier().error(exc, f"Import {name}"), context=f"Import {name}")
            return None
        try:
            spec = read_modelfile(path, sampling=sampling)
        except (ModelfileError, OSError) as exc:
            notifier().error(exc, f"Import {Path(path).name}")
            return None
        return self._use_import(spec)

    def _use_import(self, spec: ModelfileSpec) -> ModelfileSpec:
        """Apply a Modelfile that parsed and validated completely (nothing is applied from a broken one)."""
        self._import_spec = spec
        self.chat_panel.set_sampling(spec.sampling)
        if self.model_info is not None and self.model_info.path == spec.from_path:
            self._apply_import()
        else:
            self.library.add_files([spec.from_path])
            self.library.select_path(spec.from_path)
        return spec

    def _apply_import(self) -> None:
        spec, self._import_spec = self._import_spec, None
        if spec is None:
            return
        self.load_panel.set_settings(spec.apply_to(self.load_panel.settings()))
        notifier().info(f"Imported the Modelfile for {Path(spec.from_path).name}: "
                        f"context {self.load_panel.settings().n_ctx:,}, GPU layers "
                        f"{'auto' if spec.num_gpu is None else spec.num_gpu}.")

    def _update_actions(self, *_args: object) -> None:
        has_plan = self.plan is not None
        # Unload stays enabled while a reply streams: it stops the reply first.
        self.load_action.setEnabled(has_plan and not self._loading and not self.chat_panel.is_streaming)
        self.unload_action.setEnabled(self.load_result is not None and not self._loading)
        self.export_action.setEnabled(has_plan)

    # ================================================================================================
    # messages, drops, persistence
    # ================================================================================================
    def _on_message(self, level: str, text: str) -> None:
        """The one place messages reach the user: the status bar, plus a (non-blocking) box for errors."""
        prefix = {Level.ERROR.value: "Error: ", Level.WARNING.value: "Warning: "}.get(level, "")
        self.statusBar().showMessage(prefix + text, 15000 if level != Level.INFO.value else 6000)
        if level == Level.ERROR.value and not self._closing:
            box = self._error_box
            if box is None or not box.isVisible():
                box = plain_box(QMessageBox(QMessageBox.Icon.Critical, "LayerFit", text,
                                            QMessageBox.StandardButton.Ok, self))
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
        self._save_timer.start()

    def save_settings(self) -> None:
        """Write what the window remembers. Re-reads the file first: the chat panel saves its own keys."""
        current = AppSettings.load()
        s = self.app_settings
        s.model_folders = list(self.library.folders)
        s.extra_models = list(self.library.files)
        if self.model_info is not None:
            s.last_model = self._library_key()  # "ollama:NAME" for an Ollama model (names share blobs)
            s.load_settings = self.load_panel.settings().to_dict()
        s.headroom_mib = int(round(self.load_panel.headroom() / MiB))
        s.hardware_choice = self.load_panel.hardware_choice()
        s.workers = list(self.load_panel.workers())
        s.what_if_cards = self.load_panel.cards_spin.value()
        s.window_geometry = bytes(self.saveGeometry().toBase64().data()).decode()
        s.window_state = bytes(self.saveState().toBase64().data()).decode()
        s.last_chat_id = current.last_chat_id
        s.sampling = self.chat_panel.sampling().to_dict()
        try:
            s.save()
        except Exception as exc:  # noqa: BLE001 - reported in words
            notifier().error(exc, "Saving settings")

    def closeEvent(self, event: QCloseEvent) -> None:
        self._closing = True
        self._save_timer.stop()
        self.chat_panel.shutdown()
        self.save_settings()
        if self._cancel is not None:
            self._cancel.set()
        if self._engine is not None:
            engine = self._engine
            engine.interrupt()  # closing never waits behind a stuck reply (hard limit: STOP_DEADLINE)
            run_task(engine.close, pool=engine_pool(), context="Closing the engine")
        wait_all(15000)
        super().closeEvent(event)


#: A Modelfile larger than this is parsed on a worker thread (a 20,000-line SYSTEM is ~1 MB).
LARGE_MODELFILE_BYTES = 256 * 1024


def _file_size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except (OSError, ValueError):
        return 0


@contextlib.contextmanager
def _restoring(what: str, problems: list[str]) -> Iterator[None]:
    """Restore one remembered setting; if its saved value can't be used, note ``what`` and why."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - a saved value must never stop the window from opening
        problems.append(f"{what} ({describe(exc)})")


def _gguf_paths(mime: Any) -> list[str]:
    if mime is None or not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile().lower().endswith(".gguf")]
