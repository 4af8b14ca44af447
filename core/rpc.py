"""llama.cpp's RPC backend: serve this machine's devices to others, and reach other machines' workers.

A *worker* is llama.cpp's own RPC server (``ggml_backend_rpc_start_server`` in ``libggml-rpc``, the
code behind llama.cpp's ``rpc-server`` tool). It exposes the local GPUs, or the CPU when there are
none, over TCP; a loading process registers it with ``ggml_backend_rpc_add_server`` and llama.cpp
then treats each of its devices as a GPU-type device (``ggml-rpc.cpp``; RPC devices go first in the
device list, ``src/llama.cpp`` ``llama_prepare_model_devices``).

Three parts live here:

- :func:`serve` (``layerfit worker``): starts the server in this process. It binds to loopback by
  default; llama.cpp's RPC server is not secure (``tools/rpc/rpc-server.cpp`` prints the same
  warning), so any other host gets :data:`SECURITY_WARNING` printed first. ``mem`` caps the memory the
  worker *reports* (what llama.cpp's default split and LayerFit's planner divide layers by), as the
  ``-m`` option of earlier rpc-server versions did; it is not an allocation limit.
- :func:`probe`: asks a worker, over the same wire protocol the C client speaks (HELLO, DEVICE_COUNT,
  GET_DEVICE_MEMORY; ``ggml-rpc.cpp``), for its protocol version and each device's free and total
  memory. The C client (``ggml_backend_rpc_add_server``/``ggml_backend_rpc_get_device_memory``)
  aborts the whole process (``GGML_ABORT("Failed to connect …")``) when a worker can't be reached, and
  it keeps its connection open for the life of the process while a worker serves one client at a
  time; so the planner (GUI or CLI) talks Python sockets with a timeout and closes at once, and only
  the engine's child process, after this probe said yes, calls the C functions.
- :func:`register` (engine child only): ``ggml_backend_rpc_add_server`` + ``ggml_backend_register``
  for each reachable worker (what llama.cpp's ``--rpc`` does, ``common/arg.cpp`` ``add_rpc_devices``),
  reading each device's memory back through ``ggml_backend_rpc_get_device_memory``.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50052

#: The protocol version this build of llama.cpp speaks (ggml/include/ggml-rpc.h, RPC_PROTO_*_VERSION).
PROTO_MAJOR = 7
PROTO_MINOR = 0

#: rpc_cmd values (ggml-rpc.cpp ``enum rpc_cmd``; HELLO is pinned at 14 by a static_assert there).
CMD_GET_DEVICE_MEMORY = 11
CMD_HELLO = 14
CMD_DEVICE_COUNT = 15
CONN_CAPS_SIZE = 24  # RPC_CONN_CAPS_SIZE (ggml-rpc/transport.h)

SECURITY_WARNING = (
    "WARNING: this worker listens on {host}, not only on this machine (127.0.0.1).\n"
    "llama.cpp's RPC server is not secure: anyone who can reach {host}:{port} can use this machine's\n"
    "memory and run computations on it, with no password and no encryption. Never expose it to an open\n"
    "network; use it only on a network you trust."
)


class WorkerError(Exception):
    """A worker that can't be used, with the reason in words."""


@dataclass(frozen=True)
class WorkerDevice:
    """One device a worker exposes: its index on the worker and its memory (bytes)."""

    index: int
    free: int
    total: int


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker answered: its endpoint, protocol version and devices."""

    endpoint: str
    version: tuple[int, int, int]
    devices: tuple[WorkerDevice, ...]
    what_if: bool = False  # a machine the user may add, planned with the memory they typed

    @property
    def free(self) -> int:
        return sum(d.free for d in self.devices)


def parse_endpoint(text: str) -> tuple[str, int]:
    """``host:port`` → (host, port), with a plain message for anything else."""
    t = text.strip()
    host, sep, port_text = t.rpartition(":")
    if not sep or not host or not port_text:
        raise WorkerError(f"a worker is written host:port (like 192.168.1.20:{DEFAULT_PORT}), not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise WorkerError(f"the port of worker {text!r} must be a number") from None
    if not 0 < port < 65536:
        raise WorkerError(f"the port of worker {text!r} must be between 1 and 65535")
    return host, port


def what_if_worker(text: str) -> WorkerInfo | None:
    """A what-if worker written as a size ("24GiB": a machine offering that much), else None."""
    from core.units import SizeError, parse_size

    t = text.strip()
    if ":" in t:
        return None
    try:
        size = parse_size(t)
    except SizeError:
        return None
    if size <= 0:
        return None
    return WorkerInfo(f"what-if {size / 1024**3:.1f} GiB", (PROTO_MAJOR, PROTO_MINOR, 0),
                      (WorkerDevice(0, size, size),), what_if=True)


def endpoint(text: str) -> str:
    """The normalized ``host:port`` string llama.cpp's ``parse_endpoint`` accepts."""
    host, port = parse_endpoint(text)
    return f"{host}:{port}"


# --- the wire protocol (client side) ------------------------------------------------------------

def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the worker closed the connection")
        buf += chunk
    return bytes(buf)


def _command(sock: socket.socket, cmd: int, payload: bytes, reply_size: int) -> bytes:
    """``| cmd (1 byte) | size (8 bytes) | payload |`` → ``| size (8 bytes) | reply |`` (send_rpc_cmd)."""
    sock.sendall(struct.pack("<BQ", cmd, len(payload)) + payload)
    (size,) = struct.unpack("<Q", _recv_exact(sock, 8))
    if size != reply_size:
        raise WorkerError(f"the worker answered {size} bytes where {reply_size} were expected: it speaks a "
                          "different version of llama.cpp's RPC protocol")
    return _recv_exact(sock, size)


def probe(text: str, timeout: float = 3.0) -> WorkerInfo:
    """Ask the worker at ``host:port`` for its version and devices. Raises WorkerError in plain words."""
    host, port = parse_endpoint(text)
    ep = f"{host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise WorkerError(f"worker {ep} can't be reached ({reason}); is `layerfit worker` running there, "
                          "and does the firewall let the port through?") from None
    try:
        with sock:
            sock.settimeout(timeout)
            hello = _command(sock, CMD_HELLO, bytes(CONN_CAPS_SIZE), 4 + CONN_CAPS_SIZE)
            version = (hello[0], hello[1], hello[2])
            if version[0] != PROTO_MAJOR or version[1] > PROTO_MINOR:
                raise WorkerError(
                    f"worker {ep} speaks RPC protocol {'.'.join(map(str, version))}, but this LayerFit's "
                    f"llama.cpp speaks {PROTO_MAJOR}.{PROTO_MINOR}.x: run the same LayerFit (llama.cpp) "
                    "version on both machines")
            (count,) = struct.unpack("<I", _command(sock, CMD_DEVICE_COUNT, b"", 4))
            devices = []
            for i in range(count):
                free, total = struct.unpack("<QQ", _command(sock, CMD_GET_DEVICE_MEMORY, struct.pack("<I", i), 16))
                devices.append(WorkerDevice(i, int(free), int(total)))
    except TimeoutError:
        raise WorkerError(f"worker {ep} accepted the connection but did not answer within {timeout:g} s: it may "
                          "be busy serving another LayerFit or llama.cpp (a worker serves one client at a "
                          "time), or it is not a llama.cpp RPC worker") from None
    except (ConnectionError, OSError) as exc:
        raise WorkerError(f"worker {ep} closed the connection during the handshake ({exc}): it is probably "
                          "a different llama.cpp RPC protocol version, or not an RPC worker") from None
    if not devices:
        raise WorkerError(f"worker {ep} exposes no device")
    return WorkerInfo(ep, version, tuple(devices))


def probe_all(endpoints: Iterable[str], timeout: float = 3.0) -> tuple[list[WorkerInfo], list[str]]:
    """Probe every worker: the ones that answered, and one plain message per one that didn't."""
    ok: list[WorkerInfo] = []
    problems: list[str] = []
    seen: set[str] = set()
    for text in endpoints:
        hypothetical = what_if_worker(text)
        if hypothetical is not None:
            ok.append(hypothetical)
            continue
        try:
            ep = endpoint(text)
            if ep in seen:
                continue
            seen.add(ep)
            ok.append(probe(ep, timeout))
        except WorkerError as exc:
            problems.append(f"{exc}; planning without it")
    return ok, problems


# --- the C library -------------------------------------------------------------------------------

def _libdir() -> str:
    import llama_cpp

    return os.path.join(os.path.dirname(llama_cpp.__file__), "lib")


def _lib(stem: str) -> ctypes.CDLL:
    """``lib<stem>`` as the copy libllama uses (a second copy would have its own, empty backend registry)."""
    from core.backends import loaded_lib

    lib = loaded_lib(stem)
    if lib is None:
        raise WorkerError(f"this llama.cpp build has no {stem} library: LayerFit's llama-cpp-python must be "
                          "built with the RPC backend (CMAKE_ARGS=-DGGML_RPC=on)")
    return lib


def supported() -> bool:
    """True when the installed llama.cpp has the RPC backend."""
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_rpc())
    except Exception:
        return False


def _rpc_lib() -> ctypes.CDLL:
    lib = _lib("ggml-rpc")
    lib.ggml_backend_rpc_start_server.restype = None
    lib.ggml_backend_rpc_start_server.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                                                  ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
    lib.ggml_backend_rpc_add_server.restype = ctypes.c_void_p
    lib.ggml_backend_rpc_add_server.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_rpc_get_device_memory.restype = None
    lib.ggml_backend_rpc_get_device_memory.argtypes = [ctypes.c_char_p, ctypes.c_uint32,
                                                       ctypes.POINTER(ctypes.c_size_t),
                                                       ctypes.POINTER(ctypes.c_size_t)]
    return lib


def _base_lib() -> ctypes.CDLL:
    # libggml holds the registry (ggml-backend-reg.cpp); dlsym on its handle also finds the
    # ggml-base functions it links to. It is the same library instance llama_cpp loaded.
    lib = _lib("ggml")
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_count.argtypes = []
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_name.restype = ctypes.c_char_p
    lib.ggml_backend_dev_name.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_description.restype = ctypes.c_char_p
    lib.ggml_backend_dev_description.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_memory.restype = None
    lib.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                            ctypes.POINTER(ctypes.c_size_t)]
    lib.ggml_backend_register.restype = None
    lib.ggml_backend_register.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_reg_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_reg_dev_count.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_reg_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_reg_dev_get.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return lib


def local_gpu_backend() -> bool:
    """True when this llama.cpp has a local GPU backend (CUDA, Vulkan, Metal…), not only CPU and RPC.

    ``llama_supports_gpu_offload()`` also says True for a CPU build that has the RPC backend
    (src/llama.cpp: ``… || llama_supports_rpc()``), which would make a CPU build look like a CUDA one.
    """
    from core.backends import backend_names

    return any(n not in ("CPU", "RPC", "BLAS") and not n.startswith("RPC[") for n in backend_names())


# ggml_backend_dev_type (ggml-backend.h): CPU 0, GPU 1, IGPU 2, ACCEL 3.
_DEV_CPU, _DEV_ACCEL = 0, 3

_GET_MEMORY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t))


def serving_devices(lib: ctypes.CDLL | None = None) -> list[tuple[int, str, str]]:
    """The devices a worker exposes, as rpc-server's ``get_devices`` picks them: every non-CPU,
    non-ACCEL device, or the CPU when there is none. (pointer, name, description) each."""
    import llama_cpp  # noqa: F401  (loads and initialises the backends)

    base = lib or _base_lib()
    devs = [base.ggml_backend_dev_get(i) for i in range(base.ggml_backend_dev_count())]
    picked = [d for d in devs if base.ggml_backend_dev_type(d) not in (_DEV_CPU, _DEV_ACCEL)]
    if not picked:
        picked = [d for d in devs if base.ggml_backend_dev_type(d) == _DEV_CPU][:1]
    return [(int(d), base.ggml_backend_dev_name(d).decode(), base.ggml_backend_dev_description(d).decode())
            for d in picked]


def _cap_memory(dev: int, mem: int, keep: list[Any]) -> None:
    """Make device ``dev`` report at most ``mem`` bytes (total ``mem``, free ``min(free, mem)``).

    The RPC server answers GET_DEVICE_MEMORY with ``ggml_backend_dev_memory`` of the device
    (``rpc_server::get_device_memory``), which calls ``dev->iface.get_memory``. This process is the
    worker and nothing else, so that one function pointer is swapped here. ``struct
    ggml_backend_device`` starts with ``struct ggml_backend_device_i``, whose third member is
    ``get_memory`` (ggml/src/ggml-backend-impl.h).
    """
    slot = ctypes.c_void_p.from_address(dev + 2 * ctypes.sizeof(ctypes.c_void_p))
    if not slot.value:
        raise WorkerError("this llama.cpp device does not report its memory, so --mem can't cap it")
    original = _GET_MEMORY(slot.value)

    def get_memory(d: int, free: Any, total: Any) -> None:
        original(d, free, total)
        free[0] = min(int(free[0]), mem)
        total[0] = mem

    cb = _GET_MEMORY(get_memory)
    keep.extend([original, cb])
    slot.value = ctypes.cast(cb, ctypes.c_void_p).value


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, mem: int | None = None,
          threads: int | None = None, announce: Any = print) -> None:
    """Run llama.cpp's RPC server here, for ever (until the process is killed or interrupted).

    ``announce(text)`` gets the lines to show the user (the security warning first, when bound
    beyond loopback). Raises WorkerError when the backend is missing or the arguments are wrong.
    """
    if not 0 < port < 65536:
        raise WorkerError(f"--port must be between 1 and 65535, not {port}")
    if mem is not None and mem <= 0:
        raise WorkerError("--mem must be more than 0")
    if not supported():
        raise WorkerError("this llama.cpp build has no RPC backend: reinstall llama-cpp-python with "
                          "CMAKE_ARGS=-DGGML_RPC=on")
    if host != DEFAULT_HOST:
        announce(SECURITY_WARNING.format(host=host, port=port))
    rpc = _rpc_lib()
    base = _base_lib()
    devices = serving_devices(base)
    if not devices:
        raise WorkerError("llama.cpp found no device to serve")
    keep: list[Any] = []
    if mem is not None:
        for ptr, _name, _desc in devices:
            _cap_memory(ptr, mem, keep)
    n_threads = threads or max(1, (os.cpu_count() or 2) // 2)  # rpc-server's default
    arr = (ctypes.c_void_p * len(devices))(*[d[0] for d in devices])
    names = ", ".join(f"{n} ({d})" for _p, n, d in devices)
    announce(f"layerfit worker: serving {names} on {host}:{port}"
             + (f", reporting {mem / 1024**3:.2f} GiB per device" if mem else "")
             + ". Add it in LayerFit as --worker HOST:PORT. Ctrl+C stops it.")
    # The C server blocks for ever in accept() and returns only when it can't listen (port in use).
    # It runs on a helper thread so that this one keeps handling Ctrl+C (KeyboardInterrupt).
    server = threading.Thread(target=rpc.ggml_backend_rpc_start_server, name="rpc-server", daemon=True,
                              args=(f"{host}:{port}".encode(), None, n_threads, len(devices), arr))
    server.start()
    while server.is_alive():
        server.join(0.5)
    raise WorkerError(f"llama.cpp could not listen on {host}:{port} (is the port in use, or the address "
                      "not one of this machine's?)")


# --- the loading side (engine child) --------------------------------------------------------------

@dataclass(frozen=True)
class Registered:
    """A worker registered in this process: its endpoint and its devices' llama.cpp names."""

    endpoint: str
    names: tuple[str, ...]
    memory: tuple[tuple[int, int], ...]  # (free, total) per device, from ggml_backend_rpc_get_device_memory


def register(endpoints: Iterable[str]) -> list[Registered]:
    """Register workers as llama.cpp devices in this process (llama.cpp's ``--rpc``).

    Call only after :func:`probe` said yes for each: the C client aborts the process on a worker it
    can't reach. Devices are named ``RPC0``, ``RPC1``, … in registration order (ggml-rpc.cpp
    ``ggml_backend_rpc_add_server``).
    """
    rpc = _rpc_lib()
    base = _base_lib()
    out = []
    for text in endpoints:
        ep = endpoint(text).encode()
        reg = rpc.ggml_backend_rpc_add_server(ep)
        if not reg:
            raise WorkerError(f"worker {ep.decode()} exposes no device")
        base.ggml_backend_register(reg)
        names, memory = [], []
        for i in range(base.ggml_backend_reg_dev_count(reg)):
            dev = base.ggml_backend_reg_dev_get(reg, i)
            names.append(base.ggml_backend_dev_name(dev).decode())
            free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
            rpc.ggml_backend_rpc_get_device_memory(ep, i, ctypes.byref(free), ctypes.byref(total))
            memory.append((int(free.value), int(total.value)))
        out.append(Registered(ep.decode(), tuple(names), tuple(memory)))
    return out
