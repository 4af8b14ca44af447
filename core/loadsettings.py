"""LoadSettings: every knob that changes where llama.cpp puts memory, as one frozen value.

A LoadSettings is what the user asked for. ``n_gpu_layers=None`` means "let the fitter choose";
a number is a user pin the fitter honours. The fitter returns the *resolved* settings in its Plan.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from core.typed import typed_fields


class KvType(StrEnum):
    """KV-cache element types LayerFit plans for (the ggml type names llama.cpp takes)."""

    F32 = "f32"
    F16 = "f16"
    Q8_0 = "q8_0"
    Q4_0 = "q4_0"


class FlashAttn(StrEnum):
    """llama.cpp's ``flash_attn_type``: enabled, disabled or auto (decided at context creation)."""

    ON = "on"
    OFF = "off"
    AUTO = "auto"


class Lever(StrEnum):
    """The fitter's levers, in the order it tries them (DESIGN.md "Fitting and fallback")."""

    FEWER_LAYERS = "fewer layers"
    EXPERTS_IN_RAM = "experts in RAM"
    KV_IN_RAM = "KV in RAM"
    CPU_ONLY = "CPU only"
    GPU_UNUSED = "GPU unused"


#: The one KV-size table. Bytes per element of a KV-cache type: ggml block sizes (q8_0 = 34 bytes / 32,
#: q4_0 = 18 bytes / 32), as ggml's type traits give them.
KV_BYTES: dict[str, float] = {KvType.F32: 4.0, KvType.F16: 2.0, KvType.Q8_0: 34 / 32, KvType.Q4_0: 18 / 32}
#: The KV types offered to the user, smallest saving first.
KV_TYPES: tuple[str, ...] = (KvType.F16, KvType.Q8_0, KvType.Q4_0)
_UNQUANTIZED = frozenset({"f32", "f16", "bf16"})

#: What the user reads when the rule below is broken.
V_CACHE_RULE = "a quantized V cache (q8_0/q4_0) needs flash attention: set it to On or Auto, or use f16"


def v_cache_needs_flash_attn(type_v: str) -> bool:
    """THE rule, in one place: a quantized V cache needs flash attention.

    llama.cpp (src/llama-context.cpp, ``llama_init_from_model``): when ``ggml_is_quantized(type_v)`` and
    flash attention is AUTO it switches FA on ("enabling flash_attn since it is required for quantized V
    cache"); when FA is DISABLED it refuses to create the context.
    """
    return str(type_v) not in _UNQUANTIZED


def kv_type_allowed(type_v: str, flash_attn: str) -> bool:
    """Can a V cache of ``type_v`` be used with ``flash_attn`` (on/off/auto)? Auto is fine: it turns on."""
    return not v_cache_needs_flash_attn(type_v) or flash_attn != FlashAttn.OFF


def requested_flash_attn(type_v: str, flash_attn: str) -> str:
    """What llama.cpp makes of ``flash_attn`` before it looks at the devices: auto becomes on for a
    quantized V cache (see ``v_cache_needs_flash_attn``); everything else is unchanged."""
    if flash_attn == FlashAttn.AUTO and v_cache_needs_flash_attn(type_v):
        return FlashAttn.ON.value
    return str(flash_attn)


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
        if self.flash_attn not in tuple(FlashAttn):
            raise ValueError(f"flash attention must be on, off or auto, not {self.flash_attn!r}")
        if not kv_type_allowed(self.type_v, self.flash_attn):
            raise ValueError(V_CACHE_RULE)
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
