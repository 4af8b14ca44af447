"""App settings, declared once and typed, stored as JSON under platformdirs' user config dir.

The location can be moved with the ``LAYERFIT_CONFIG_DIR`` / ``LAYERFIT_DATA_DIR`` environment
variables (tests point them at a temp dir, so they never touch a real profile).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

from core.atomic import write_json_atomic

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
    window_geometry: str | None = None  # base64 of QWidget.saveGeometry()
    window_state: str | None = None
    last_chat_id: str | None = None

    @classmethod
    def load(cls, path: Path | None = None) -> AppSettings:
        """Read settings; a missing or unreadable file gives defaults (a broken file is kept as .bad)."""
        path = path or settings_path()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("not an object")
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                path.replace(path.with_suffix(".json.bad"))
            return cls()
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

    def save(self, path: Path | None = None) -> None:
        write_json_atomic(path or settings_path(), asdict(self))
