"""Dynamic ggml backends: the portable (frozen) build keeps each CPU variant in its own library.

The build that ``make`` produces for this machine links its CPU backend in, and this module does nothing
there. The portable build that ``make freeze`` bundles is made with ``GGML_BACKEND_DL=ON`` and
``GGML_CPU_ALL_VARIANTS=ON``: each CPU variant (x64, sse42, haswell, skylakex, zen4, …) is a separate
``libggml-cpu-<variant>.so``, and nothing is registered until ``ggml_backend_load_all_from_path`` picks the
best one this CPU can run — which is what llama.cpp's own tools do before the first model load.

``LAYERFIT_CPU_VARIANT=x64`` (or any variant name) forces one variant, to prove the lowest one still runs.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

_loaded: str | None = None


def _lib_dir() -> Path | None:
    try:
        import llama_cpp
    except Exception:
        return None
    d = Path(llama_cpp.__file__).resolve().parent / "lib"
    return d if d.is_dir() else None


def _loaded_copy(stem: str) -> str | None:
    """The file of ``lib<stem>`` this process already mapped (Linux /proc/self/maps)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            for line in f:
                path = line.rsplit(" ", 1)[-1].strip()
                if os.path.basename(path).startswith(f"lib{stem}.so"):
                    return path
    except OSError:
        return None
    return None


def loaded_lib(stem: str) -> ctypes.CDLL | None:
    """``lib<stem>`` as the copy llama.cpp itself uses, or None when there is none.

    Backends registered in another copy are invisible to llama.cpp, and copies are easy to get: the wheel
    ships ``libggml.so``, ``.so.0`` and ``.so.0.25.3`` as separate files (libllama maps ``.so.0``), and a
    frozen bundle may hold one more next to the executable. So: the mapped file if there is one, else the
    soname (dlopen then returns the copy already loaded), else the file in llama_cpp/lib.
    """
    d = _lib_dir()  # imports llama_cpp, which maps libllama and its libggml
    if d is None:
        return None
    mapped = _loaded_copy(stem)
    names = ([mapped] if mapped else []) + sorted((p.name for p in d.glob(f"lib{stem}.so.*")), key=len) + [
        f"lib{stem}.so", f"lib{stem}.dylib", f"{stem}.dll"]
    for name in names:
        for target in (name,) if os.path.isabs(name) else (name, str(d / name)):
            try:
                return ctypes.CDLL(target)
            except OSError:
                continue
    return None


def _ggml() -> ctypes.CDLL | None:
    return loaded_lib("ggml")


def backend_names() -> list[str]:
    """The names of the backends ggml registered ("CPU", "CUDA", "RPC", …); empty without a library."""
    lib = _ggml()
    if lib is None:
        return []
    try:
        lib.ggml_backend_reg_count.restype = ctypes.c_size_t
        lib.ggml_backend_reg_count.argtypes = []
        lib.ggml_backend_reg_get.restype = ctypes.c_void_p
        lib.ggml_backend_reg_get.argtypes = [ctypes.c_size_t]
        lib.ggml_backend_reg_name.restype = ctypes.c_char_p
        lib.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
        return [(lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i)) or b"").decode()
                for i in range(lib.ggml_backend_reg_count())]
    except AttributeError:
        return []


def cpu_variants() -> list[str]:
    """The CPU variant libraries this build ships (empty for a build with the CPU backend linked in)."""
    d = _lib_dir()
    if d is None:
        return []
    out = []
    for p in sorted(d.glob("*ggml-cpu-*")):
        stem = p.name.split(".")[0]
        out.append(stem.split("ggml-cpu-", 1)[1])
    return out


def ensure_backends_loaded() -> str | None:
    """Load the dynamic backends once, when the build has them. Returns the CPU variant picked (or None)."""
    global _loaded
    if _loaded is not None:
        return _loaded or None
    variants = cpu_variants()
    if not variants:
        _loaded = ""
        return None
    lib = _ggml()
    d = _lib_dir()
    if lib is None or d is None:
        _loaded = ""
        return None
    forced = os.environ.get("LAYERFIT_CPU_VARIANT", "").strip()
    if forced:
        name = next((p for p in d.glob(f"*ggml-cpu-{forced}.*")), None)
        if name is None:
            raise RuntimeError(f"LAYERFIT_CPU_VARIANT={forced}: no such CPU variant (have: {', '.join(variants)})")
        lib.ggml_backend_load.restype = ctypes.c_void_p
        lib.ggml_backend_load.argtypes = [ctypes.c_char_p]
        if not lib.ggml_backend_load(str(name).encode()):
            raise RuntimeError(f"the CPU variant {forced} can't run on this CPU")
        # the other (GPU, RPC) backends still come from the folder; the CPU one is already registered
        picked = forced
        _load_non_cpu(lib, d)
    else:
        lib.ggml_backend_load_all_from_path.restype = None
        lib.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
        lib.ggml_backend_load_all_from_path(str(d).encode())
        picked = _picked_variant(lib) or "?"
    _loaded = picked
    return picked


def _load_non_cpu(lib: ctypes.CDLL, d: Path) -> None:
    lib.ggml_backend_load.restype = ctypes.c_void_p
    lib.ggml_backend_load.argtypes = [ctypes.c_char_p]
    for p in sorted(d.glob("*ggml-*.so")):
        n = p.name
        if "ggml-cpu" in n or n in ("libggml.so", "libggml-base.so"):
            continue
        lib.ggml_backend_load(str(p).encode())


def _picked_variant(lib: ctypes.CDLL) -> str | None:
    """The name of the CPU variant that was registered, read from the loaded libraries."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                if "ggml-cpu-" in line:
                    return line.rsplit("ggml-cpu-", 1)[1].split(".")[0]
    except OSError:
        pass
    return None


def loaded_variant() -> str | None:
    return _loaded or None
