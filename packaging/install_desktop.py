"""Install LayerFit in the Linux applications menu (a .desktop entry pointing at this checkout's .venv).

Run through `make install-desktop`. The entry is written to $XDG_DATA_HOME/applications (usually
~/.local/share/applications); remove that file to uninstall.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.atomic import write_text_atomic  # noqa: E402


def desktop_entry(exec_path: Path, icon: Path) -> str:
    template = (ROOT / "packaging" / "linux" / "layerfit.desktop.in").read_text(encoding="utf-8")
    return template.replace("@EXEC@", str(exec_path)).replace("@ICON@", str(icon))


def main() -> int:
    exe = Path(sys.executable).parent / "layerfit-gui"
    if not exe.exists():
        print(f"{exe} is missing: run `make run` once first", file=sys.stderr)
        return 1
    icon = ROOT / "resources" / "layerfit.png"
    apps = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "applications"
    apps.mkdir(parents=True, exist_ok=True)
    target = apps / "layerfit.desktop"
    write_text_atomic(target, desktop_entry(exe, icon))
    target.chmod(0o755)
    if shutil.which("update-desktop-database"):
        subprocess.run(["update-desktop-database", str(apps)], check=False)
    print(f"Installed {target}: LayerFit is now in your applications menu.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
