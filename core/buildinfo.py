"""What the installed llama.cpp build is: CPU or CUDA, which CPU features it was compiled for, RPC or not.

``python -m core.buildinfo`` prints a one-line signature (``cpu noamx rpc``) that the Makefile compares with
the build it wants: a build that differs (AMX compiled in, no RPC backend, CPU instead of CUDA) is rebuilt.

Why AMX is left out: with ``-march=native`` on an Intel CPU that has AMX (Sapphire Rapids and later), ggml
compiles its AMX matmul path, and the first decode faults on ``ldtilecfg`` inside ``ggml_backend_amx_mul_mat``
(llama.cpp issue #20824; the tile config and the per-thread XTILEDATA permission, open PR #26954). The build
passes ``-mno-amx-tile -mno-amx-int8 -mno-amx-bf16``, which GCC lets win over ``-march=native``; every other
native feature (AVX-512, VNNI, …) stays.

This module imports only llama_cpp (never Qt), so the Makefile can run it before the project is installed.
"""

from __future__ import annotations

import contextlib
import re
import sys
from dataclasses import dataclass, field

# The CPU features llama.cpp reports in llama_print_system_info() that matter for "does this build suit
# this CPU": compiled-in instruction sets that the CPU must have.
_FEATURE_RE = re.compile(r"\b([A-Z0-9_]+) = 1\b")


@dataclass(frozen=True)
class BuildInfo:
    installed: bool
    version: str | None = None
    gpu_offload: bool = False
    rpc: bool = False
    system_info: str = ""
    features: frozenset[str] = field(default_factory=frozenset)
    error: str | None = None

    @property
    def amx(self) -> bool:
        """True when the AMX matmul path is compiled in (``AMX_INT8 = 1`` in the system info)."""
        return "AMX_INT8" in self.features

    @property
    def kind(self) -> str:
        return "cuda" if self.gpu_offload else "cpu"

    def signature(self) -> str:
        if not self.installed:
            return "none"
        return f"{self.kind} {'amx' if self.amx else 'noamx'} {'rpc' if self.rpc else 'norpc'}"


def parse_features(system_info: str) -> frozenset[str]:
    """The features a ``llama_print_system_info()`` line reports as compiled in (``AVX512 = 1`` → AVX512)."""
    return frozenset(_FEATURE_RE.findall(system_info or ""))


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none: macOS, Windows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def cuda_compiled() -> bool:
    """True for a llama.cpp built with CUDA (its CUDA backend is registered).

    Not ``llama_supports_gpu_offload()``: that one also answers True for a CPU build with the RPC backend in
    (llama.cpp counts RPC devices as offload targets).
    """
    from core.backends import backend_names

    return "CUDA" in backend_names()


def read_build() -> BuildInfo:
    """Inspect the installed llama-cpp-python. Never raises."""
    try:
        import llama_cpp
    except Exception as exc:  # ImportError, or OSError when a CUDA build can't find libcuda
        return BuildInfo(False, error=f"{type(exc).__name__}: {exc}")
    try:
        from core.backends import ensure_backends_loaded

        ensure_backends_loaded()
    except Exception:  # a missing variant is the doctor's to report, not a reason to fail here
        pass
    info = ""
    with contextlib.suppress(Exception):
        info = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    gpu = cuda_compiled()
    try:
        rpc = bool(llama_cpp.llama_supports_rpc())
    except Exception:
        rpc = False
    return BuildInfo(True, getattr(llama_cpp, "__version__", None), gpu, rpc, info, parse_features(info))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    b = read_build()
    if "--system-info" in argv:
        print(b.system_info or b.error or "")
    else:
        print(b.signature())
    return 0


if __name__ == "__main__":
    sys.exit(main())
