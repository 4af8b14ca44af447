"""The engine's life cycle for the window: load (off the GUI thread, with progress and Cancel), unload,
an engine lost mid-reply, close. What loaded is told to the session (``core.session``), which decides
what the meter shows; this object only drives the engine and its three status-bar widgets."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar, QWidget

from core.engine import Engine, LoadCancelled, LoadResult
from core.fit import Plan
from core.session import PlanInputs, Session
from gui.notify import notifier
from gui.plain import plain_label
from gui.workers import engine_pool, run_task


class EngineControl(QObject):
    """Owns the engine process handle. Signals: loaded(LoadResult), unloaded(), busy_changed()."""

    loaded = Signal(object)
    unloaded = Signal()
    busy_changed = Signal()

    def __init__(self, session: Session, factory: Callable[[], Engine], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self._factory = factory
        self.engine: Engine | None = None
        self.loading = False
        self._cancel: threading.Event | None = None
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setMaximumWidth(200)
        self.progress.setFormat("Loading… %p%")
        self.progress.setVisible(False)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop loading the model")
        self.cancel_btn.setVisible(False)
        self.state = plain_label(QLabel("No model loaded"))  # holds file names: never markup
        self.state.setMaximumWidth(420)  # a long model name must not push the messages off the bar
        self.cancel_btn.clicked.connect(self.cancel)

    def add_to(self, bar: QStatusBar) -> None:
        for w in (self.progress, self.cancel_btn, self.state):
            bar.addPermanentWidget(w)

    def _set_state(self, text: str) -> None:
        self.state.setText(text)
        self.state.setToolTip(text)

    def load(self) -> bool:
        """Load the session's model on this machine. False when there is nothing to load or a load runs."""
        s = self.session
        try:
            req = s.load_request()
        except Exception as exc:  # noqa: BLE001 - said in words
            notifier().error(exc, "Planning for this machine")
            return False
        if self.loading or req is None:
            return False
        plan, inputs = req.plan, req.inputs
        if len(req.workers) < len(s.workers):
            notifier().info("What-if workers are only for planning: loading without them.")
        if s.is_what_if():
            notifier().info("Loading on this machine's hardware (the what-if card is only for planning).")
        if self.engine is None:
            self.engine = self._factory()
        engine, cancel = self.engine, threading.Event()
        self._cancel, self.loading = cancel, True
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.cancel_btn.setVisible(True)
        self.cancel_btn.setEnabled(True)
        self._set_state(f"Loading {Path(plan.model.path).name}…")
        s.on_unloaded()
        self.busy_changed.emit()

        def work(progress: Callable[[Any], None]) -> LoadResult:
            if req.multi:
                # Ask the workers again now: one that died since planning is left out, in words. A
                # worker serves one client at a time, so the model loaded now lets go of them first.
                engine.unload()
                multi, dp = req.devices_plan()
                return engine.load(multi, progress=lambda f: progress(float(f)), cancel=cancel, devices=dp)
            return engine.load(plan, progress=lambda f: progress(float(f)), cancel=cancel)

        run_task(work, on_progress=lambda f: self.progress.setValue(int(max(0.0, min(1.0, f)) * 100)),
                 on_result=lambda r: self._on_loaded(plan, inputs, r), on_error=self._on_error,
                 on_finished=self._idle, pool=engine_pool())
        return True

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self.cancel_btn.setEnabled(False)
            self._set_state("Cancelling…")

    def _idle(self) -> None:
        was = self.loading
        self.loading, self._cancel = False, None
        self.progress.setVisible(False)
        self.cancel_btn.setVisible(False)
        if was:
            self.busy_changed.emit()

    def _on_loaded(self, asked: Plan, inputs: PlanInputs, result: LoadResult) -> None:
        self._idle()  # idle again before anyone hears about the load (finished comes later)
        self.session.on_loaded(asked, inputs, result)
        plan = result.plan or asked
        pl = result.placement
        self._set_state(f"Loaded {Path(plan.model.path).name}: {pl.processor}, {pl.gpu_layers}/"
                        f"{plan.n_layers_total} layers on GPU ({result.load_seconds:.1f} s)")
        if result.fallbacks:
            notifier().warning(f"Loaded after {len(result.fallbacks)} fallback step(s): "
                               + "; ".join(f"{f.step} ({f.reason})" for f in result.fallbacks))
        else:
            notifier().info(f"Model loaded: {pl.processor}")
        self.loaded.emit(result)

    def _on_error(self, exc: BaseException) -> None:
        self._idle()
        if isinstance(exc, LoadCancelled):
            notifier().info("Loading was cancelled.")
        else:
            notifier().error(exc, "Loading the model")
        self._set_state("No model loaded")

    def unload(self) -> None:
        if self.engine is None or self.session.loaded is None or self.loading:
            return
        engine = self.engine
        engine.interrupt()  # a reply stuck before its first token must not keep Unload waiting
        self.session.on_unloaded()
        self._set_state("Unloading…")
        self.busy_changed.emit()

        def failed(exc: BaseException) -> None:  # the next load starts a fresh engine process anyway
            notifier().error(exc, "Unloading the model")
            self._gone()

        run_task(engine.unload, on_result=lambda _r: self._gone(), on_error=failed, pool=engine_pool())

    def lost(self) -> None:
        """The engine process died during a reply (the chat panel has said why): nothing is loaded now."""
        if self.session.loaded is not None:
            self.session.on_unloaded()
            self._gone()

    def _gone(self) -> None:
        self._set_state("No model loaded")
        self.busy_changed.emit()
        self.unloaded.emit()

    def close(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
        if self.engine is not None:
            self.engine.interrupt()  # closing never waits behind a stuck reply (hard limit: STOP_DEADLINE)
            run_task(self.engine.close, pool=engine_pool(), context="Closing the engine")
