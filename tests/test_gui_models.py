"""The library's Qt list model (qtmodeltester) and the small pure helpers of the main-window widgets."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf_factory import write_tiny_model
from PySide6.QtCore import Qt

from core.gguf_info import read_model_info
from core.library import LibraryEntry
from core.tradeoff import TradeoffPoint, Where, context_stops, spill_context, sweep_values
from gui.library import LibraryPanel, ModelListModel, Role


def _entries(tmp_path: Path) -> tuple[list[LibraryEntry], Path]:
    good = write_tiny_model(tmp_path / "good.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    return [LibraryEntry(str(good), "good", good.stat().st_size, "file"),
            LibraryEntry(str(bad), "bad", bad.stat().st_size, "folder")], good


def test_model_list_passes_qtmodeltester(qtmodeltester, tmp_path: Path) -> None:
    entries, good = _entries(tmp_path)
    model = ModelListModel()
    model.set_entries(entries)
    qtmodeltester.check(model)
    model.set_info(str(good), read_model_info(good))
    model.set_error(entries[1].path, "bad.gguf: not a GGUF file")
    qtmodeltester.check(model)
    model.set_entries(entries[:1])
    qtmodeltester.check(model)


def test_rows_show_header_facts_and_errors(tmp_path: Path) -> None:
    entries, good = _entries(tmp_path)
    model = ModelListModel()
    model.set_entries(entries)
    assert model.rowCount() == 2
    first = model.index(0, 0)
    # before the header is read, a row shows its file size only
    assert model.data(first, Role.INFO) is None
    info = read_model_info(good)
    model.set_info(str(good), info)
    summary = model.data(first, Role.SUMMARY)
    # the tiny model is a llama with a 2048-token trained context (tests/gguf_factory.Shape defaults)
    assert "llama" in summary and "2K context" in summary
    model.set_error(entries[1].path, "bad.gguf: not a GGUF file")
    second = model.index(1, 0)
    assert model.data(second, Role.ERROR) == "bad.gguf: not a GGUF file"
    assert "not a GGUF" in model.data(second, Qt.ItemDataRole.ToolTipRole)
    # a re-listing keeps what was already read
    model.set_entries(list(reversed(entries)))
    assert model.data(model.index(1, 0), Role.INFO) is info
    assert model.data(model.index(0, 0), Role.ERROR) == "bad.gguf: not a GGUF file"
    assert model.next_unread() is None


def test_context_stops_are_powers_of_two_up_to_the_trained_context() -> None:
    assert context_stops(8192) == [512, 1024, 2048, 4096, 8192]
    # a trained context that isn't a power of two is still the last stop
    assert context_stops(40960) == [512, 1024, 2048, 4096, 8192, 16384, 32768, 40960]
    assert context_stops(100) == [512]


def test_sweep_values_and_spill_point() -> None:
    assert sweep_values(4096, 3000) == [512, 1024, 2048, 3000, 4096]
    pts = [TradeoffPoint(c, c * 10, c * 10, layers, 65, None, Where.GPU if layers == 65 else Where.LAYERS)
           for c, layers in ((512, 65), (1024, 65), (2048, 40), (4096, 20))]
    assert spill_context(pts) == 2048
    assert spill_context(pts[:2]) is None


def test_a_finished_download_loses_its_truncated_error(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    full = write_tiny_model(tmp_path / "whole.gguf").read_bytes()
    path = tmp_path / "downloading.gguf"
    path.write_bytes(full[: len(full) // 2])  # half a download: the tensor data runs past the end
    panel = LibraryPanel(files=[str(path)], prefetch=False)
    qtbot.addWidget(panel)
    failed: list[tuple[str, str]] = []
    chosen: list[object] = []
    panel.model_failed.connect(lambda p, e: failed.append((p, e)))
    panel.model_chosen.connect(chosen.append)
    panel.select_path(str(path))
    panel.refresh()
    qtbot.waitUntil(lambda: bool(failed), timeout=30000)
    assert panel.model.error_of(str(path))
    assert not chosen

    path.write_bytes(full)  # the download completes at the same path
    panel.refresh()
    qtbot.waitUntil(lambda: bool(chosen), timeout=30000)
    assert panel.model.error_of(str(path)) is None
    info = panel.model.info_of(str(path))
    assert info is not None and info.n_layer == 4  # gguf_factory's default shape
    assert len(failed) == 1


@pytest.fixture(autouse=True)
def _drain_workers():  # type: ignore[no-untyped-def]
    yield
    from gui.workers import wait_all

    wait_all(60000)
