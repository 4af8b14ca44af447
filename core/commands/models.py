"""`layerfit models`: the GGUFs in the configured folders, plus the demo model."""

from __future__ import annotations

import argparse
import json

from core.gguf_info import ModelFileError, read_model_info
from core.library import list_models
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
    if args.json:
        print(json.dumps({"folders": folders, "models": rows}, indent=2))
        return 0
    if not rows:
        print("No models found. Add a folder in the app, or pass --folder DIR.")
        return 0
    for r in rows:
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
    return 0
