"""LoadSettings: every knob that changes where llama.cpp puts memory, as one frozen value.

A LoadSettings is what the user asked for. ``n_gpu_layers=None`` means "let the fitter choose";
a number is a user pin the fitter honours. The fitter returns the *resolved* settings in its Plan.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from core.typed import typed_fields

KvType = Literal["f16", "q8_0", "q4_0", "f32"]
FlashAttn = Literal["on", "off", "auto"]

#: Bytes per element of a KV-cache type: ggml block sizes (q8_0 = 34 bytes / 32, q4_0 = 18 bytes / 32).
KV_BYTES: dict[str, float] = {"f32": 4.0, "f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
KV_TYPES = ("f16", "q8_0", "q4_0")


@dataclass(frozen=True)
class LoadSettings:
    """What to load with. Field names follow llama.cpp's context and model params."""

    n_ctx: int = 4096
    n_gpu_layers: int | None = None  # None = auto (fitter decides); 0..n_layer+1 = pinned
    type_k: str = "f16"
    type_v: str = "f16"
    flash_attn: str = "auto"  # "on" | "off" | "auto"
    swa_full: bool = False  # LayerFit's default; llama-cpp-python's C default is a full-size SWA cache
    n_batch: int = 512
    n_ubatch: int = 512
    offload_kqv: bool = True  # False keeps the KV cache (and attention) in host RAM
    experts_on_cpu: bool = False  # MoE: keep ffn_*_exps tensors in RAM (llama.cpp tensor overrides)
    use_mmap: bool = True
    n_threads: int | None = None

    def with_(self, **changes: Any) -> LoadSettings:
        """A copy with some fields changed (dataclasses.replace, spelled shorter)."""
        return replace(self, **changes)

    def validate(self) -> None:
        """Raise ValueError with a plain message for settings llama.cpp would reject."""
        if self.n_ctx < 1:
            raise ValueError(f"context size must be at least 1, got {self.n_ctx}")
        for name, t in (("K", self.type_k), ("V", self.type_v)):
            if t not in KV_BYTES:
                raise ValueError(f"unknown {name} cache type {t!r}: use one of {', '.join(KV_TYPES)}")
        if self.flash_attn not in ("on", "off", "auto"):
            raise ValueError(f"flash attention must be on, off or auto, not {self.flash_attn!r}")
        if self.type_v not in ("f16", "f32") and self.flash_attn == "off":
            raise ValueError("a quantized V cache (q8_0/q4_0) needs flash attention: turn it on or use f16")
        if self.n_batch < 1 or self.n_ubatch < 1:
            raise ValueError("batch and ubatch must be positive")
        if self.n_gpu_layers is not None and self.n_gpu_layers < 0:
            raise ValueError("GPU layers must be 0 or more (or auto)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoadSettings:
        """From saved JSON; values of the wrong type fall back to the defaults."""
        return cls(**typed_fields(cls, d))
