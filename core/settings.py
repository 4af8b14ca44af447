"""App settings, declared once and typed, stored as JSON under platformdirs' user config dir.

The location can be moved with the ``LAYERFIT_CONFIG_DIR`` / ``LAYERFIT_DATA_DIR`` environment
variables (tests point them at a temp dir, so they never touch a real profile).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from core.atomic import SaveError, write_json_atomic
from core.typed import typed_fields

APP = "LayerFit"


def config_dir() -> Path:
    return Path(os.environ.get("LAYERFIT_CONFIG_DIR") or platformdirs.user_config_dir(APP, appauthor=False))


def data_dir() -> Path:
    return Path(os.environ.get("LAYERFIT_DATA_DIR") or platformdirs.user_data_dir(APP, appauthor=False))


def settings_path() -> Path:
    return config_dir() / "settings.json"


@dataclass
class AppSettings:
    """Everything LayerFit remembers between runs (except chats, see core.chats)."""

    model_folders: list[str] = field(default_factory=list)
    extra_models: list[str] = field(default_factory=list)  # single files added by hand or dropped
    last_model: str | None = None
    load_settings: dict[str, Any] = field(default_factory=dict)  # LoadSettings.to_dict() per last model
    sampling: dict[str, Any] = field(default_factory=dict)  # SamplingSettings.to_dict()
    headroom_mib: int = 768
    hardware_choice: str = "this machine"  # or a preset key / size
    whatif_ram_mib: int = 0  # RAM of the what-if machine; 0 = this machine's
    model_settings: dict[str, Any] = field(default_factory=dict)  # library key → LoadSettings.to_dict()
    last_folder: str | None = None  # where file dialogs open
    color_scheme: str = "system"  # "system" | "light" | "dark"
    workers: list[str] = field(default_factory=list)  # RPC workers (host:port, or a what-if size)
    what_if_cards: int = 1  # how many of the what-if card
    window_geometry: str | None = None  # base64 of QWidget.saveGeometry()
    window_state: str | None = None
    last_chat_id: str | None = None
    # Not saved: why the file on disk couldn't be read (these defaults then refuse to overwrite it).
    read_problem: str | None = field(default=None, compare=False, repr=False)

    @classmethod
    def load(cls, path: Path | None = None) -> AppSettings:
        """Read settings. A missing file gives defaults. A damaged file (bad JSON) is kept aside as
        ``settings.json.bad-<time>`` and defaults are used; values of the wrong type fall back to their
        defaults one by one. A file that exists but can't be read (permissions, I/O error) gives defaults
        that refuse to be saved, so the real file is never overwritten with them."""
        path = path or settings_path()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            return cls()
        except ValueError:
            with contextlib.suppress(OSError):
                path.replace(path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}"))
            return cls()
        except OSError as exc:
            s = cls()
            s.read_problem = f"{path} could not be read ({exc.strerror or exc})"
            return s
        raw.pop("read_problem", None)
        return cls(**typed_fields(cls, raw))

    def save(self, path: Path | None = None) -> None:
        """Write atomically. Raises SaveError (the previous file stays intact)."""
        if self.read_problem:
            raise SaveError(0, f"settings not saved: {self.read_problem}, and saving would replace it with defaults")
        data = asdict(self)
        del data["read_problem"]
        write_json_atomic(path or settings_path(), data)
