"""The engine: llama.cpp in a child process that owns exactly one Llama.

:class:`Engine` is the parent-side handle the CLI and the GUI use. Every load starts a fresh child
process (multiprocessing "spawn": never fork a process that may hold Qt or CUDA state), so:

- a CUDA abort, a segfault or the OOM killer ends the child, never the caller: the caller gets
  :class:`EngineCrashed` with the signal's name and can load again;
- unloading ends the child, so every byte it held on the GPU goes back to the driver (NVML shows it),
  and loading another model unloads the first;
- a failed rung of the fallback ladder leaves no half-freed CUDA state behind for the next rung.

Loads follow the fitter's :class:`~core.fit.Plan`. When one fails for lack of memory (the
``ValueError('Failed to create llama_context')`` llama-cpp-python raises after a cudaMalloc failure,
an out-of-memory log line, or the child dying mid-load), the engine takes the next plan from the
fitter's ladder (DESIGN.md's lever order, down to CPU only) and records a :class:`Fallback`.

Threading: call ``load``/``chat``/``unload`` from one worker thread at a time; ``stop()`` and
``interrupt()`` may be called from any thread. Stop sets a shared Event the child checks after each
token; a reply that yields nothing is cut short inside the child (its watchdog: llama.cpp's abort
callback during prompt evaluation, a SIGINT for Python work such as a looping chat template), and one
that still runs ``STOP_DEADLINE`` seconds later loses its process (``EngineStopped``). ``cancel`` for a
load is a ``threading.Event`` the caller sets from any thread. The child exits by itself when this
process dies (SIGTERM, SIGKILL, a crash), so a model is never left loaded by an orphan.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from typing import Any

from core import calibration
from core.devices import (
    DevicePlan,
    check_workers,
    dead_workers,
    device_spec,
    measure_devices,
    worker_endpoints,
)
from core.errors import PlainError
from core.fit import Plan, cpu_only_plan, ladder_steps
from core.hardware import cpu_key, nvml_used
from core.llama_log import parse_log, placement_from_log
from core.loadsettings import LoadSettings
from core.placement import Placement
from core.rpc import WorkerError
from core.sampling import SamplingSettings
from core.selftest import signal_name
from core.speed import SpeedModel, predict_tps


class EngineError(Exception, PlainError):
    """Anything the engine could not do, with a message for a person."""


class EngineCrashed(EngineError):
    """The child process died (signal, abort, OOM kill). The parent survives and can load again."""


class LoadCancelled(EngineError):
    """The user cancelled a load."""


class EngineStopped(EngineCrashed):
    """A reply did not stop within ``STOP_DEADLINE`` after Stop or Unload, so its process was ended.

    A subclass of EngineCrashed because the outcome is the same for the caller: nothing is loaded now,
    and loading again works.
    """


#: Seconds a reply gets to end after Stop (or Unload, or closing) before its process is ended. The child
#: stops a reply from inside well before this (core.engine_child's watchdog); this is the hard limit.
STOP_DEADLINE = 2.0


@dataclass(frozen=True)
class Fallback:
    """One step the fallback ladder took: why, and where the model went instead."""

    step: str  # "fewer GPU layers", "KV cache in RAM", "CPU only", …
    reason: str
    settings: LoadSettings
    gpu_layers: int
    processor: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "reason": self.reason,
            "settings": self.settings.to_dict(),
            "gpu_layers": self.gpu_layers,
            "processor": self.processor,
        }


@dataclass(frozen=True)
class LoadResult:
    placement: Placement
    settings: LoadSettings  # what was actually loaded with
    fallbacks: tuple[Fallback, ...] = ()
    load_seconds: float = 0.0
    gpu_offload_supported: bool = False
    n_ctx: int = 0  # the context llama.cpp really created
    plan: Plan | None = field(default=None, repr=False, compare=False)  # the plan that finally loaded
    buffers: dict[str, float] = field(default_factory=dict, compare=False)  # "CUDA0.model" → MiB, from the log
    devices: tuple[dict[str, Any], ...] = field(default=(), compare=False)  # measured per device (core.devices)

    def to_dict(self) -> dict[str, Any]:
        return {
            "placement": self.placement.to_dict(),
            "settings": self.settings.to_dict(),
            "fallbacks": [f.to_dict() for f in self.fallbacks],
            "load_seconds": round(self.load_seconds, 3),
            "gpu_offload_supported": self.gpu_offload_supported,
            "n_ctx": self.n_ctx,
            "buffers_mib": dict(self.buffers),
            **({"devices": [dict(d) for d in self.devices]} if self.devices else {}),
        }


@dataclass(frozen=True)
class ChatEvent:
    """A streamed piece of a reply. ``kind``: "token", "done" (with stats), "context_full".

    The "done" event's ``text`` is the whole reply; ``finish_reason`` is "stop" (end of turn or a
    stop string), "length" (max tokens or the context), or "stopped" (the user pressed Stop).
    ``time_to_first_token`` is measured in the caller's process, from ``chat()`` to the first token.
    """

    kind: str
    text: str = ""
    tokens: int = 0
    tokens_per_second: float = 0.0
    time_to_first_token: float = 0.0
    finish_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Ladder = Callable[[Plan], list[Plan]]

#: Seconds a child gets to leave on its own (after "shutdown", or after cancel) before it is terminated.
GRACE_SECONDS = 5.0


def _fitter_ladder(plan: Plan) -> list[Plan]:
    """The fitter's fallback plans, in DESIGN.md's lever order, down to CPU only."""
    return list(ladder_steps(plan))


def _visible_device(plan: Plan) -> str | None:
    """The one GPU the plan is for, as CUDA_VISIBLE_DEVICES wants it (its NVML UUID, else its index).

    The plan and the NVML measurement cover one GPU; without this llama.cpp would split layers over
    every GPU it sees. None when the user already chose devices (their CUDA_VISIBLE_DEVICES wins) or
    the plan has no probed GPU.
    """
    gpu = plan.hardware.gpu if plan.hardware is not None else None
    if gpu is None or gpu.what_if or "CUDA_VISIBLE_DEVICES" in os.environ:
        return None
    return gpu.uuid or str(gpu.index)


def cpu_only(plan: Plan) -> Plan:
    """``plan`` moved entirely to the CPU (the ladder's last rung), with CPU-side numbers."""
    return cpu_only_plan(plan, "not used", "CPU only: the GPU is not used.")


def step_name(prev: Plan, nxt: Plan) -> str:
    """Name the lever that turns ``prev`` into ``nxt`` (DESIGN.md's order)."""
    if nxt.gpu_layers == 0 or not nxt.use_gpu:
        return "CPU only"
    if nxt.settings.experts_on_cpu and not prev.settings.experts_on_cpu:
        return "expert tensors in RAM"
    if not nxt.settings.offload_kqv and prev.settings.offload_kqv:
        return "KV cache in RAM"
    if nxt.gpu_layers < prev.gpu_layers:
        return "fewer GPU layers"
    return "other settings"


def _log_tail(path: str | None, max_lines: int = 8) -> list[str]:
    """The last meaningful lines the child printed (aborts and CUDA errors print to stderr)."""
    if not path:
        return []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [ln.rstrip() for ln in f.readlines()[-200:]]
    except OSError:
        return []
    keys = ("error", "abort", "assert", "cuda", "out of memory", "failed", "segmentation")
    return [ln for ln in lines if ln and any(k in ln.lower() for k in keys)][-max_lines:]


def crash_message(exitcode: int | None, tail: list[str] | None = None, *, during: str = "",
                  system_info: str = "") -> str:
    """Plain words for a dead child: the signal or exit status, a likely cause, what to do, llama.cpp's last error.

    ``system_info`` is the child's ``llama_print_system_info()``: with it, a crash can name the CPU features
    involved (AMX compiled in, or instructions this CPU lacks).
    """
    where = f" while {during}" if during else ""
    if exitcode is None:
        text = f"the engine process stopped answering{where}"
    elif exitcode < 0:
        name = signal_name(-exitcode)
        text = f"the engine process was killed by {name}{where}"
        hint = {"SIGKILL": "the system may have run out of memory",
                "SIGABRT": "llama.cpp aborted",
                "SIGBUS": "the model file may have changed or been truncated while mapped"}.get(name)
        if hint:
            text += f" ({hint})"
        elif name in ("SIGSEGV", "SIGILL", "SIGFPE"):
            text += f" (llama.cpp crashed). {_crash_cause(system_info)}"
    else:
        text = f"the engine process exited with status {exitcode}{where}"
    if tail:
        text += f" Last words from llama.cpp: {tail[-1]}" if text.endswith(".") else f": {tail[-1]}"
    return text


def _crash_cause(system_info: str) -> str:
    """The likely cause of a llama.cpp crash and what to do, naming the CPU features involved when known."""
    from core.selftest import cpu_feature_report

    missing, amx = cpu_feature_report(system_info)
    if amx:
        cause = (f"Likely cause: this llama.cpp build has Intel AMX compiled in ({', '.join(amx)}), which crashes "
                 "on many AMX CPUs (llama.cpp issue #20824)")
    elif missing:
        cause = f"Likely cause: the llama.cpp build uses CPU instructions this CPU lacks ({', '.join(missing)})"
    else:
        cause = "Likely cause: a llama.cpp build that doesn't suit this CPU, or running out of memory"
    return (f"{cause}. What to do: run `layerfit doctor`, which test-decodes the demo model; if it fails too, "
            "rebuild llama.cpp with `make rebuild-llama`.")


def _oom_reason(info: dict[str, Any], plan: Plan) -> str:
    lines = info.get("oom_lines") or []
    detail = lines[-1] if lines else info.get("message", "")
    where = "GPU memory" if plan.gpu_layers > 0 else "memory"
    return f"out of {where} with {plan.gpu_layers} GPU layers ({detail})"


class _Child:
    """One running child process and its pipe."""

    def __init__(self, proc: Any, conn: Connection, stop: Any, cancel: Any, log_path: str) -> None:
        self.proc = proc
        self.conn = conn
        self.stop = stop
        self.cancel = cancel
        self.log_path = log_path
        self.hello: dict[str, Any] = {}

    def recv(self, timeout: float | None) -> tuple[Any, ...] | None:
        """The next message, None on timeout. Raises EngineCrashed if the child is gone."""
        ready = wait([self.conn, self.proc.sentinel], timeout)
        if not ready:
            return None
        if self.conn in ready or self.conn.poll():
            try:
                return tuple(self.conn.recv())
            except (EOFError, OSError):
                pass
        self.proc.join(1.0)
        raise EngineCrashed(crash_message(self.proc.exitcode, _log_tail(self.log_path),
                                          system_info=str(self.hello.get("system_info", ""))))

    def send(self, *msg: Any) -> None:
        try:
            self.conn.send(msg)
        except (BrokenPipeError, EOFError, OSError) as exc:
            self.proc.join(1.0)
            raise EngineCrashed(crash_message(self.proc.exitcode, _log_tail(self.log_path),
                                          system_info=str(self.hello.get("system_info", "")))) from exc

    @property
    def pid(self) -> int | None:
        return int(self.proc.pid) if self.proc.pid is not None else None

    def end(self, graceful: bool = True) -> None:
        """Stop the process: ask, then SIGTERM, then SIGKILL. Always reaps it and removes its log."""
        if graceful and self.proc.is_alive():
            with contextlib.suppress(Exception):
                self.conn.send(("shutdown",))
                deadline = time.monotonic() + GRACE_SECONDS
                while time.monotonic() < deadline:
                    msg = self.recv(max(0.0, deadline - time.monotonic()))
                    if msg is None or msg[0] == "bye":
                        break
            self.proc.join(GRACE_SECONDS)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2.0)
        with contextlib.suppress(Exception):
            self.conn.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)


class Engine:
    """Parent-side handle to the engine child process. Thread-safe for one caller at a time.

    ``ladder``: the fallback plans to try after a memory failure (default: ``core.fit.ladder_steps``).
    ``faults``: test hooks passed to the child (see :mod:`core.engine_child`); unit tests only.
    ``cancel_grace``: seconds a cancelled load gets to stop by itself before its process is terminated.
    """

    def __init__(self, *, ladder: Ladder | None = None, faults: dict[str, Any] | None = None,
                 start_timeout: float = 120.0, cancel_grace: float = GRACE_SECONDS) -> None:
        self._ladder: Ladder = ladder or _fitter_ladder
        self._cancel_grace = cancel_grace
        self._faults = dict(faults or {})
        self._start_timeout = start_timeout
        self._child: _Child | None = None
        self._loaded: LoadResult | None = None
        self._lock = threading.RLock()
        self._nvml_base: int | None = None
        self._ctx = multiprocessing.get_context("spawn")
        self._device_plan: DevicePlan | None = None  # the multi-device split of the current load
        self._stop_at: float | None = None  # when Stop was pressed for the running reply (monotonic)
        self._replying = False
        self.stop_deadline = STOP_DEADLINE

    # --- state ------------------------------------------------------------------------------

    @property
    def loaded(self) -> LoadResult | None:
        """What is loaded now (None when nothing is, or after a crash)."""
        return self._loaded

    @property
    def child_pid(self) -> int | None:
        """Process id of the engine child, while one runs (for diagnostics and tests)."""
        return self._child.pid if self._child is not None else None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- child lifecycle --------------------------------------------------------------------

    def _start_child(self, visible_device: str | None = None) -> _Child:
        from core import engine_child

        fd, log_path = tempfile.mkstemp(prefix="layerfit-engine-", suffix=".log")
        os.close(fd)
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        stop, cancel = self._ctx.Event(), self._ctx.Event()
        proc = self._ctx.Process(target=engine_child.main, args=(child_conn, stop, cancel, log_path, self._faults, visible_device),
                                 name="layerfit-engine", daemon=True)
        proc.start()
        child_conn.close()
        child = _Child(proc, parent_conn, stop, cancel, log_path)
        try:
            msg = child.recv(self._start_timeout)
        except EngineCrashed as exc:
            child.end(graceful=False)
            raise EngineCrashed(f"the engine process could not start: {exc}") from exc
        if msg is None or msg[0] != "hello":
            child.end(graceful=False)
            raise EngineError("the engine process did not start in time")
        child.hello = dict(msg[1])
        return child

    def _drop_child(self, graceful: bool = True) -> None:
        child, self._child = self._child, None
        self._loaded = None
        if child is not None:
            child.end(graceful)

    # --- load -------------------------------------------------------------------------------

    def load(self, plan: Plan, progress: Callable[[float], None] | None = None,
             cancel: threading.Event | None = None,
             status: Callable[[str], None] | None = None, devices: DevicePlan | None = None) -> LoadResult:
        """Load ``plan.model`` with ``plan``'s placement, walking the fallback ladder on OOM.

        ``progress(fraction)`` is called (on this thread) as weights load, from 0 to 1, once per
        attempt. ``cancel``: set it from any thread to abandon the load (raises LoadCancelled; the
        engine stays usable). ``status(text)`` receives one line per ladder step, for a status bar.
        Raises EngineError for a file llama.cpp rejects or when even the CPU can't hold the model.
        ``devices``: a multi-device split (``core.devices.fit_devices``): its RPC workers are
        registered in the child, its ``tensor_split`` and layer count are passed to llama.cpp, and the
        result's ``devices`` holds the measured buffers per device.
        """
        with self._lock:
            self._drop_child()
            self._device_plan = devices
            if devices is not None:
                plan = replace(plan, gpu_layers=devices.gpu_layers, use_gpu=True)
                try:
                    check_workers(devices)
                except WorkerError as exc:
                    raise EngineError(f"{exc}; plan again without that worker") from exc
            fallbacks: list[Fallback] = []
            tried: set[tuple[Any, ...]] = set()
            ladder: list[Plan] | None = None
            current = plan
            t_start = time.perf_counter()
            while True:
                tried.add(_plan_key(current))
                # NVML's figure covers one GPU; a split over several devices is measured per device
                # from the buffer lines instead (and must not teach the one-GPU calibration).
                base = _nvml_used(current) if current.gpu_layers > 0 and self._device_plan is None else None
                pin = _visible_device(current) if self._device_plan is None else None
                child = self._start_child(pin)
                self._child = child
                through_workers = self._device_plan is not None and bool(worker_endpoints(self._device_plan))
                if current.gpu_layers > 0 and not child.hello.get("gpu_offload") and not through_workers:
                    reason = ("this llama.cpp build has no GPU offload (a CPU-only build, or no GPU driver "
                              "answered), so the model runs on the CPU")
                    cpu_plan = cpu_only(current)
                    fallbacks.append(Fallback("CPU only", reason, cpu_plan.settings, 0, "100% CPU"))
                    if status:
                        status(f"CPU only: {reason}")
                    current = cpu_plan
                    tried.add(_plan_key(current))
                    base = None
                try:
                    outcome, info = self._attempt(child, current, progress, cancel)
                except EngineCrashed as exc:
                    self._drop_child(graceful=False)
                    lost = dead_workers(self._device_plan)
                    if lost:  # a worker died mid-load: no fallback step brings it back
                        raise EngineCrashed(f"{exc}. {lost}") from exc
                    if current.gpu_layers == 0:
                        raise EngineCrashed(f"{exc} (while loading {os.path.basename(current.model.path)})") \
                            from exc
                    outcome, info = "oom", {"message": str(exc), "oom_lines": [str(exc)], "crashed": True}
                if outcome == "loaded":
                    result = self._finish(current, info, base, tuple(fallbacks), t_start,
                                          bool(child.hello.get("gpu_offload")))
                    self._loaded = result
                    return result
                self._drop_child(graceful=outcome not in ("crashed", "cancel_timeout"))
                if outcome in ("cancelled", "cancel_timeout"):
                    raise LoadCancelled("loading was cancelled")
                if outcome == "model":
                    raise EngineError(_model_error(current, info))
                if outcome == "template":
                    raise EngineError(f"{os.path.basename(current.model.path)} can't be used for chat: "
                                      f"{info.get('message')}")
                if outcome != "oom":
                    raise EngineError(f"llama.cpp could not load {os.path.basename(current.model.path)}: "
                                      f"{_best_line(info)}")
                if ladder is None:
                    ladder = self._ladder(plan)
                nxt = next((p for p in ladder if _plan_key(p) not in tried), None)
                if nxt is None:
                    raise EngineError(f"not enough memory to load {os.path.basename(plan.model.path)}, even "
                                      f"after {len(fallbacks)} fallback step(s): {_oom_reason(info, current)}")
                reason = (f"the engine process died while loading with {current.gpu_layers} GPU layers "
                          f"({info['message']})" if info.get("crashed") else _oom_reason(info, current))
                step = step_name(current, nxt)
                fallbacks.append(Fallback(step, reason, nxt.settings, nxt.gpu_layers, nxt.processor))
                if status:
                    status(f"{step}: {reason}; trying {nxt.gpu_layers} GPU layers ({nxt.processor})")
                current = nxt

    def _attempt(self, child: _Child, plan: Plan, progress: Callable[[float], None] | None,
                 cancel: threading.Event | None) -> tuple[str, dict[str, Any]]:
        """One load in ``child``: returns ("loaded"|"oom"|"model"|"other"|"cancelled"|"crashed", info)."""
        spec = _spec(plan, self._faults)
        if self._device_plan is not None:
            spec.update(device_spec(self._device_plan, plan.gpu_layers))
        child.send("load", spec)
        cancel_at: float | None = None
        while True:
            if cancel is not None and cancel.is_set() and cancel_at is None:
                child.cancel.set()  # cooperative: llama.cpp's progress callback returns False
                cancel_at = time.monotonic()
            if cancel_at is not None and time.monotonic() - cancel_at > self._cancel_grace:
                return "cancel_timeout", {}  # it didn't stop in time: the caller terminates it
            msg = child.recv(0.05)
            if msg is None:
                continue
            kind = msg[0]
            if kind == "progress":
                if progress is not None:
                    progress(float(msg[1]))
            elif kind == "loaded":
                if cancel_at is not None:  # it finished just as the user cancelled: honour the cancel
                    return "cancelled", dict(msg[1])
                if progress is not None:
                    progress(1.0)
                return "loaded", dict(msg[1])
            elif kind == "load_error":
                info = dict(msg[1])
                if cancel_at is not None:
                    return "cancelled", info
                return str(info.get("kind", "other")), info

    def _finish(self, loaded: Plan, info: dict[str, Any], base: int | None,
                fallbacks: tuple[Fallback, ...], t_start: float, gpu_offload: bool) -> LoadResult:
        nvml_delta = None
        if base is not None:
            after = _nvml_used(loaded)
            nvml_delta = after - base if after is not None else None
        gpu = loaded.hardware.gpu if loaded.hardware is not None else None
        lines = info.get("log") or []
        placement = placement_from_log(lines, n_layer=loaded.model.n_layer, nvml_delta=nvml_delta,
                                       gpu_name=gpu.name if gpu is not None and loaded.gpu_layers > 0 else None)
        if nvml_delta is not None and gpu is not None:
            _record_calibration(gpu.key, loaded, placement)
        measured = measure_devices(lines, self._device_plan, info.get("workers") or {}) \
            if self._device_plan is not None else ()
        return LoadResult(
            devices=tuple(measured),
            placement=placement,
            settings=loaded.settings,
            fallbacks=fallbacks,
            load_seconds=time.perf_counter() - t_start,
            gpu_offload_supported=gpu_offload,
            n_ctx=int(info.get("n_ctx", 0)),
            plan=loaded,
            buffers=parse_log(lines).buffer_dict(),
        )

    # --- chat -------------------------------------------------------------------------------

    def chat(self, messages: list[dict[str, str]], sampling: SamplingSettings) -> Iterator[ChatEvent]:
        """Stream a reply to ``messages`` (OpenAI-style dicts). The last event has kind "done".

        ``sampling.system``, when set, is sent as the system message (unless ``messages`` already
        starts with one). Closing the iterator early stops generation in the child. Raises
        EngineCrashed if the child dies (the model is then unloaded), EngineError for other failures.
        """
        with self._lock:
            child = self._child
            if child is None or self._loaded is None:
                raise EngineError("no model is loaded")
            msgs = [dict(m) for m in messages]
            if sampling.system and not (msgs and msgs[0].get("role") == "system"):
                msgs.insert(0, {"role": "system", "content": sampling.system})
            # The stop flag is cleared when a reply ends, not when it starts: a Stop pressed between
            # Send and this line (while the request waited for the engine thread) must still count.
            t0 = time.perf_counter()
            first: float | None = None
            finished = False
            self._replying = True
            if child.stop.is_set():  # Stop came before the reply started: its deadline starts now
                self._stop_at = time.monotonic()
            try:
                child.send("chat", msgs, sampling.to_dict())
                while True:
                    msg = child.recv(0.1)
                    if msg is None:
                        self._enforce_stop_deadline()
                        continue
                    kind = msg[0]
                    if kind == "token":
                        if first is None:
                            first = time.perf_counter()
                        yield ChatEvent("token", text=str(msg[1]))
                    elif kind == "done":
                        finished = True
                        stats = dict(msg[1])
                        if stats.get("context_full"):
                            yield ChatEvent("context_full", text=_context_full_text(stats), extra=stats)
                        _record_cpu_speed(self._loaded, stats)
                        yield ChatEvent(
                            "done",
                            text=str(stats.get("text", "")),
                            tokens=int(stats.get("tokens", 0)),
                            tokens_per_second=float(stats.get("tokens_per_second", 0.0)),
                            time_to_first_token=(first - t0) if first is not None else 0.0,
                            finish_reason=stats.get("finish_reason"),
                            extra=stats,
                        )
                        return
                    elif kind == "chat_error":
                        finished = True
                        info = dict(msg[1])
                        if info.get("kind") == "context":
                            raise EngineError(f"the conversation no longer fits the context of "
                                              f"{info.get('n_ctx')} tokens ({info.get('message')}): start a "
                                              f"new chat or load with a larger context")
                        raise EngineError(f"the reply failed: {info.get('message')}")
            except EngineCrashed as exc:
                finished = True
                self._drop_child(graceful=False)
                lost = dead_workers(self._device_plan)
                if lost:
                    raise EngineCrashed(f"{exc}. {lost}") from exc
                raise
            finally:
                if not finished and self._child is child:  # the caller closed the stream early
                    child.stop.set()
                    self._drain(child)
                child.stop.clear()
                self._stop_at = None
                self._replying = False

    def _enforce_stop_deadline(self) -> None:
        """After Stop, a reply that sends nothing for ``stop_deadline`` seconds loses its process."""
        at = self._stop_at
        if at is None or time.monotonic() - at < self.stop_deadline:
            return
        self._drop_child(graceful=False)
        raise EngineStopped(f"the reply did not stop within {self.stop_deadline:g} s (the model was stuck in "
                            f"its chat template or in evaluating the prompt), so LayerFit ended the engine "
                            f"process and the model is unloaded; load it again to go on")

    def _drain(self, child: _Child) -> None:
        deadline = time.monotonic() + self.stop_deadline
        try:
            while time.monotonic() < deadline:
                msg = child.recv(max(0.0, deadline - time.monotonic()))
                if msg is None or msg[0] in ("done", "chat_error"):
                    break
            else:
                self._drop_child(graceful=False)
        except EngineCrashed:
            self._drop_child(graceful=False)

    def stop(self) -> None:
        """Ask the running chat to stop. Safe from any thread.

        It ends within one token; a reply stuck before its first token (a chat template that loops, a
        long prompt on the CPU) is cut short by the child's watchdog, and if even that fails the process
        is ended after ``stop_deadline`` seconds (the chat then raises EngineStopped).
        """
        child = self._child
        if child is not None:
            if self._replying and self._stop_at is None:
                self._stop_at = time.monotonic()
            child.stop.set()

    def interrupt(self) -> None:
        """Stop whatever the engine is doing (a reply or a load), from any thread, so that a queued
        ``unload``/``close`` runs within ``stop_deadline`` seconds instead of waiting behind it."""
        child = self._child
        if child is not None:
            child.cancel.set()
        self.stop()

    # --- unload -----------------------------------------------------------------------------

    def unload(self) -> int | None:
        """Free the model by ending its process. Returns the bytes NVML saw freed (None without NVML)."""
        with self._lock:
            if self._child is None:
                return None
            loaded_plan = self._loaded.plan if self._loaded is not None else None
            on_gpu = self._loaded is not None and self._loaded.placement.gpu_layers > 0
            before = _nvml_used(loaded_plan) if on_gpu else None
            self._drop_child()
            if before is None:
                return None
            after = _nvml_used(loaded_plan)
            return before - after if after is not None else None

    def close(self) -> None:
        """Unload and end the child. The engine can still load again afterwards."""
        self.unload()


# --- helpers -------------------------------------------------------------------------------

def _plan_key(p: Plan) -> tuple[Any, ...]:
    return (p.gpu_layers, p.settings.with_(n_gpu_layers=None), p.use_gpu)


def _spec(plan: Plan, faults: dict[str, Any]) -> dict[str, Any]:
    """The picklable load request the child understands."""
    s = plan.settings
    return {
        "model_path": str(plan.model.path),
        "n_gpu_layers": int(plan.gpu_layers),
        "n_ctx": int(s.n_ctx),
        "n_batch": int(s.n_batch),
        "n_ubatch": int(min(s.n_ubatch, s.n_batch)),
        "type_k": s.type_k,
        "type_v": s.type_v,
        "flash_attn": _flash(plan),
        "swa_full": bool(s.swa_full),
        "offload_kqv": bool(s.offload_kqv),
        "experts_on_cpu": bool(s.experts_on_cpu),
        "use_mmap": bool(s.use_mmap),
        "n_threads": s.n_threads,
        "use_gpu": plan.use_gpu,
        "faults": dict(faults),
    }


def _flash(plan: Plan) -> bool:
    """Flash attention on or off: the plan's resolved value, the user's explicit choice first."""
    if plan.settings.flash_attn == "on":
        return True
    if plan.settings.flash_attn == "off":
        return False
    return bool(plan.flash_attn)


def _nvml_used(plan: Plan | None) -> int | None:
    """NVML "used" on the GPU the plan is for (the one the engine is pinned to); None without NVML."""
    gpu = plan.hardware.gpu if plan is not None and plan.hardware is not None else None
    return nvml_used(gpu.index if gpu is not None else 0)


def _record_calibration(gpu_key: str, plan: Plan, placement: Placement) -> None:
    """Feed plan-versus-measured into the per-GPU correction store."""
    try:
        if placement.nvml_delta is not None and plan.gpu_layers > 0:
            calibration.record(gpu_key, plan.gpu, placement.nvml_delta)
    except OSError:  # e.g. a full disk: learning is a bonus and must never fail a load
        pass


MIN_TOKENS_FOR_SPEED = 16  # shorter replies time mostly the first-token overhead


def _record_cpu_speed(loaded: LoadResult | None, stats: dict[str, Any]) -> None:
    """After a CPU-only reply, teach core.speed how fast this CPU really decodes this kind of model."""
    try:
        tokens, tps = int(stats.get("tokens", 0)), float(stats.get("tokens_per_second", 0.0))
        if loaded is None or loaded.plan is None or loaded.placement.gpu_layers > 0:
            return
        if tokens < MIN_TOKENS_FOR_SPEED or tps <= 0 or stats.get("finish_reason") == "stopped":
            return
        plan = loaded.plan
        fill = int(stats.get("prompt_tokens", 0)) + tokens // 2
        predicted = predict_tps(plan.model, plan.settings, 0, SpeedModel.for_hardware(plan.hardware, learned=False),
                                kv_fill=fill)
        if predicted > 0:
            calibration.record_cpu_timing(cpu_key(), 1.0 / predicted, 1.0 / tps)
    except Exception:  # learning is a bonus: it must never break a chat
        pass


def _best_line(info: dict[str, Any]) -> str:
    lines = list(info.get("error_lines") or [])
    return lines[-1] if lines else str(info.get("message", "unknown error"))


def _model_error(plan: Plan, info: dict[str, Any]) -> str:
    name = os.path.basename(plan.model.path)
    lines = [ln for ln in info.get("error_lines") or [] if "error loading model" in ln or "gguf" in ln.lower()]
    detail = lines[-1] if lines else _best_line(info)
    detail = detail.split("error loading model:", 1)[-1].strip()
    return f"llama.cpp could not load {name}: {detail}"


def _context_full_text(stats: dict[str, Any]) -> str:
    return (f"the context is full ({stats.get('prompt_tokens', 0)} prompt + {stats.get('tokens', 0)} reply "
            f"tokens of {stats.get('n_ctx', 0)}): the reply was cut off; start a new chat or load with a "
            f"larger context")

