"""Entry point of the frozen (PyInstaller) app: the same `layerfit` command, GUI without arguments."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # the engine's child process re-enters here in a frozen build
    from gui.launch import main

    sys.exit(main())
