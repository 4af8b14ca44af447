"""The fitter: turn a model, load settings and hardware into a Plan, with reasons and suggestions.

OWNER: estimator helper. The dataclasses are the contract for engine, GUI and CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.gguf_info import ModelInfo
from core.hardware import Hardware
from core.loadsettings import LoadSettings
from core.placement import DeviceMemory, HostMemory

DEFAULT_HEADROOM = 768 * 1024**2


@dataclass(frozen=True)
class Suggestion:
    """A what-if with its computed effect, ready to apply (``settings`` are complete settings)."""

    text: str  # "num_ctx 32768 → 100% GPU"
    settings: LoadSettings
    gpu_layers: int
    processor: str
    saves: int = 0  # bytes of GPU memory saved vs the current plan (may be 0)

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Plan:
    """Where every byte will live, and why. ``settings`` are resolved (auto → concrete)."""

    model: ModelInfo
    settings: LoadSettings
    hardware: Hardware
    headroom: int
    gpu_layers: int  # 0..n_layer+1 (the output layer counts as one)
    gpu: DeviceMemory
    host: HostMemory
    processor: str
    fits_gpu: bool  # everything offloadable is on the GPU
    fits: bool  # the plan fits VRAM (minus headroom) and RAM
    reasons: tuple[str, ...] = ()
    suggestions: tuple[Suggestion, ...] = ()
    flash_attn: bool = True  # resolved
    request_id: int = field(default=0, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The object printed by ``layerfit plan --json`` (DESIGN.md contract)."""
        raise NotImplementedError


def make_plan(model: ModelInfo, settings: LoadSettings, hardware: Hardware,
              headroom: int = DEFAULT_HEADROOM, *, suggest: bool = True) -> Plan:
    """Fit ``model`` to ``hardware``: choose GPU layers (unless pinned) and levers, explain, suggest."""
    raise NotImplementedError
