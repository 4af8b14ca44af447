"""The import-linter contracts in pyproject.toml really run: core never imports Qt or gui, and core is
layered (the CLI on top; errors and units at the bottom). A copy of the tree with one upward import must
break the contract, so the check can fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
    return subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(root)})


def test_the_contracts_hold() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "core is layered" in done.stdout and "2 kept, 0 broken" in done.stdout


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    for pkg in ("core", "gui"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    units = tmp_path / "core" / "units.py"
    units.write_text(units.read_text(encoding="utf-8") + "\nimport core.cli  # noqa: E402,F401\n", encoding="utf-8")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout and "core.units" in done.stdout


def test_the_commands_do_not_import_the_cli_module() -> None:
    for f in (ROOT / "core" / "commands").glob("*.py"):
        text = f.read_text(encoding="utf-8")
        assert "from core.cli import" not in text and "import core.cli\n" not in text, f.name


def test_every_core_module_has_a_layer() -> None:
    """A module left out of the layers is not checked: each one must be placed."""
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layered = next(c for c in cfg["contracts"] if c["type"] == "layers")
    named = {m.strip() for layer in layered["layers"] for m in layer.replace("|", ":").split(":")}
    modules = {f"core.{p.stem}" for p in (ROOT / "core").glob("*.py") if p.stem != "__init__"}
    modules.add("core.commands")
    assert modules - named == set(), "place these in pyproject.toml's layers"
