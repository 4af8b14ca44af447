"""What the machine has: NVIDIA GPUs from NVML, RAM from psutil, or a what-if card.

Everything degrades cleanly: with no driver (or no pynvml), ``probe()`` returns a Hardware with no
GPUs and a plain-words ``gpu_problem`` instead of raising. Tests replace the NVML boundary by passing
a fake module to ``probe(nvml=...)``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from dataclasses import dataclass, field, replace
from typing import Any

import psutil

from core.units import GiB, MiB, parse_size


@dataclass(frozen=True)
class GPU:
    """One CUDA device as NVML sees it (sizes in bytes)."""

    index: int
    name: str
    total: int
    free: int
    used: int = 0
    driver: str | None = None
    cuda_version: str | None = None
    uuid: str | None = None
    what_if: bool = False

    @property
    def key(self) -> str:
        """Identity for learned corrections: GPU model plus driver (overhead depends on both)."""
        return f"{self.name}|{self.driver or '?'}"


@dataclass(frozen=True)
class Hardware:
    """GPUs and RAM to plan against."""

    gpus: tuple[GPU, ...] = ()
    ram_total: int = 0
    ram_available: int = 0
    cpu_threads: int = 1
    gpu_problem: str | None = None  # why there is no usable GPU, in words

    @property
    def gpu(self) -> GPU | None:
        """The GPU LayerFit plans for (the first one; multi-GPU splits are out of scope)."""
        return self.gpus[0] if self.gpus else None

    @property
    def vram_free(self) -> int:
        return self.gpus[0].free if self.gpus else 0

    def with_vram(self, free: int, total: int | None = None, name: str | None = None) -> Hardware:
        """Plan for ``free`` bytes of VRAM (``--vram``): replaces the first GPU, or adds a what-if one."""
        if free <= 0:
            return replace(self, gpus=())
        base = self.gpu
        if base is None:
            g = GPU(0, name or "what-if GPU", total or free, free, what_if=True)
        else:
            g = replace(base, free=free, total=max(total or base.total, free), name=name or base.name)
        return replace(self, gpus=(g, *self.gpus[1:]))

    def with_ram(self, available: int) -> Hardware:
        return replace(self, ram_available=available, ram_total=max(self.ram_total, available))

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpus": [g.__dict__ for g in self.gpus],
            "ram_total": self.ram_total,
            "ram_available": self.ram_available,
            "cpu_threads": self.cpu_threads,
            "gpu_problem": self.gpu_problem,
        }


@dataclass(frozen=True)
class CardPreset:
    """A what-if card: a name and its memory. ``free`` assumes a desktop taking ~0 MiB (a server card)."""

    key: str
    name: str
    total: int
    notes: str = ""
    aliases: tuple[str, ...] = field(default=())

    def as_gpu(self) -> GPU:
        # NVML's "total" on a 16 GB T4 is 15360 MiB; the usable free figure is a little lower still.
        return GPU(0, self.name, self.total, self.total, what_if=True)


# Totals are what NVML reports on these cards (not the marketing GB).
PRESETS: tuple[CardPreset, ...] = (
    CardPreset("t4", "Tesla T4 16 GB", 15360 * MiB, aliases=("tesla-t4", "t4-16gb")),
    CardPreset("rtx3060", "GeForce RTX 3060 12 GB", 12288 * MiB, aliases=("3060",)),
    CardPreset("rtx3090", "GeForce RTX 3090 24 GB", 24576 * MiB, aliases=("3090",)),
    CardPreset("rtx4090", "GeForce RTX 4090 24 GB", 24564 * MiB, aliases=("4090",)),
    CardPreset("a100-40", "A100 40 GB", 40960 * MiB, aliases=("a100-40gb",)),
    CardPreset("a100-80", "A100 80 GB", 81920 * MiB, aliases=("a100", "a100-80gb")),
    CardPreset("h100", "H100 80 GB", 81559 * MiB, aliases=("h100-80gb",)),
)


def find_preset(text: str) -> CardPreset | None:
    t = text.strip().lower().replace(" ", "-")
    for p in PRESETS:
        if t == p.key or t in p.aliases or t == p.name.lower().replace(" ", "-"):
            return p
    return None


def what_if(card: str, base: Hardware | None = None) -> Hardware:
    """Hardware with a what-if card: a preset name (``t4``, ``rtx4090``…) or a size (``16GiB``).

    RAM comes from this machine (``base``, probed when absent).
    """
    base = base if base is not None else probe_ram_only()
    preset = find_preset(card)
    if preset is not None:
        return replace(base, gpus=(preset.as_gpu(),), gpu_problem=None)
    size = parse_size(card)
    gpu = GPU(0, f"what-if {size / GiB:.1f} GiB card", size, size, what_if=True)
    return replace(base, gpus=(gpu,), gpu_problem=None)


def probe_ram_only() -> Hardware:
    vm = psutil.virtual_memory()
    return Hardware((), vm.total, vm.available, os.cpu_count() or 1)


@functools.cache
def cpu_key() -> str:
    """This CPU's model name and thread count: the identity for learned decode speeds.

    Cached: every plan asks (the live slider), and the CPU doesn't change while LayerFit runs.
    """
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}|{os.cpu_count() or 1} threads"


def _decode(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _load_nvml() -> Any:
    import pynvml  # nvidia-ml-py

    return pynvml


def probe(nvml: Any | None = None) -> Hardware:
    """Probe GPUs through NVML and RAM through psutil. Never raises for a missing driver.

    ``nvml`` is the pynvml module; tests pass a fake with the same functions.
    """
    base = probe_ram_only()
    try:
        mod = nvml if nvml is not None else _load_nvml()
    except ImportError:
        return replace(base, gpu_problem="the NVML Python bindings (nvidia-ml-py) are not installed")
    try:
        mod.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, …
        return replace(base, gpu_problem=f"no NVIDIA driver answered ({_nvml_reason(exc)})")
    try:
        driver = _decode(mod.nvmlSystemGetDriverVersion())
        try:
            cv = int(mod.nvmlSystemGetCudaDriverVersion())
            cuda = f"{cv // 1000}.{(cv % 1000) // 10}"
        except Exception:
            cuda = None
        gpus = []
        for i in range(int(mod.nvmlDeviceGetCount())):
            h = mod.nvmlDeviceGetHandleByIndex(i)
            mem = mod.nvmlDeviceGetMemoryInfo(h)
            try:
                uuid = _decode(mod.nvmlDeviceGetUUID(h))
            except Exception:
                uuid = None
            gpus.append(GPU(i, _decode(mod.nvmlDeviceGetName(h)), int(mem.total), int(mem.free),
                            int(mem.used), driver, cuda, uuid))
        problem = None if gpus else "the NVIDIA driver answered but lists no GPU"
        return replace(base, gpus=tuple(gpus), gpu_problem=problem)
    except Exception as exc:
        return replace(base, gpu_problem=f"NVML failed while listing GPUs ({_nvml_reason(exc)})")
    finally:
        with contextlib.suppress(Exception):
            mod.nvmlShutdown()


def _nvml_reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.strip()


def nvml_used(index: int = 0, nvml: Any | None = None) -> int | None:
    """NVML "used" bytes on one GPU right now, or None when NVML can't tell."""
    try:
        mod = nvml if nvml is not None else _load_nvml()
        mod.nvmlInit()
    except Exception:
        return None
    try:
        return int(mod.nvmlDeviceGetMemoryInfo(mod.nvmlDeviceGetHandleByIndex(index)).used)
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            mod.nvmlShutdown()
