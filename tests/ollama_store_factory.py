"""Build a real Ollama model store in a folder, the way Ollama lays it out on disk.

``blobs/sha256-<hex>`` holds each blob under the sha256 of its bytes; ``manifests/<host>/<namespace>/
<model>/<tag>`` is a Docker-style v2 manifest whose layers carry Ollama's media types. GGUF blobs are
hard-linked (or, across file systems, symlinked) to the source file rather than copied: the bytes, and
so the digest, are the same, and a 100 MB demo model costs no disk.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

MODEL = "application/vnd.ollama.image.model"
PARAMS = "application/vnd.ollama.image.params"
TEMPLATE = "application/vnd.ollama.image.template"
SYSTEM = "application/vnd.ollama.image.system"
PROJECTOR = "application/vnd.ollama.image.projector"
ADAPTER = "application/vnd.ollama.image.adapter"
LICENSE = "application/vnd.ollama.image.license"
CONFIG = "application/vnd.docker.container.image.v1+json"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str  # "sha256:<hex>"
    size: int

    def to_json(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def add_bytes(store: Path, media_type: str, data: bytes) -> Layer:
    hexdigest = hashlib.sha256(data).hexdigest()
    blob = store / "blobs" / f"sha256-{hexdigest}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    return Layer(media_type, f"sha256:{hexdigest}", len(data))


def add_json(store: Path, media_type: str, obj: object) -> Layer:
    return add_bytes(store, media_type, json.dumps(obj).encode())


def add_file(store: Path, media_type: str, source: Path) -> Layer:
    hexdigest = _sha256_file(source)
    blob = store / "blobs" / f"sha256-{hexdigest}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.exists():
        try:
            os.link(source, blob)
        except OSError:
            blob.symlink_to(Path(source).resolve())
    return Layer(media_type, f"sha256:{hexdigest}", source.stat().st_size)


def add_manifest(store: Path, name: str, layers: list[Layer], *, host: str = "registry.ollama.ai",
                 namespace: str = "library") -> Path:
    """Write the manifest for ``model:tag`` (``name``) under ``host/namespace``."""
    model, tag = name.split(":")
    config = add_json(store, CONFIG, {"model_format": "gguf", "model_family": "llama"})
    doc = {"schemaVersion": 2, "mediaType": MANIFEST, "config": config.to_json(),
           "layers": [layer.to_json() for layer in layers]}
    path = store / "manifests" / host / namespace / model / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


CHATML = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
          "<|im_start|>assistant\n")


def build_seed_store(store: Path, demo: Path, tiny: Path) -> None:
    """The seed story on the demo model: ``smollm2:135m`` and the derived ``smollm2:135m-max-context``
    (``num_ctx 131072``, a system prompt) share one GGUF blob; plus a Hugging Face name, a vision model
    with a projector, a LoRA adapter, and the broken entries the bridge must survive."""
    weights = add_file(store, MODEL, demo)
    template = add_bytes(store, TEMPLATE, CHATML.encode())
    stop = add_json(store, PARAMS, {"stop": ["<|im_start|>", "<|im_end|>"]})
    add_manifest(store, "smollm2:135m", [weights, template, stop])
    long_params = add_json(store, PARAMS, {"num_ctx": 131072, "temperature": 0.2,
                                           "stop": ["<|im_start|>", "<|im_end|>"]})
    system = add_bytes(store, SYSTEM, b"You are a terse geography tutor.")
    add_manifest(store, "smollm2:135m-max-context", [weights, template, long_params, system])

    tiny_layer = add_file(store, MODEL, tiny)
    add_manifest(store, "tiny-GGUF:Q8_0", [tiny_layer, add_json(store, PARAMS, {"num_gpu": 3})],
                 host="hf.co", namespace="someone")
    projector = add_bytes(store, PROJECTOR, b"GGUF" + bytes(4092))
    adapter = add_bytes(store, ADAPTER, b"GGUF" + bytes(60))
    add_manifest(store, "looker:latest", [tiny_layer, projector, adapter], namespace="me")

    add_manifest(store, "notgguf:latest", [add_bytes(store, MODEL, b"this is not a model file")])
    add_manifest(store, "gone:latest", [Layer(MODEL, "sha256:" + "ab" * 32, 123)])
    broken = store / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text('{"schemaVersion": 2, "layers": [')
