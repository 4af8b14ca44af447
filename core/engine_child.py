"""The engine's child process: it owns exactly one ``llama_cpp.Llama`` and nothing else.

Why a child: a CUDA out-of-memory abort or a segfault inside llama.cpp kills the process it runs in
(llama-cpp-python#374, text-generation-webui#3119). Here that process is this one, never the GUI or CLI.
The parent (:mod:`core.engine`) starts one child per load with multiprocessing's "spawn" context and
talks to it over a duplex Pipe with plain tuples (picklable, no LayerFit classes cross it):

parent → child
    ``("load", spec)``: spec is a dict of model path and load settings (see :func:`_llama_kwargs`);
    for a split over several devices also ``workers`` (RPC endpoints, registered before the load)
    and ``tensor_split`` (``core.devices.device_spec``)
    ``("chat", messages, sampling)``: OpenAI-style messages, a SamplingSettings dict
    ``("shutdown",)``: close the model and exit
child → parent
    ``("hello", {"gpu_offload": bool, "system_info": str})`` once, at start
    ``("progress", fraction)`` while weights load (llama.cpp's progress callback)
    ``("loaded", info)`` or ``("load_error", {"kind": "oom"|"cancelled"|"model"|"other", …})``
    ``("token", text)`` … then ``("done", stats)`` or ``("chat_error", {…})``
    ``("bye",)`` before exiting

Two multiprocessing Events are shared: ``stop`` (checked after every sampled token, so Stop lands
within one token) and ``cancel`` (checked in the load progress callback; returning False there makes
llama.cpp abandon the load).

The child's stdout and stderr (fd 1 and 2) go to a log file the parent names, so llama.cpp's and
llama-cpp-python's printing never reaches the user's terminal; the parent reads its tail after a crash.

Test hooks (unit tests only): ``spec["faults"]`` may hold ``oom_above_gpu_layers`` (int) with
``oom_mode`` "raise" (log a cudaMalloc failure and raise the same ``ValueError('Failed to create
llama_context')`` a real CUDA OOM gives) or "die" (SIGKILL itself mid-load, as the OOM killer would),
``hang_load_seconds`` (sleep without honouring cancel, to test the parent's terminate path), and
``pretend_gpu`` (given to :func:`main`: report GPU offload on a CPU build, so the ladder runs). The
environment variable ``LAYERFIT_TEST_OOM_ABOVE=N`` sets ``oom_above_gpu_layers`` too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from core.llama_log import LEVEL_ERROR, LogCapture, parse_log

#: ggml_type values llama.cpp takes for type_k / type_v (ggml.h: F32 0, F16 1, Q4_0 2, Q8_0 8).
GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 8}

#: The tensor-override pattern llama.cpp's ``--cpu-moe`` uses (common/arg.cpp, llm_ffn_exps_cpu_override):
#: every MoE expert FFN tensor stays in host memory.
EXPERTS_PATTERN = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"

#: The message llama-cpp-python raises when a cudaMalloc fails while creating the context
#: (shared/device/README.md: seen on an H100 with 0.3.36).
CONTEXT_FAILED = "Failed to create llama_context"


class _BuftOverride(ctypes.Structure):
    """``struct llama_model_tensor_buft_override { const char * pattern; ggml_backend_buffer_type_t buft; }``."""

    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


def _cpu_buffer_type() -> int | None:
    """``ggml_backend_cpu_buffer_type()`` from the bundled libggml-cpu, or None if it can't be found."""
    import llama_cpp

    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    for name in ("libggml-cpu.so", "libggml-cpu.dylib", "ggml-cpu.dll"):
        path = os.path.join(libdir, name)
        if os.path.exists(path):
            try:
                lib = ctypes.CDLL(path)
                fn = lib.ggml_backend_cpu_buffer_type
                fn.restype = ctypes.c_void_p
                fn.argtypes = []
                return int(fn())
            except (OSError, AttributeError):
                return None
    return None


class _Child:
    """State of the child process: the connection, the capture, and at most one Llama."""

    def __init__(self, conn: Connection, stop: Any, cancel: Any) -> None:
        self.conn = conn
        self.stop = stop
        self.cancel = cancel
        self.capture = LogCapture()
        self.llm: Any = None
        self.spec: dict[str, Any] = {}
        self.faults: dict[str, Any] = {}
        self._keep: list[Any] = []  # ctypes objects the C side points at while a load runs
        self._workers: dict[str, Any] = {}  # RPC workers registered in this process (core.rpc)

    # --- load -------------------------------------------------------------------------------

    def _llama_kwargs(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments for ``Llama()``: every lever the plan resolved, nothing left to defaults."""
        kw: dict[str, Any] = {
            "model_path": spec["model_path"],
            "n_gpu_layers": int(spec["n_gpu_layers"]),
            "n_ctx": int(spec["n_ctx"]),
            "n_batch": int(spec["n_batch"]),
            "n_ubatch": int(spec["n_ubatch"]),
            "type_k": GGML_TYPES[spec["type_k"]],
            "type_v": GGML_TYPES[spec["type_v"]],
            "flash_attn": bool(spec["flash_attn"]),
            "swa_full": bool(spec["swa_full"]),
            "offload_kqv": bool(spec["offload_kqv"]),
            "use_mmap": bool(spec["use_mmap"]),
            "verbose": True,  # buffer lines are logged at INFO; our callback captures them all
        }
        if not spec.get("use_gpu", True):
            kw["op_offload"] = False
        if spec.get("n_threads"):
            kw["n_threads"] = int(spec["n_threads"])
        if spec.get("tensor_split"):
            kw["tensor_split"] = [float(x) for x in spec["tensor_split"]]
        return kw

    def _register_workers(self, spec: dict[str, Any]) -> None:
        """Register the plan's RPC workers as llama.cpp devices (once per child; a child loads once).

        Each was probed by the parent just before; the C client aborts the process on a worker it
        can't reach, which the parent then reports as a crash rather than a hang.
        """
        workers = [w for w in spec.get("workers") or [] if w not in self._workers]
        if not workers:
            return
        from core import rpc

        for reg in rpc.register(workers):
            self._workers[reg.endpoint] = {"names": list(reg.names), "memory": [list(m) for m in reg.memory]}

    @contextlib.contextmanager
    def _model_params_hook(self, spec: dict[str, Any]) -> Any:
        """Set ``progress_callback`` and tensor overrides on the model params ``Llama()`` builds.

        The high-level ``Llama`` exposes neither (its model params come from
        ``llama_model_default_params()`` inside ``__init__``), so for the duration of one
        construction that function returns params with both filled in.
        """
        import llama_cpp.llama_cpp as lc

        original = lc.llama_model_default_params
        last = [-1.0]

        def on_progress(fraction: float, _user: Any) -> bool:
            if self.cancel.is_set():
                return False  # llama.cpp abandons the load; Llama() raises ValueError
            if fraction - last[0] >= 0.01 or fraction >= 1.0:
                last[0] = fraction
                with contextlib.suppress(Exception):
                    self.conn.send(("progress", float(fraction)))
            return True

        callback = lc.llama_progress_callback(on_progress)
        overrides = None
        if spec.get("experts_on_cpu"):
            buft = _cpu_buffer_type()
            if buft is None:
                raise RuntimeError("this llama.cpp build doesn't expose the CPU buffer type needed to keep "
                                   "expert tensors in RAM")
            overrides = (_BuftOverride * 2)()
            overrides[0].pattern = EXPERTS_PATTERN.encode()
            overrides[0].buft = buft
            overrides[1].pattern = None
            overrides[1].buft = None
        # use_gpu False (the ladder's last rung, or a plan where not even the CUDA context fits): an
        # empty, NULL-terminated device list, so llama.cpp creates no GPU backend at all. n_gpu_layers 0
        # alone still puts a compute buffer and the CUDA context on the GPU.
        no_devices = None if spec.get("use_gpu", True) else (ctypes.c_void_p * 1)(None)
        self._keep = [callback, overrides, no_devices]

        def patched() -> Any:
            params = original()
            params.progress_callback = callback
            if overrides is not None:
                params.tensor_buft_overrides = ctypes.addressof(overrides)
            if no_devices is not None:
                params.devices = ctypes.addressof(no_devices)
            return params

        lc.llama_model_default_params = patched
        try:
            yield
        finally:
            lc.llama_model_default_params = original

    def _inject_faults(self, spec: dict[str, Any]) -> None:
        faults = dict(spec.get("faults") or {})
        env = os.environ.get("LAYERFIT_TEST_OOM_ABOVE")
        if env is not None and "oom_above_gpu_layers" not in faults:
            faults["oom_above_gpu_layers"] = int(env)
        hang = faults.get("hang_load_seconds")
        if hang:
            time.sleep(float(hang))
        limit = faults.get("oom_above_gpu_layers")
        if limit is not None and int(spec["n_gpu_layers"]) > int(limit):
            self.capture.feed(LEVEL_ERROR, "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 4096.00 MiB "
                                           "on device 0: cudaMalloc failed: out of memory (injected by a test)\n")
            if faults.get("oom_mode", "raise") == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            raise ValueError(CONTEXT_FAILED)

    def load(self, spec: dict[str, Any]) -> None:
        import llama_cpp

        self.close_model()
        self.spec = spec
        mark = self.capture.mark()
        t0 = time.perf_counter()
        try:
            self._inject_faults(spec)
            self._register_workers(spec)
            kwargs = self._llama_kwargs(spec)
            with self._model_params_hook(spec):
                llm = llama_cpp.Llama(**kwargs)
            # A first evaluation, so compute buffers, cuBLAS workspaces and NVML's figure are final
            # before the placement is measured (DESIGN.md: gpu.total is the rise after a first eval).
            bos = llm.token_bos()
            llm.eval([bos if bos >= 0 else 0])
            llm.reset()
        except Exception as exc:  # Llama() raises ValueError for OOM, bad files and cancels alike
            lines = self.capture.lines_since(mark)
            facts = parse_log(lines)
            if self.cancel.is_set():
                kind = "cancelled"
            elif facts.oom_lines or (CONTEXT_FAILED in str(exc) and int(spec["n_gpu_layers"]) > 0):
                kind = "oom"
            elif isinstance(exc, ValueError) and "Failed to load model" in str(exc):
                kind = "model"
            else:
                kind = "other"
            self.conn.send(("load_error", {
                "kind": kind,
                "message": str(exc) or type(exc).__name__,
                "oom_lines": list(facts.oom_lines[-3:]),
                "error_lines": (list(facts.error_lines) + self.capture.problems_since(mark))[-5:],
                "log": lines[-200:],
            }))
            return
        self.llm = llm
        self.conn.send(("loaded", {
            "log": self.capture.lines_since(mark),
            "n_ctx": int(llm.n_ctx()),
            "load_seconds": time.perf_counter() - t0,
            "workers": dict(self._workers),
        }))

    # --- chat -------------------------------------------------------------------------------

    def chat(self, messages: list[dict[str, str]], sampling: dict[str, Any]) -> None:
        from llama_cpp import StoppingCriteriaList

        llm = self.llm
        if llm is None:
            self.conn.send(("chat_error", {"kind": "state", "message": "no model is loaded"}))
            return
        n_ctx = int(llm.n_ctx())
        counts = {"n": 0, "prompt": 0}
        times = {"first": 0.0, "last": 0.0}
        t0 = time.perf_counter()

        def after_each_token(input_ids: Any, _logits: Any) -> bool:
            """Called by llama-cpp-python once per sampled token, before it is yielded.

            ``input_ids`` holds the tokens evaluated so far: the prompt, then one more per call.
            ``_create_completion`` calls the criteria once more after its loop with the same length
            (the last sampled token is never evaluated); that call is not a new token.
            """
            now = time.perf_counter()
            seen = len(input_ids)
            if counts["n"] == 0:
                counts["prompt"] = seen
                times["first"] = now
            elif seen <= counts["prompt"] + counts["n"] - 1:
                return bool(self.stop.is_set())
            counts["n"] += 1
            times["last"] = now
            return bool(self.stop.is_set())

        llm.last_n_tokens_size = int(sampling.get("repeat_last_n", 64))
        seed = sampling.get("seed")
        pieces: list[str] = []
        finish: str | None = None
        # create_chat_completion() takes no stopping_criteria, but the chat handler passes its own to
        # llm.create_completion(); shadowing that method on this instance adds ours for this reply.
        plain_completion = llm.create_completion

        def create_completion(*args: Any, **kwargs: Any) -> Any:
            theirs = kwargs.get("stopping_criteria")
            kwargs["stopping_criteria"] = StoppingCriteriaList([*(theirs or []), after_each_token])
            return plain_completion(*args, **kwargs)

        llm.create_completion = create_completion
        try:
            stream = llm.create_chat_completion(
                messages=messages,
                stream=True,
                temperature=float(sampling.get("temperature", 0.7)),
                top_p=float(sampling.get("top_p", 0.95)),
                top_k=int(sampling.get("top_k", 40)),
                min_p=float(sampling.get("min_p", 0.05)),
                repeat_penalty=float(sampling.get("repeat_penalty", 1.1)),
                seed=None if seed is None else int(seed),
                max_tokens=int(sampling.get("max_tokens", 512)),
                stop=list(sampling.get("stop") or []),
            )
            for chunk in stream:
                choice = chunk["choices"][0]
                text = choice.get("delta", {}).get("content")
                if text:
                    pieces.append(text)
                    self.conn.send(("token", text))
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                if self.stop.is_set():
                    break
        except ValueError as exc:
            msg = str(exc)
            kind = "context" if "exceed context window" in msg else "other"
            self.conn.send(("chat_error", {"kind": kind, "message": msg, "n_ctx": n_ctx}))
            return
        except Exception as exc:
            self.conn.send(("chat_error", {"kind": "other", "message": f"{type(exc).__name__}: {exc}"}))
            return
        finally:
            del llm.create_completion  # back to the class's method
        stopped = self.stop.is_set()
        n = counts["n"]
        span = times["last"] - times["first"]
        tps = (n - 1) / span if n > 1 and span > 0 else 0.0
        total = counts["prompt"] + n
        self.conn.send(("done", {
            "text": "".join(pieces),
            "tokens": n,
            "prompt_tokens": counts["prompt"],
            "tokens_per_second": tps,
            "child_ttft": (times["first"] - t0) if n else 0.0,
            "finish_reason": "stopped" if stopped else finish,
            "n_ctx": n_ctx,
            "context_full": (not stopped) and total >= n_ctx - 1,
        }))

    # --- lifecycle --------------------------------------------------------------------------

    def close_model(self) -> None:
        if self.llm is not None:
            with contextlib.suppress(Exception):
                self.llm.close()
            self.llm = None

    def serve(self) -> None:
        from core.backends import ensure_backends_loaded
        from core.buildinfo import cuda_compiled

        # A portable (frozen) build keeps its CPU variants in separate libraries: load the best one before
        # anything touches a model, as llama.cpp's own tools do. A build with the CPU backend linked in skips this.
        variant = ensure_backends_loaded()
        import llama_cpp


        self.conn.send(("hello", {
            "cpu_variant": variant,
            # not llama_supports_gpu_offload(): it also says True for a CPU build with the RPC backend in
            "gpu_offload": cuda_compiled() or bool(self.faults.get("pretend_gpu")),
            "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
            "pid": os.getpid(),
        }))
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):  # the parent went away
                break
            cmd = msg[0]
            if cmd == "load":
                self.load(msg[1])
            elif cmd == "chat":
                self.chat(msg[1], msg[2])
            elif cmd == "shutdown":
                break
        self.close_model()
        with contextlib.suppress(Exception):
            self.conn.send(("bye",))


def _redirect_output(log_path: str | None) -> None:
    """Send fd 1 and 2 (C and Python output alike) to ``log_path`` so the user's terminal stays clean."""
    if not log_path:
        return
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def main(conn: Connection, stop: Any, cancel: Any, log_path: str | None = None,
         faults: dict[str, Any] | None = None, visible_device: str | None = None) -> None:
    """Entry point of the child process (the target multiprocessing spawns).

    ``visible_device`` pins the engine to the planned GPU; it must be set before CUDA initialises,
    i.e. before llama_cpp is imported, which only happens below this point.
    """
    if visible_device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible_device
    _redirect_output(log_path)
    # The parent handles Ctrl+C (it stops the chat or cancels the load); the child must not die of it first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    child = _Child(conn, stop, cancel)
    child.faults = dict(faults or {})
    child.capture.install()
    child.serve()
