"""The `layerfit` command: no argument (or `gui`) opens the app; anything else is the core CLI.

This lives in gui/ so that core never imports the GUI: core.cli handles every subcommand, and only
this launcher knows both halves.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args == ["gui"]:
        from gui.app import main as gui_main

        return gui_main([])
    from core.cli import main as cli_main

    return cli_main(args)
