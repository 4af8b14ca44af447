"""LayerFit core: GGUF facts, memory model, hardware probe, fitter, engine, Modelfile, settings, CLI.

Nothing in this package imports Qt (tests/test_architecture.py checks it), so every piece can be
used from the command line, from tests, and from the GUI's worker threads alike.
"""

__version__ = "0.1.0"
