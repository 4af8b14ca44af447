"""The engine: llama.cpp in a child process that owns exactly one Llama.

OWNER: engine helper. The public names below are the contract the CLI and GUI use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from core.fit import Plan
from core.loadsettings import LoadSettings
from core.placement import Placement
from core.sampling import SamplingSettings


class EngineError(Exception):
    """Anything the engine could not do, with a message for a person."""


class EngineCrashed(EngineError):
    """The child process died (signal, abort, OOM kill). The parent survives and can load again."""


class LoadCancelled(EngineError):
    """The user cancelled a load."""


@dataclass(frozen=True)
class Fallback:
    """One step the fallback ladder took: why, and where the model went instead."""

    step: str  # "fewer GPU layers", "KV cache in RAM", "CPU only", …
    reason: str
    settings: LoadSettings
    gpu_layers: int
    processor: str

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class LoadResult:
    placement: Placement
    settings: LoadSettings  # what was actually loaded with
    fallbacks: tuple[Fallback, ...] = ()
    load_seconds: float = 0.0
    gpu_offload_supported: bool = False


@dataclass(frozen=True)
class ChatEvent:
    """A streamed piece of a reply. ``kind``: "token", "done" (with stats), "context_full"."""

    kind: str
    text: str = ""
    tokens: int = 0
    tokens_per_second: float = 0.0
    time_to_first_token: float = 0.0
    finish_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Engine:
    """Parent-side handle to the engine child process. Thread-safe for one caller at a time."""

    def load(self, plan: Plan, progress: Callable[[float], None] | None = None,
             cancel: threading.Event | None = None) -> LoadResult:
        """Load ``plan.model`` with ``plan``'s placement, walking the fallback ladder on OOM."""
        raise NotImplementedError

    def chat(self, messages: list[dict[str, str]], sampling: SamplingSettings) -> Iterator[ChatEvent]:
        """Stream a reply to ``messages`` (OpenAI-style dicts). The last event has kind "done"."""
        raise NotImplementedError

    def stop(self) -> None:
        """Ask the running chat to stop; it ends within one token."""
        raise NotImplementedError

    def unload(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
