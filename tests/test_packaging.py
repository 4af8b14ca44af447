"""Launchers: the .desktop entry, the Windows/macOS launchers, the freezer spec and CI's script."""

from __future__ import annotations

import configparser
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_desktop_entry_is_valid_and_points_at_the_gui(tmp_path: Path) -> None:
    mod = _load(ROOT / "packaging" / "install_desktop.py")
    text = mod.desktop_entry(tmp_path / "bin" / "layerfit-gui", tmp_path / "icon.png")
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(text)
    entry = cp["Desktop Entry"]
    assert entry["Type"] == "Application" and entry["Terminal"] == "false"
    assert str(tmp_path / "bin" / "layerfit-gui") in entry["Exec"]
    assert entry["Icon"] == str(tmp_path / "icon.png")
    assert "@" not in text  # every placeholder filled


def test_launchers_exist_and_start_the_gui_entry_point() -> None:
    pyw = (ROOT / "packaging" / "windows" / "LayerFit.pyw").read_text()
    assert "pythonw" in pyw and "gui.launch" in pyw
    cmd = ROOT / "packaging" / "macos" / "LayerFit.command"
    assert cmd.stat().st_mode & 0o111, "the .command must be executable to double-click"
    assert "make run" in cmd.read_text()
    spec = (ROOT / "packaging" / "layerfit.spec").read_text()
    assert 'collect_dynamic_libs("llama_cpp")' in spec


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "\nmake run\n" in readme and "\nmake test\n" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_gui_script_is_declared() -> None:
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["scripts"]["layerfit"] == "gui.launch:main"  # no argument: the app; else core.cli
    assert meta["gui-scripts"]["layerfit-gui"] == "gui.launch:main"


def test_gui_launcher_starts_the_window_from_any_folder(tmp_path: Path) -> None:
    """The `layerfit-gui` script (what the .desktop entry and shortcuts run) opens the window offscreen."""
    import os
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "layerfit-gui"
    assert exe.exists(), "pip should have made the GUI launcher"
    shot = tmp_path / "window.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "LAYERFIT_SCREENSHOT": str(shot),
           "LAYERFIT_EXIT_AFTER_SCREENSHOT": "1", "LAYERFIT_CONFIG_DIR": str(tmp_path / "c"),
           "LAYERFIT_DATA_DIR": str(tmp_path / "d")}
    r = subprocess.run([str(exe)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert shot.stat().st_size > 10_000  # a real picture of the window, not an empty file
    assert (tmp_path / "c" / "settings.json").exists()  # the window saved its settings on close


def test_install_desktop_puts_an_entry_in_the_applications_menu(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    mod = _load(ROOT / "packaging" / "install_desktop.py")
    monkeypatch.setattr(mod.sys, "executable", sys.executable)
    assert mod.main() == 0
    entry = tmp_path / "applications" / "layerfit.desktop"
    text = entry.read_text()
    assert "layerfit-gui" in text and str(ROOT / "resources" / "layerfit.png") in text
    assert entry.stat().st_mode & 0o111  # launchable


def test_the_layerfit_command_routes_subcommands_to_the_core_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from gui.launch import main

    assert main(["doctor", "--json"]) == 0  # a subcommand: core.cli, no window
    assert '"findings"' in capsys.readouterr().out


def test_python_m_core_without_a_command_explains_how_to_open_the_app() -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "core"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "layerfit" in r.stderr and "plan" in r.stderr
