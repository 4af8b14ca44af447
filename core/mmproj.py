"""Vision projectors (``mmproj`` files): where llama.cpp's multimodal runner puts them, and how big.

LM Studio and llama.cpp's ``mtmd`` (llama-server ``--mmproj``) keep a vision model's image encoder
in a separate GGUF next to the language model (``mmproj-*.gguf``, architecture ``clip``); Ollama
stores it as the model's ``projector`` layer. ``clip_ctx`` (tools/mtmd/clip.cpp) loads all of it on
the first GPU when one is used (``use_gpu``, the default) and on the CPU otherwise, plus a compute
buffer for its warm-up image. LayerFit's own chat loads only the language model, so the projector is
reported next to the plan (JSON ``projector``, a reason line) instead of inside its totals, which the
engine's measurements must be able to match.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gguf import GGUFReader


@dataclass(frozen=True)
class Projector:
    path: str
    weights: int  # bytes of all tensors

    def to_json(self, on_gpu: bool) -> dict[str, object]:
        return {"path": self.path, "weights": self.weights, "device": "gpu" if on_gpu else "cpu"}


def find_projector(model_path: str | Path) -> Path | None:
    """The ``mmproj*.gguf`` next to ``model_path`` (LM Studio's layout), if there is exactly one."""
    p = Path(model_path)
    try:
        found = sorted(x for x in p.parent.iterdir()
                       if x.is_file() and x.name.lower().startswith("mmproj") and x.suffix.lower() == ".gguf"
                       and x != p)
    except OSError:
        return None
    return found[0] if len(found) == 1 else None


def read_projector(path: str | Path) -> Projector | None:
    """The projector's size from its header (None when it is not a readable GGUF)."""
    try:
        r = GGUFReader(str(path))
        return Projector(str(path), sum(int(t.n_bytes) for t in r.tensors))
    except (OSError, ValueError, KeyError, IndexError):
        return None


_cache: dict[tuple[str, int, float], Projector | None] = {}


def projector_for(model_path: str | Path) -> Projector | None:
    """``read_projector(find_projector(model_path))``, cached by the projector file's size and mtime
    (plans run on every slider move)."""
    found = find_projector(model_path)
    if found is None:
        return None
    try:
        st = found.stat()
    except OSError:
        return None
    key = (str(found), st.st_size, st.st_mtime)
    if key not in _cache:
        if len(_cache) > 16:
            _cache.clear()
        _cache[key] = read_projector(found)
    return _cache[key]
