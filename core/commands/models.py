"""`layerfit models`: the GGUFs in the configured folders, plus the demo model."""

from __future__ import annotations

import argparse
import json

from core.gguf_info import ModelFileError, read_model_info
from core.library import list_models
from core.ollama import OllamaStore, read_store
from core.settings import AppSettings
from core.units import fmt_bytes


def run(args: argparse.Namespace) -> int:
    settings = AppSettings.load()
    folders = list(settings.model_folders) + list(args.folder or [])
    rows = []
    for e in list_models(folders, settings.extra_models):
        row: dict[str, object] = {"path": e.path, "name": e.name, "size": e.size, "source": e.source}
        if e.problem:
            row["error"] = e.problem
        else:
            try:
                info = read_model_info(e.path)
                row.update(arch=info.arch, n_layer=info.n_layer, n_ctx_train=info.n_ctx_train,
                           n_params=info.n_params, file_type=info.file_type)
            except ModelFileError as exc:
                row["error"] = exc.problem
        rows.append(row)
    store = read_store()
    for m in store.models:
        row = {"path": m.path, "name": m.name, "size": m.size, "source": "ollama", "digest": m.digest,
               "params": dict(m.params), "shared_with": list(m.shared_with)}
        if m.problem:
            row["error"] = m.problem
        rows.append(row)
    if args.json:
        print(json.dumps({"folders": folders, "models": rows, "ollama": store.to_json()}, indent=2))
        return 0
    if not rows:
        print("No models found. Add a folder in the app, or pass --folder DIR.")
        print(ollama_summary(store))
        return 0
    for r in rows:
        if r["source"] == "ollama":
            continue
        tag = " (demo)" if r["source"] == "demo" else ""
        if "error" in r:
            print(f"{r['name']}{tag}  —  error: {r['error']}\n    {r['path']}")
        else:
            n_params = r.get("n_params")
            params = f"{n_params / 1e9:.2f}B" if isinstance(n_params, int) and n_params else "?"
            size = r["size"] if isinstance(r["size"], int) else 0
            print(f"{r['name']}{tag}  {r['arch']}  {params}  {r['file_type']}  {fmt_bytes(size)}  "
                  f"ctx {r['n_ctx_train']}\n    {r['path']}")
    if not folders:
        print("\n(no model folders configured yet: add one in the app, or use --folder DIR)")
    print(ollama_summary(store))
    return 0


def ollama_summary(store: OllamaStore) -> str:
    """The Ollama section: each GGUF blob once, with every name that uses it; broken entries as lines."""
    lines = [f"\nOllama models ({', '.join(store.dirs) or 'no store folder'}):"]
    if not store.models and not store.problems:
        lines.append("  none found (set OLLAMA_MODELS if Ollama keeps them elsewhere)")
    for blob in store.blobs:
        names = [m for m in store.models if m.digest == blob.digest]
        lines.append(f"  {fmt_bytes(blob.size)}  {blob.digest[:19]}…  used by {len(names)} name"
                     + ("s" if len(names) != 1 else ""))
        for m in names:
            ctx = m.params.get("num_ctx")
            extra = f"  num_ctx {ctx}" if ctx else ""
            extra += "  (has a vision projector)" if m.projectors else ""
            lines.append(f"    {m.name}{extra}")
    for m in store.models:
        if m.problem:
            lines.append(f"  {m.name}  — error: {m.problem}")
    lines += [f"  {p}" for p in store.problems]
    return "\n".join(lines)
