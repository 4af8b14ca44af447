"""Icons, the .desktop template and style sheets; located with importlib.resources."""
