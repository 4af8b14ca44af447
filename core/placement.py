"""Where memory lives: per-device and host breakdowns, shared by the estimate (Plan) and the
measurement (Placement), so the two can be compared field by field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class DeviceMemory:
    """Bytes on one GPU. ``total`` is what NVML's "used" rises by: buffers plus CUDA context/workspaces."""

    weights: int = 0
    kv: int = 0
    compute: int = 0
    overhead: int = 0
    rs: int = 0  # recurrent state (Mamba/delta-net layers), like KV it lives with its layer

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute + self.overhead + self.rs

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


@dataclass(frozen=True)
class HostMemory:
    """Bytes in host RAM (weights include mmapped pages that will be touched, and CPU_REPACK copies)."""

    weights: int = 0
    kv: int = 0
    compute: int = 0
    rs: int = 0  # recurrent state of the layers in host memory
    repack: int = 0  # CPU_REPACK copies of repackable weights (anonymous memory on top of the mapped file)

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute + self.rs + self.repack

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def processor_line(gpu_bytes: int, host_bytes: int) -> str:
    """Ollama's PROCESSOR column: the share of the loaded model's bytes in RAM vs VRAM.

    "100% GPU", "100% CPU" or "48%/52% CPU/GPU" (CPU first, as `ollama ps` prints it).
    """
    total = gpu_bytes + host_bytes
    if total <= 0 or gpu_bytes <= 0:
        return "100% CPU"
    if host_bytes <= 0:
        return "100% GPU"
    cpu_pct = round(100 * host_bytes / total)
    cpu_pct = min(max(cpu_pct, 1), 99)  # never print 0%/100% for a real split
    return f"{cpu_pct}%/{100 - cpu_pct}% CPU/GPU"


@dataclass(frozen=True)
class Placement:
    """Where a loaded model actually is (``measured=True``, from llama.cpp's log and NVML)."""

    measured: bool
    processor: str
    gpu_layers: int
    n_layer: int
    gpu: DeviceMemory = field(default_factory=DeviceMemory)
    host: HostMemory = field(default_factory=HostMemory)
    gpu_name: str | None = None
    nvml_delta: int | None = None  # NVML "used" rise for the engine process, when NVML answers

    def to_dict(self) -> dict[str, Any]:
        return {
            "measured": self.measured,
            "processor": self.processor,
            "gpu_layers": self.gpu_layers,
            "n_layer": self.n_layer,
            "gpu": self.gpu.to_dict(),
            "host": self.host.to_dict(),
            "gpu_name": self.gpu_name,
            "nvml_delta": self.nvml_delta,
        }
