"""Make the README's screenshots: the window at 1024×700, 1440×900 and 1920×1080, light and dark.

Run in a real X session (or Xvfb) from the repository root:
    python docs/make_layout_screenshots.py docs/screenshots
It plans a sparse 32B model (only its header is written) on a what-if Tesla T4 at a 32K context and opens a
saved chat with a Markdown reply, in throw-away settings and data folders.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
SIZES = ((1024, 700), (1440, 900), (1920, 1080))
REPLY = """Flash attention keeps the compute buffer small at long context. To turn it on in Ollama:

```sh
OLLAMA_FLASH_ATTENTION=1 ollama serve
```

- **num_ctx 32768** fits with *34 of 65* layers on the GPU.
- A `q8_0` KV cache halves the cache."""


def main(out: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="layerfit-shots-"))
    os.environ["LAYERFIT_CONFIG_DIR"] = str(tmp / "config")
    os.environ["LAYERFIT_DATA_DIR"] = str(tmp / "data")
    from gguf_factory import QWEN25_32B, write_sparse_model

    from core.chats import Chat, ChatStore
    from gui.app import make_app
    from gui.mainwindow import MainWindow

    model = str(write_sparse_model(tmp / "Qwen2.5-32B-Instruct-Q4_K_M.gguf", QWEN25_32B))
    chat = Chat(title="Long context on a T4")
    chat.add("user", "How do I keep a 32K context fast?")
    chat.add("assistant", REPLY, {"tokens": 61, "tokens_per_second": 9.8, "time_to_first_token": 0.4})
    ChatStore().save(chat)
    app = make_app([])
    out.mkdir(parents=True, exist_ok=True)
    for scheme in ("light", "dark"):
        w = MainWindow(prefetch=False)
        w.set_color_scheme(scheme)
        w.load_panel.set_hardware_choice("t4")
        w.library.add_files([model])
        w.library.select_path(model)
        w.show()
        _spin(app, 1.5)
        w.load_panel.ctx_spin.setValue(32768)
        _spin(app, 3.0)
        for width, height in SIZES:
            w.resize(width, height)
            _spin(app, 1.5)
            path = out / f"layerfit-{width}x{height}-{scheme}.png"
            w.grab().save(str(path))
            print(path, w.size().width(), w.size().height())
        w.close()
        _spin(app, 0.5)


def _spin(app: object, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.02)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
