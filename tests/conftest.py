"""Shared test set-up: offscreen Qt, and settings/data dirs in a temp folder so no test touches a real profile."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).parent))  # tests/gguf_factory.py


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path_factory.mktemp("profile")
    monkeypatch.setenv("LAYERFIT_CONFIG_DIR", str(base / "config"))
    monkeypatch.setenv("LAYERFIT_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("OLLAMA_MODELS", str(base / "ollama"))  # never the machine's real Ollama store
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")  # nor a real running Ollama (port 9: nothing listens)


@pytest.fixture(scope="session")
def demo_model() -> Path:
    from core.demo import demo_model_path

    return demo_model_path()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gguf_factory import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture
def messages() -> Iterator[list[tuple[str, str]]]:
    """Everything the GUI's notifier says during a test, as (level, text). (Qt is imported only here,
    so core tests never load it.)"""
    from gui.notify import notifier

    seen: list[tuple[str, str]] = []

    def record(level: str, text: str) -> None:
        seen.append((level, text))

    notifier().message.connect(record)
    yield seen
    notifier().message.disconnect(record)


# A real Ollama store in a temp folder (manifests + sha256-named blobs, one of them the demo model), shared by
# the Ollama store and client tests; each test module gets its own copy.
@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, demo_model: Path, tiny_model: Path) -> Path:
    from ollama_store_factory import build_seed_store

    root = tmp_path_factory.mktemp("ollama") / "models"
    build_seed_store(root, demo_model, tiny_model)
    return root


@pytest.fixture
def env_store(store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    return store
