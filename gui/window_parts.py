"""The main window's parts that are not wiring: its layout, restoring and saving what it remembers,
Modelfile import and export, and the one place messages reach the user. Each function takes the window;
``gui.mainwindow`` stays layout-free wiring."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core.modelfile import ModelfileSpec
from core.modelfile_report import ImportReport, read_import
from core.session import MeterSource
from core.settings import AppSettings
from core.tradeoff import TradeoffData, sweep
from gui import dialog_dirs
from gui.advice import AdvicePanel
from gui.chat_panel import ChatPanel
from gui.export_dialog import ExportDialog
from gui.library import LibraryPanel
from gui.load_panel import LoadPanel
from gui.meter import MeterWidget
from gui.model_header import ModelHeader
from gui.notify import Level, notifier
from gui.plain import plain_box
from gui.tradeoff import TradeoffView
from gui.workers import run_task

if TYPE_CHECKING:
    from gui.mainwindow import MainWindow


def build_ui(win: MainWindow, prefetch: bool) -> None:
    s = win.app_settings
    win.library = LibraryPanel(s.model_folders, s.extra_models, prefetch=prefetch)
    win.library.setMinimumWidth(180)
    win.header = ModelHeader()
    win.model_title, win.model_facts, win.ollama_line = win.header.title, win.header.facts, win.header.ollama_line
    win.load_panel = LoadPanel()
    win.meter = MeterWidget()
    win.meter.setObjectName("meterFrame")
    win.meter.setStyleSheet("QFrame#meterFrame { border: 1px solid palette(mid); border-radius: 6px; }")
    win.advice = AdvicePanel()
    center = QWidget()
    cl = QVBoxLayout(center)
    cl.setContentsMargins(6, 0, 6, 0)
    cl.setSpacing(10)
    widgets: tuple[QWidget, ...] = (win.header, win.load_panel, QLabel("<b>Where it will live</b>"), win.meter,
                                    win.advice)
    for w in widgets:
        cl.addWidget(w)
    cl.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(center)
    scroll.setFrameShape(QScrollArea.Shape.NoFrame)
    # never narrower than the form and meter need: the column scrolls down, it never clips sideways
    scroll.setMinimumWidth(center.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    win.tabs = QTabWidget()
    win.chat_panel = ChatPanel(win._engine_for_chat)
    win.tabs.addTab(win.chat_panel, "Chat")
    win.tradeoff = TradeoffView()
    win.tabs.addTab(win.tradeoff, "Trade-off")
    win.splitter = QSplitter(Qt.Orientation.Horizontal)
    parts: tuple[tuple[QWidget, int], ...] = ((win.library, 0), (scroll, 3), (win.tabs, 4))
    for i, (part, stretch) in enumerate(parts):
        win.splitter.addWidget(part)
        win.splitter.setStretchFactor(i, stretch)
    win.splitter.setSizes([210, 560, 670])
    win.splitter.setChildrenCollapsible(False)
    win.setCentralWidget(win.splitter)
    win.engine.add_to(win.statusBar())
    win.engine_state = win.engine.state
    win.resize(1440, 900)


def restore_window(win: MainWindow) -> None:
    s, problems = win.app_settings, win.session.restore_problems
    try:
        if s.window_geometry:
            win.restoreGeometry(QByteArray.fromBase64(s.window_geometry.encode()))
        if s.window_state:
            win.restoreState(QByteArray.fromBase64(s.window_state.encode()))
    except Exception as exc:  # noqa: BLE001 - a saved value must never stop the window from opening
        problems.append(f"window layout ({exc})")
    win.load_panel.set_headroom(win.session.headroom)
    win.load_panel.set_hardware_choice(win.session.hardware_choice, win.session.whatif_ram, win.session.cards)
    if win.session.workers:
        win.load_panel.set_workers(list(win.session.workers))
    win.set_color_scheme(s.color_scheme)
    if s.last_model:
        win.library.select_path(s.last_model)


def report_restore_problems(win: MainWindow) -> None:
    problems, win.session.restore_problems = win.session.restore_problems, []
    notice, win.app_settings.notice = win.app_settings.notice, None
    if notice:  # the settings file was damaged (kept aside) or held values that were ignored
        notifier().warning(notice)
    if problems:
        notifier().warning("Some saved settings could not be used, so they are back to their defaults: "
                           + "; ".join(problems))


def export_modelfile(win: MainWindow) -> None:
    """Export the *selected* model's plan for this machine (never the loaded one of another model)."""
    s = win.session
    s.set_sampling(win.chat_panel.sampling())
    plan = s.export_plan()
    if s.model is None or plan is None:
        notifier().info("Pick a model first: the Modelfile is written from its plan.")
        return
    notes = ([f"The what-if card ({s.hardware_choice}) was only for planning: this file is for this "
              "machine's hardware."] if s.is_what_if() else [])
    dlg = ExportDialog(s.model, plan, s.sampling, win.chat_panel.messages(), win, requested=s.settings,
                       ollama_source=s.ollama.name if s.ollama is not None else None, extra_notes=notes)
    dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dlg.open()
    win.export_dialog = dlg  # tests drive the open dialog


def import_modelfile(win: MainWindow, path: str | None = None) -> ModelfileSpec | None:
    """Read an Ollama Modelfile and apply it: every problem is reported at once, with line numbers;
    nothing is applied from a broken file; what LayerFit can't apply is named."""
    if path is None:
        path, _ = QFileDialog.getOpenFileName(win, "Import Ollama Modelfile", dialog_dirs.last_dir(),
                                              "Modelfiles (Modelfile *.modelfile *.Modelfile *.txt);;All files (*)")
        if not path:
            return None
    dialog_dirs.remember(path)
    sampling = win.chat_panel.sampling()
    if _file_size(path) > LARGE_MODELFILE_BYTES:  # parse off the GUI thread; apply when it is checked
        name = Path(path).name

        def parsed(report: ImportReport) -> None:
            _use_import(win, path, report)

        run_task(lambda: read_import(path, sampling=sampling), on_result=parsed,
                 on_error=lambda exc: notifier().error(exc, f"Import {name}"), context=f"Import {name}")
        return None
    return _use_import(win, path, read_import(path, sampling=sampling))


#: A Modelfile larger than this is parsed on a worker thread (a 20,000-line SYSTEM is ~1 MB).
LARGE_MODELFILE_BYTES = 256 * 1024


def _file_size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except (OSError, ValueError):
        return 0


def _use_import(win: MainWindow, path: str, report: ImportReport) -> ModelfileSpec | None:
    """Apply a Modelfile that parsed and validated completely (nothing is applied from a broken one)."""
    if report.spec is None:
        notifier().error(report.summary(), f"Import {Path(path).name}")
        return None
    spec = report.spec
    if report.warnings or report.not_applied:
        notifier().warning(f"Imported {Path(path).name}.\n" + report.summary())
    if not win.session.begin_import(spec):
        win.library.add_files([spec.from_path])
        win.library.select_path(spec.from_path)
    else:
        notifier().info(f"Imported the Modelfile for {Path(spec.from_path).name}: context "
                        f"{win.session.settings.n_ctx:,}, GPU layers "
                        f"{'auto' if spec.num_gpu is None else spec.num_gpu}.")
    return spec


def show_message(win: MainWindow, level: str, text: str) -> None:
    """The one place messages reach the user: the status bar, plus a (non-blocking) box for errors."""
    prefix = {Level.ERROR.value: "Error: ", Level.WARNING.value: "Warning: "}.get(level, "")
    first = text.splitlines()[0] if text else ""
    sb = win.statusBar()
    # QStatusBar paints a message over its permanent widgets when it is too long: elide it to the room left
    room = sb.width() - sum(w.width() for w in sb.findChildren(QWidget) if w.isVisible()
                            and w.parent() is sb and w is not sb) - 24
    line = prefix + first
    if sb.isVisible() and room >= 200:  # before the window is shown its width means nothing: keep it whole
        line = sb.fontMetrics().elidedText(line, Qt.TextElideMode.ElideRight, room)
    sb.showMessage(line, 15000 if level != Level.INFO.value else 6000)
    win.statusBar().setToolTip(text)
    if level == Level.ERROR.value and not win._closing:
        box = win._error_box
        if box is None or not box.isVisible():
            box = plain_box(QMessageBox(QMessageBox.Icon.Critical, "LayerFit", text,
                                        QMessageBox.StandardButton.Ok, win))
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.destroyed.connect(lambda *_: setattr(win, "_error_box", None))
            win._error_box = box
            box.open()  # not exec(): never block the event loop
        else:
            box.setText(box.text() + "\n\n" + text)


def save_settings(win: MainWindow) -> None:
    """Write what the window remembers. Re-reads the file first: the chat panel saves its own keys."""
    current = AppSettings.load()
    s = win.app_settings
    s.model_folders, s.extra_models = list(win.library.folders), list(win.library.files)
    win.session.set_sampling(win.chat_panel.sampling())
    win.session.save_into(s)
    s.window_geometry = bytes(win.saveGeometry().toBase64().data()).decode()
    s.window_state = bytes(win.saveState().toBase64().data()).decode()
    s.last_chat_id = current.last_chat_id
    s.last_folder = dialog_dirs.current()
    try:
        s.save()
    except Exception as exc:  # noqa: BLE001 - reported in words
        notifier().error(exc, "Saving settings")


def render_plan(win: MainWindow) -> None:
    """Meter, layer slider, advice and chart follow the session's one shown plan."""
    s = win.session
    if s.model is None:
        return
    plan = s.shown_plan()
    if plan is None:
        msg = s.plan_error or "no plan"
        win.meter.clear(f"Can't plan this model: {msg}")
        if msg != win._last_error:
            win._last_error = msg
            notifier().error(msg, "Planning")
        return
    win._last_error = None
    if s.meter_source() is MeterSource.MEASURED and s.loaded is not None:
        win.meter.set_measured(s.loaded.result.placement, s.loaded.plan)
        win.meter.set_devices(list(s.loaded.result.devices) or None, measured=True)
    else:
        win.meter.set_plan(plan)
        win.meter.set_devices(s.device_plan.to_json() if s.device_plan is not None else None)
    if s.plan is not None:
        win.load_panel.show_resolved_layers(s.plan.gpu_layers)
    win.ollama_line.check(s.ollama, s.hardware(), not s.is_what_if(), s.headroom)
    win._timers["advice"].start()
    win._timers["sweep"].start()
    win.plan_changed.emit(plan)


def update_advice(win: MainWindow) -> None:
    try:
        plan = win.session.advise()
    except Exception as exc:  # noqa: BLE001 - the meter already shows the plan; say why advice is missing
        notifier().error(exc, "Suggestions")
        return
    if plan is not None:
        win.advice.set_plan(plan)
        win.plan_changed.emit(plan)


def start_sweep(win: MainWindow, sid: int) -> None:
    """Chart the trade-off off the GUI thread; a result whose ``sid`` is no longer the latest is dropped."""
    s = win.session
    if s.model is None or s.plan is None:
        return
    model, settings, hw, headroom = s.model, s.settings, s.hardware(), s.headroom

    def show(data: TradeoffData) -> None:
        if sid == win._sweep_id and not win._closing:  # drop stale sweeps
            win.tradeoff.set_data(data)

    run_task(lambda: sweep(model, settings, hw, headroom), on_result=show, context="Charting the trade-off")


def gguf_paths(mime: Any) -> list[str]:
    if mime is None or not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile().lower().endswith(".gguf")]


def probe_workers(win: MainWindow) -> None:
    """Ask each worker for its devices and memory (network: a background thread); the session plans
    with their answers. Workers the loaded model uses are busy with this app's engine (a worker serves
    one client at a time): their last answer stands."""
    from core.rpc import WorkerError, WorkerInfo, what_if_worker
    from core.rpc import probe as rpc_probe

    s = win.session
    endpoints = s.workers
    in_use = {str(d.get("endpoint")) for d in (s.loaded.result.devices if s.loaded is not None else ())}
    known = {ep: info for ep, info in s.worker_infos.items() if ep in in_use}

    def work() -> tuple[dict[str, WorkerInfo], dict[str, str]]:
        ok: dict[str, WorkerInfo] = {}
        bad: dict[str, str] = {}
        for ep in endpoints:
            hypothetical = what_if_worker(ep) or known.get(ep)
            if hypothetical is not None:
                ok[ep] = hypothetical
                continue
            try:
                ok[ep] = rpc_probe(ep)
            except WorkerError as exc:
                bad[ep] = f"{exc}; planning without it"
        return ok, bad

    def done(res: tuple[dict[str, WorkerInfo], dict[str, str]]) -> None:
        if win._closing or endpoints != s.workers:
            return  # stale: the list changed meanwhile
        for msg in res[1].values():
            notifier().warning(msg)
        s.set_worker_answers(*res)

    if endpoints:
        run_task(work, on_result=done, context="Checking the workers")


def start_referee(win: MainWindow) -> None:
    """An architecture LayerFit has not verified: let llama.cpp's no-alloc pass check the numbers in the
    background (a child process, about a second); the plan then says "checked by llama.cpp"."""
    from core import referee
    from core.archs import arch_layout

    s = win.session
    info, plan = s.model, s.plan
    if info is None or plan is None or arch_layout(info).verified:
        return
    path, settings = info.path, plan.settings

    def done(result: object) -> None:
        if isinstance(result, referee.RefereeResult) and result.ok:
            referee.remember(path, settings, result)
            if s.model is not None and s.model.path == path:
                s.refresh()

    run_task(lambda: referee.run_referee(path, settings), on_result=done, on_error=lambda _exc: None)
