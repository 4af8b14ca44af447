"""LayerFit's PySide6 front end. Everything slow runs in gui.workers; all logic lives in core."""
