"""`python -m core ...` is the same as the `layerfit` command."""

import sys

from core.cli import main

sys.exit(main())
