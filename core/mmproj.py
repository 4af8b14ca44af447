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


_OLLAMA_MODEL = "application/vnd.ollama.image.model"
_OLLAMA_PROJECTOR = "application/vnd.ollama.image.projector"
_ollama_seen: dict[str, tuple[float, Path | None]] = {}
_OLLAMA_TTL = 30.0  # seconds a blob's projector lookup is reused (plans run on every slider move)


def ollama_projector(blob: Path) -> Path | None:
    """For a model blob in an Ollama store (``<store>/blobs/sha256-…``): the ``projector`` layer's blob of a
    manifest that uses it, if any. Manifests are small JSON files; the store is only read."""
    import json
    import os
    import time

    key = str(blob)
    now = time.monotonic()
    hit = _ollama_seen.get(key)
    if hit is not None and now - hit[0] < _OLLAMA_TTL:
        return hit[1]
    digest = blob.name.replace("sha256-", "sha256:", 1)
    store = blob.parent.parent
    found: Path | None = None
    for dirpath, _dirs, files in os.walk(store / "manifests"):
        for fn in files:
            try:
                with open(os.path.join(dirpath, fn), "rb") as f:
                    m = json.loads(f.read(1 << 20))
                layers = [x for x in m.get("layers", []) if isinstance(x, dict)]
            except (OSError, ValueError, AttributeError, RecursionError):
                continue
            if not any(x.get("mediaType") == _OLLAMA_MODEL and x.get("digest") == digest for x in layers):
                continue
            proj = next((x.get("digest") for x in layers if x.get("mediaType") == _OLLAMA_PROJECTOR), None)
            if isinstance(proj, str) and proj.startswith("sha256:") and "/" not in proj:
                cand = store / "blobs" / proj.replace(":", "-", 1)
                if cand.is_file():
                    found = cand
                    break
        if found is not None:
            break
    if len(_ollama_seen) > 64:
        _ollama_seen.clear()
    _ollama_seen[key] = (now, found)
    return found


def find_projector(model_path: str | Path) -> Path | None:
    """The vision projector of ``model_path``: the ``mmproj*.gguf`` next to it (LM Studio's layout) if there
    is exactly one, or for a blob in an Ollama store, its manifest's ``projector`` layer."""
    p = Path(model_path)
    if p.parent.name == "blobs" and p.name.startswith("sha256-"):
        return ollama_projector(p)
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
