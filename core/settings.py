"""App settings, declared once and typed, stored as JSON under platformdirs' user config dir.

The location can be moved with the ``LAYERFIT_CONFIG_DIR`` / ``LAYERFIT_DATA_DIR`` environment
variables (tests point them at a temp dir, so they never touch a real profile).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from core.atomic import SaveError, write_json_atomic
from core.safeload import StoredFileError, read_json, set_aside
from core.typed import typed_fields

APP = "LayerFit"
#: Settings are a few KB; a file far larger than this is damage (and would take a minute to parse).
MAX_SETTINGS_BYTES = 4 * 2**20


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
    # Not saved: what went wrong with the file this start (damaged and kept aside, values ignored), in
    # words the window shows once. None when the file was fine.
    notice: str | None = field(default=None, compare=False, repr=False)

    @classmethod
    def load(cls, path: Path | None = None) -> AppSettings:
        """Read settings through the bounded loader (core.safeload). A missing file gives defaults. A
        damaged file (bad JSON, absurd size or nesting) is kept aside as ``settings.json.bad-<time>``,
        defaults are used and ``notice`` says so; values of the wrong type or out of range fall back to
        their defaults one by one. A file that exists but can't be read (permissions, I/O error, a pipe
        or device in its place) gives defaults that refuse to be saved, so it is never overwritten."""
        path = path or settings_path()
        try:
            raw, replaced = read_json(path, MAX_SETTINGS_BYTES)
            if not isinstance(raw, dict):
                raise StoredFileError(path, "damaged", "it does not hold settings (not a JSON object)")
        except StoredFileError as exc:
            if exc.kind == "missing":
                return cls()
            s = cls()
            if exc.damaged:
                moved = set_aside(path)
                where = f"it was kept aside as {moved.name}" if moved else "it could not be moved aside"
                s.notice = f"Your settings file was damaged ({exc.problem}); {where} and defaults are used."
                if moved is None:
                    s.read_problem = f"{path} is damaged ({exc.problem})"
            else:
                s.read_problem = f"{path} could not be read ({exc.problem})"
                s.notice = f"Your settings file could not be read ({exc.problem}); defaults are used this time."
            return s
        raw.pop("read_problem", None)
        raw.pop("notice", None)
        kept = typed_fields(cls, raw)
        s = cls(**kept)
        ignored = sorted(k for k in raw if k in _FIELD_NAMES and k not in kept)
        if ignored or replaced:
            s.notice = ("Some saved settings were not valid and their defaults are used: "
                        + ", ".join(ignored or ["a number out of range"]) + ".")
        return s

    def save(self, path: Path | None = None) -> None:
        """Write atomically. Raises SaveError (the previous file stays intact)."""
        if self.read_problem:
            raise SaveError(0, f"settings not saved: {self.read_problem}, and saving would replace it with defaults")
        data = asdict(self)
        del data["read_problem"]
        del data["notice"]
        write_json_atomic(path or settings_path(), data)


_FIELD_NAMES = {f for f in AppSettings.__dataclass_fields__ if f not in ("read_problem", "notice")}
