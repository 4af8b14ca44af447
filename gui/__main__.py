"""`python -m gui` is the same as the `layerfit` command: the app, or a subcommand."""

import sys

from gui.launch import main

sys.exit(main())
