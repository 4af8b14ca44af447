"""llama.cpp's log, captured and read: where the buffers really went.

llama.cpp reports every buffer it allocates as a log line such as::

    load_tensors:        CUDA0 model buffer size =  4155.99 MiB
    llama_kv_cache:        CPU KV buffer size =    90.00 MiB
    sched_reserve:   CUDA_Host compute buffer size =    24.01 MiB

and, with a GPU, ``load_tensors: offloaded 33/33 layers to GPU``. These lines are the ground truth
the estimate is compared with (``ollama ps`` guesses instead and has been wrong: ollama#7323).

Two halves live here:

- :class:`LogCapture` installs a ``llama_log_set`` callback (in the engine's child process) and keeps
  the lines, so nothing reaches the user's terminal;
- :func:`parse_buffers` / :func:`placement_from_log` turn lines into a measured
  :class:`~core.placement.Placement`. They are pure functions, tested on real captured text.

An RPC worker's buffers are named ``RPC<device>[host:port]`` (ggml-rpc.cpp's buffer type name).

Device naming: a buffer belongs to the GPU unless its device is ``CPU*`` (``CPU``, ``CPU_Mapped``,
``CPU_REPACK``), ends in ``_Host`` (pinned host memory, e.g. ``CUDA_Host``) or is ``BLAS``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from core.placement import DeviceMemory, HostMemory, Placement, processor_line

MiB = 1024**2

#: ggml_log_level in the bundled llama.cpp (ggml.h): NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5.
LEVEL_DEBUG = 1
LEVEL_INFO = 2
LEVEL_WARN = 3
LEVEL_ERROR = 4
LEVEL_CONT = 5

_BUFFER_RE = re.compile(r"(?P<dev>[A-Za-z0-9_\-]+(?:\[[^\]\s]*\])?)\s+(?P<kind>model|KV|compute|output|RS)\s+buffer size\s*=\s*"
                        r"(?P<mib>[0-9]+(?:\.[0-9]+)?)\s*MiB")
_OFFLOADED_RE = re.compile(r"offloaded\s+(?P<n>\d+)\s*/\s*(?P<m>\d+)\s+layers to GPU")
_N_LAYER_RE = re.compile(r"print_info:\s+n_layer\s+=\s+(?P<n>\d+)")
_N_CTX_RE = re.compile(r"llama_context:\s+n_ctx\s+=\s+(?P<n>\d+)")
_OOM_RE = re.compile(r"out of memory|cudaMalloc failed|failed to allocate|unable to allocate|"
                     r"ErrorOutOfDeviceMemory|hipMalloc failed", re.IGNORECASE)


def is_gpu_device(dev: str) -> bool:
    """True for a GPU buffer's device name (``CUDA0``, ``Vulkan0``…), False for host memory."""
    return not (dev.upper().startswith("CPU") or dev.endswith("_Host") or dev.upper() == "BLAS")


@dataclass(frozen=True)
class BufferLine:
    """One ``<dev> <kind> buffer size = X MiB`` line."""

    device: str
    kind: str  # model | KV | compute | output | RS
    mib: float

    @property
    def bytes(self) -> int:
        return round(self.mib * MiB)

    @property
    def on_gpu(self) -> bool:
        return is_gpu_device(self.device)


@dataclass(frozen=True)
class LogFacts:
    """Everything LayerFit reads from one load's log."""

    buffers: tuple[BufferLine, ...] = ()
    offloaded: int | None = None  # N of "offloaded N/M layers to GPU" (None: no such line, CPU build)
    offloadable: int | None = None  # M
    n_layer: int | None = None
    n_ctx: int | None = None
    oom_lines: tuple[str, ...] = ()
    error_lines: tuple[str, ...] = field(default=())

    def buffer_dict(self) -> dict[str, float]:
        """``{"CUDA0.model": 4155.99, …}`` in MiB, the shape of ``shared/data``'s ``bufs``."""
        out: dict[str, float] = {}
        for b in self.buffers:
            key = f"{b.device}.{b.kind}"
            out[key] = round(out.get(key, 0.0) + b.mib, 2)
        return out


def parse_log(lines: Iterable[str]) -> LogFacts:
    """Pull buffer sizes, offload counts, n_layer/n_ctx and memory-error lines out of log text."""
    buffers: list[BufferLine] = []
    offloaded = offloadable = n_layer = n_ctx = None
    oom: list[str] = []
    errors: list[str] = []
    for raw in lines:
        for line in raw.splitlines():
            m = _BUFFER_RE.search(line)
            if m:
                buffers.append(BufferLine(m["dev"], m["kind"], float(m["mib"])))
                continue
            m = _OFFLOADED_RE.search(line)
            if m:
                offloaded, offloadable = int(m["n"]), int(m["m"])
                continue
            m = _N_LAYER_RE.search(line)
            if m:
                n_layer = int(m["n"])
                continue
            m = _N_CTX_RE.search(line)
            if m:
                n_ctx = int(m["n"])
                continue
            if _OOM_RE.search(line):
                oom.append(line.strip())
            if "error" in line.lower() or "failed" in line.lower():
                errors.append(line.strip())
    return LogFacts(tuple(buffers), offloaded, offloadable, n_layer, n_ctx, tuple(oom), tuple(errors))


def parse_buffers(lines: Iterable[str]) -> tuple[DeviceMemory, HostMemory]:
    """GPU and host byte totals per kind from buffer lines (GPU overhead is left at 0: NVML's job).

    ``model`` → weights (the host's ``CPU_REPACK`` model buffer → repack), ``KV`` → kv, ``RS`` → rs
    (recurrent state), ``compute``/``output`` → compute.
    """
    return _sum_buffers(parse_log(lines).buffers)


def _sum_buffers(buffers: Iterable[BufferLine]) -> tuple[DeviceMemory, HostMemory]:
    g = {"weights": 0, "kv": 0, "compute": 0, "rs": 0}
    h = {"weights": 0, "kv": 0, "compute": 0, "rs": 0, "repack": 0}
    slot = {"model": "weights", "KV": "kv", "RS": "rs", "compute": "compute", "output": "compute"}
    for b in buffers:
        key = "repack" if b.kind == "model" and b.device == "CPU_REPACK" else slot[b.kind]
        (g if b.on_gpu else h)[key] += b.bytes
    return DeviceMemory(**g), HostMemory(**h)


def measured_processor(gpu_layers: int, gpu: DeviceMemory, host: HostMemory) -> str:
    """The PROCESSOR line for a measured placement.

    Only the model's own bytes count (weights and KV cache), as ``ollama ps`` counts them; compute
    buffers don't, because a CUDA build reserves a GPU compute buffer even with 0 layers offloaded
    and that model still runs on the CPU.
    """
    if gpu_layers <= 0:
        return "100% CPU"
    return processor_line(gpu.weights + gpu.kv, host.weights + host.kv)


def placement_from_log(lines: Iterable[str], *, n_layer: int | None = None, nvml_delta: int | None = None,
                       gpu_name: str | None = None) -> Placement:
    """A measured :class:`Placement` from one load's log lines (plus NVML's "used" rise, when known).

    ``gpu_layers`` is N from "offloaded N/M layers to GPU" (0 without that line: a CPU build logs
    none). GPU ``overhead`` is what NVML saw beyond the logged GPU buffers (CUDA context, cuBLAS
    workspaces); it is 0 without NVML.
    """
    facts = parse_log(lines)
    gpu, host = _sum_buffers(facts.buffers)
    gpu_layers = facts.offloaded or 0
    if nvml_delta is not None:
        gpu = DeviceMemory(gpu.weights, gpu.kv, gpu.compute, max(0, nvml_delta - gpu.total))
    layers = facts.n_layer or n_layer or 0
    return Placement(
        measured=True,
        processor=measured_processor(gpu_layers, gpu, host),
        gpu_layers=gpu_layers,
        n_layer=layers,
        gpu=gpu,
        host=host,
        gpu_name=gpu_name,
        nvml_delta=nvml_delta,
    )


class LogCapture:
    """Keeps llama.cpp's log lines (INFO and up, CONT pieces joined) instead of printing them.

    Install once per process with :meth:`install` (it calls ``llama_cpp.llama_log_set``). The
    callback may run on llama.cpp's threads, so appends take a lock. DEBUG lines (one per tensor:
    thousands) are dropped unless ``keep_debug``.
    """

    def __init__(self, keep_debug: bool = False, max_lines: int = 20000) -> None:
        self.keep_debug = keep_debug
        self.max_lines = max_lines
        self._lines: list[str] = []
        self._levels: list[int] = []
        self._partial = ""
        self._last_level = LEVEL_INFO
        self._lock = threading.Lock()
        self._callback: Any = None  # the ctypes callback object must outlive the C side's use of it

    def feed(self, level: int, text: str) -> None:
        """Add one callback's text (public so tests can feed real captured text without llama.cpp)."""
        with self._lock:
            if level == LEVEL_CONT:
                level = self._last_level
            else:
                self._last_level = level
            if level == LEVEL_DEBUG and not self.keep_debug:
                if text.endswith("\n"):
                    self._partial = ""
                return
            buf = self._partial + text
            *done, self._partial = buf.split("\n")
            self._lines.extend(done)
            self._levels.extend([level] * len(done))
            if len(self._lines) > self.max_lines:
                cut = len(self._lines) - self.max_lines
                del self._lines[:cut]
                del self._levels[:cut]

    def mark(self) -> int:
        """Index of the next line: pass to :meth:`lines_since` to get only what came after."""
        with self._lock:
            return len(self._lines)

    def lines_since(self, mark: int = 0) -> list[str]:
        with self._lock:
            out = self._lines[mark:]
            if self._partial:
                out = [*out, self._partial]
            return out

    def problems_since(self, mark: int = 0) -> list[str]:
        """Lines logged at WARN or ERROR after ``mark``: llama.cpp's reasons for refusing a load."""
        with self._lock:
            return [ln for ln, lv in zip(self._lines[mark:], self._levels[mark:], strict=True)
                    if lv >= LEVEL_WARN and ln.strip()]

    def install(self) -> None:
        """Route llama.cpp's log (and ggml's) into this capture. Call in the process that loads."""
        import contextlib
        import ctypes

        import llama_cpp

        @llama_cpp.llama_log_callback  # type: ignore[misc]
        def _cb(level: int, text: bytes, user_data: Any) -> None:
            with contextlib.suppress(Exception):  # never let an exception cross into C
                self.feed(int(level), text.decode("utf-8", "replace") if text else "")

        self._callback = _cb
        llama_cpp.llama_log_set(_cb, ctypes.c_void_p(0))
