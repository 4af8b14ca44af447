"""The one worker abstraction of the GUI (after Picard's util/thread.py and superqt's workers).

``run_task(fn, ...)`` runs ``fn`` on a thread pool and delivers its result, error or progress back on
the GUI thread through a signals object. ``run_stream(gen_fn, ...)`` does the same for a generator,
one ``on_item`` per yielded value (token streaming). Errors without an ``on_error`` go to the notifier,
so nothing is swallowed.

The engine must be driven from one thread at a time: use ``engine_pool()``, a single-thread pool whose
thread never expires, for every engine call (load, chat, unload).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from gui.notify import notifier

_ids = itertools.count(1)
_live: dict[int, Task] = {}  # keep tasks (and their signal objects) alive until they finish


class TaskSignals(QObject):
    """Signals of one task. QRunnable isn't a QObject, so they live here (emitted from the worker thread,
    delivered queued on the GUI thread)."""

    progress = Signal(object)
    item = Signal(object)
    result = Signal(object)
    error = Signal(object)
    finished = Signal()


class Task(QRunnable):
    """A unit of background work. ``fn`` receives a ``progress`` callable when ``with_progress`` is set."""

    def __init__(self, fn: Callable[..., Any], *, stream: bool = False, with_progress: bool = False) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.id = next(_ids)
        self.fn = fn
        self.stream = stream
        self.with_progress = with_progress
        self.signals = TaskSignals()
        self.cancelled = False

    def run(self) -> None:
        try:
            kwargs = {"progress": self.signals.progress.emit} if self.with_progress else {}
            if self.stream:
                gen: Iterator[Any] = self.fn(**kwargs)
                for value in gen:
                    self.signals.item.emit(value)
                self.signals.result.emit(None)
            else:
                self.signals.result.emit(self.fn(**kwargs))
        except BaseException as exc:  # noqa: BLE001 - every error is delivered, none swallowed
            self.signals.error.emit(exc)
        finally:
            self.signals.finished.emit()


def _start(task: Task, on_result: Callable[[Any], None] | None, on_error: Callable[[BaseException], None] | None,
           on_progress: Callable[[Any], None] | None, on_item: Callable[[Any], None] | None,
           on_finished: Callable[[], None] | None, pool: QThreadPool | None, context: str | None) -> Task:
    s = task.signals
    if on_result is not None:
        s.result.connect(on_result)
    s.error.connect(on_error if on_error is not None else (lambda exc: notifier().error(exc, context)))
    if on_progress is not None:
        s.progress.connect(on_progress)
    if on_item is not None:
        s.item.connect(on_item)
    if on_finished is not None:
        s.finished.connect(on_finished)
    _live[task.id] = task
    s.finished.connect(lambda tid=task.id: _live.pop(tid, None))
    (pool or QThreadPool.globalInstance()).start(task)
    return task


def run_task(fn: Callable[..., Any], *, on_result: Callable[[Any], None] | None = None,
             on_error: Callable[[BaseException], None] | None = None,
             on_progress: Callable[[Any], None] | None = None, on_finished: Callable[[], None] | None = None,
             pool: QThreadPool | None = None, context: str | None = None) -> Task:
    """Run ``fn()`` (or ``fn(progress=...)`` when ``on_progress`` is given) off the GUI thread."""
    task = Task(fn, with_progress=on_progress is not None)
    return _start(task, on_result, on_error, on_progress, None, on_finished, pool, context)


def run_stream(gen_fn: Callable[..., Iterator[Any]], *, on_item: Callable[[Any], None],
               on_done: Callable[[Any], None] | None = None,
               on_error: Callable[[BaseException], None] | None = None,
               on_finished: Callable[[], None] | None = None,
               pool: QThreadPool | None = None, context: str | None = None) -> Task:
    """Iterate ``gen_fn()`` off the GUI thread; each value arrives in ``on_item`` on the GUI thread."""
    task = Task(gen_fn, stream=True)
    return _start(task, on_done, on_error, None, on_item, on_finished, pool, context)


_engine_pool: QThreadPool | None = None


def engine_pool() -> QThreadPool:
    """The single thread that talks to the engine (calls are serialised; the thread never expires)."""
    global _engine_pool
    if _engine_pool is None:
        _engine_pool = QThreadPool()
        _engine_pool.setMaxThreadCount(1)
        _engine_pool.setExpiryTimeout(-1)
    return _engine_pool


def wait_all(timeout_ms: int = 30000) -> bool:
    """Wait for background work to end (app shutdown, tests)."""
    ok = QThreadPool.globalInstance().waitForDone(timeout_ms)
    if _engine_pool is not None:
        ok = _engine_pool.waitForDone(timeout_ms) and ok
    return ok
