"""Regenerate docs/screenshot-ollama.png: the library's Ollama section, and the seed story's
``deepseek-r1:32b-max-context`` (num_ctx 131072 in its params) planned for a 16 GB Tesla T4 with
64 GB of RAM.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_ollama_screenshot.py

Builds a throw-away Ollama store the way Ollama lays it out (manifests + sha256-named blobs): the
32B model is a sparse file with Qwen2.5-32B's real shapes (tests/gguf_factory.py; real to the header
reader, a few kilobytes on disk; hashing its 19 GB of zeros takes a little while), plus the demo model.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_profile = Path(tempfile.mkdtemp(prefix="layerfit-ollama-shot-"))
os.environ["LAYERFIT_CONFIG_DIR"] = str(_profile / "config")
os.environ["LAYERFIT_DATA_DIR"] = str(_profile / "data")
os.environ["OLLAMA_MODELS"] = str(_profile / "ollama" / "models")

QWEN_TEMPLATE = "{{- if .System }}{{ .System }}{{ end }}{{- range .Messages }}<｜{{ .Role }}｜>{{ .Content }}{{ end }}"


def build_store(store: Path) -> None:
    from gguf_factory import QWEN25_32B, write_sparse_model
    from ollama_store_factory import MODEL, PARAMS, TEMPLATE, add_bytes, add_file, add_json, add_manifest

    from core.demo import demo_model_path

    sparse = write_sparse_model(_profile / "deepseek-r1-32b.gguf", QWEN25_32B)
    weights = add_file(store, MODEL, sparse)
    template = add_bytes(store, TEMPLATE, QWEN_TEMPLATE.encode())
    stop = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"]
    add_manifest(store, "deepseek-r1:32b", [weights, template, add_json(store, PARAMS, {"stop": stop})])
    add_manifest(store, "deepseek-r1:32b-max-context",
                 [weights, template, add_json(store, PARAMS, {"num_ctx": 131072, "stop": stop})])
    demo = add_file(store, MODEL, demo_model_path())
    add_manifest(store, "smollm2:135m", [demo, add_json(store, PARAMS, {"stop": ["<|im_end|>"]})])


def main() -> int:
    from PySide6.QtCore import QTimer

    from core.hardware import Hardware, what_if
    from core.units import GiB
    from gui.app import make_app
    from gui.mainwindow import MainWindow

    build_store(Path(os.environ["OLLAMA_MODELS"]))
    app = make_app([])
    # A home-lab box: a 16 GB Tesla T4 and 64 GB of RAM (the same numbers on any machine that runs this).
    win = MainWindow(hardware=what_if("t4", base=Hardware((), 64 * GiB, 60 * GiB, 16)))
    win.resize(1440, 900)
    win.show()
    out = ROOT / "docs" / "screenshot-ollama.png"
    key = "ollama:deepseek-r1:32b-max-context"
    done = {"shot": False}

    def pick() -> None:
        row = win.library.model.row_of(key)
        if row < 0:
            QTimer.singleShot(200, pick)
            return
        win.library.view.setCurrentIndex(win.library.model.index(row, 0))
        QTimer.singleShot(300, wait_plan)

    def wait_plan() -> None:
        p = win.plan
        if p is None or p.model.name != "deepseek-r1:32b-max-context" or not win.advice.reasons.text():
            QTimer.singleShot(200, wait_plan)
            return
        QTimer.singleShot(800, shoot)

    def shoot() -> None:
        win.grab().save(str(out))
        done["shot"] = True
        print(f"saved {out}: {win.plan.processor if win.plan else '?'}, n_ctx "
              f"{win.plan.settings.n_ctx if win.plan else '?'}", file=sys.stderr)
        win.close()
        app.quit()

    QTimer.singleShot(300, pick)
    QTimer.singleShot(180_000, app.quit)  # never hang
    app.exec()
    return 0 if done["shot"] else 1


if __name__ == "__main__":
    sys.exit(main())
