"""A reply's numbers (tokens, speed, time to the first token, how it ended) as one typed value.

The chat measures them while a reply streams, the engine reports its own at the end; ``merged`` puts the
engine's over the live ones. Chats store them as a JSON object (``to_dict`` / ``from_dict``, the same
keys as before), and ``text()`` is the one line the transcript shows under a reply.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class ReplyStats:
    tokens: int = 0
    tokens_per_second: float = 0.0
    time_to_first_token: float = 0.0
    finish_reason: str = ""  # "stop", "length", "stopped", "cancelled", "context_full"
    stopped: bool = False
    error: str = ""
    model: str = ""  # the GGUF path that wrote the reply

    @classmethod
    def from_dict(cls, d: Any) -> ReplyStats:
        """From a saved chat: unknown keys and values of the wrong type are left out."""
        if isinstance(d, ReplyStats):
            return d
        if not isinstance(d, dict):
            return cls()
        kept: dict[str, Any] = {}
        for f in fields(cls):
            v = d.get(f.name)
            if f.type in ("int",) and isinstance(v, int) and not isinstance(v, bool):
                kept[f.name] = v
            elif f.type in ("float",) and isinstance(v, (int, float)) and not isinstance(v, bool):
                kept[f.name] = float(v)
            elif f.type in ("str",) and isinstance(v, str) or f.type in ("bool",) and isinstance(v, bool):
                kept[f.name] = v
        return cls(**kept)

    def to_dict(self) -> dict[str, Any]:
        """Only the fields that say something (a saved chat stays small and readable)."""
        return {k: v for k, v in asdict(self).items() if v not in (0, 0.0, "", False)}

    def merged(self, other: ReplyStats) -> ReplyStats:
        """``self`` with every field ``other`` sets."""
        return replace(self, **other.to_dict())

    def text(self) -> str:
        """One line: "42 tokens · 18.3 tok/s · first token 0.21 s"."""
        parts: list[str] = []
        if self.tokens > 0:
            parts.append(f"{self.tokens} token{'s' if self.tokens != 1 else ''}")
        if self.tokens_per_second > 0:
            parts.append(f"{self.tokens_per_second:.1f} tok/s")
        if self.time_to_first_token > 0:
            parts.append(f"first token {self.time_to_first_token:.2f} s")
        if self.stopped or self.finish_reason in ("stopped", "cancelled"):
            parts.append("stopped")
        elif self.finish_reason == "length":
            parts.append("hit the token limit")
        elif self.finish_reason == "context_full":
            parts.append("context full")
        if self.error:
            parts.append(f"error: {self.error}")
        return " · ".join(parts)
