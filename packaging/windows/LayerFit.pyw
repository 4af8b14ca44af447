"""Double-click start on Windows: .pyw files open with pythonw, so no console window appears.

Make a shortcut to this file (or run `.venv\\Scripts\\layerfit-gui.exe`, the GUI launcher pip made,
which also starts without a console). It uses the checkout's .venv when started by another Python.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
venv_pyw = ROOT / ".venv" / "Scripts" / "pythonw.exe"

if venv_pyw.exists() and Path(sys.executable).resolve() != venv_pyw.resolve():
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    subprocess.Popen([str(venv_pyw), "-m", "gui"], cwd=ROOT, creationflags=flags)
    sys.exit(0)

sys.path.insert(0, str(ROOT))
os.chdir(ROOT)
from gui.launch import main  # noqa: E402

sys.exit(main([]))
