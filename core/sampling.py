"""Chat-time settings: the sampler and the conversation framing (system prompt, stop strings).

Shared by the engine (what to send to llama.cpp), the Modelfile exporter (PARAMETER lines) and the GUI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from core.typed import typed_fields


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    seed: int | None = None  # None = random
    max_tokens: int = 512  # Ollama's num_predict
    stop: tuple[str, ...] = ()
    system: str = ""

    def with_(self, **changes: Any) -> SamplingSettings:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SamplingSettings:
        """From saved JSON; values of the wrong type fall back to the defaults."""
        return cls(**typed_fields(cls, d))
