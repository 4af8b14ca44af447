"""Fault suite for model files and folders (issue 16, case 4): FIFOs, symlink loops, NUL bytes in saved
paths, hostile headers and memory limits. The header reader and the folder scan must answer in words
and never hang, and one bad entry must never hide the others (or the demo model)."""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gguf_factory import QWEN25_32B, Shape, write_sparse_model, write_tiny_model

from core.gguf_info import MAX_HEADER_ITEMS, ModelFileError, read_model_info
from core.library import list_models, path_problem

ROOT = Path(__file__).resolve().parents[1]


def _no_hang(fn: Callable[[], Any], limit: float = 60.0) -> Any:
    """A hang guard (not a speed check): fail instead of blocking the suite forever."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), "the call never returned"
    if "error" in out:
        raise out["error"]
    return out["value"]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, env=e,
                          timeout=300)


def test_a_fifo_named_gguf_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError) as e:
        _no_hang(lambda: read_model_info(fifo))
    assert "not a regular file" in str(e.value)


def test_plan_and_run_on_special_paths_say_what_they_are(tmp_path: Path) -> None:
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    r = _cli("plan", str(fifo), "--vram", "8GiB")
    assert r.returncode != 0 and "is a pipe or a device, not a model file" in r.stderr
    assert "Traceback" not in r.stderr
    assert "folder" in path_problem(tmp_path)
    assert "pipe or a device" in path_problem(fifo)
    assert "pipe or a device" in path_problem("/dev/zero")
    assert "no such model file" in path_problem(tmp_path / "nope.gguf")
    r = _cli("run", str(tmp_path), "--prompt", "hi")
    assert r.returncode != 0 and "is a folder" in r.stderr


def test_a_symlink_loop_and_a_fifo_in_a_model_folder_keep_the_rest_listed(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    good = write_tiny_model(folder / "good.gguf", Shape(n_layer=2))
    os.symlink("loop.gguf", folder / "loop.gguf")  # points at itself
    os.symlink(folder / "b.gguf", folder / "a.gguf")
    os.symlink(folder / "a.gguf", folder / "b.gguf")
    os.mkfifo(folder / "pipe.gguf")
    os.symlink(folder, folder / "again")  # a folder loop (not followed)
    entries = _no_hang(lambda: list_models([folder], ["/no/such\x00path.gguf"]))
    by_name = {e.name: e for e in entries}
    assert any(e.source == "demo" for e in entries)
    assert by_name["good"].problem is None and by_name["good"].path == str(good.resolve())
    for name in ("loop", "a", "b"):
        assert by_name[name].problem == "a loop of symbolic links"
    assert "not a regular file" in (by_name["pipe"].problem or "")
    nul = [e for e in entries if e.source == "file"]
    assert len(nul) == 1 and "NUL" in (nul[0].problem or "")
    # the demo and the good model still read
    assert read_model_info(by_name["good"].path).n_layer == 2


def test_layerfit_models_survives_a_loop_and_a_nul_in_saved_settings(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    write_tiny_model(folder / "good.gguf", Shape(n_layer=2))
    os.symlink("loop.gguf", folder / "loop.gguf")
    os.mkfifo(folder / "pipe.gguf")
    config = tmp_path / "config"
    config.mkdir()
    (config / "settings.json").write_text(json.dumps({"model_folders": [str(folder), "/x\x00y"],
                                                      "extra_models": ["/a\x00b.gguf"]}), encoding="utf-8")
    env = {"LAYERFIT_CONFIG_DIR": str(config), "LAYERFIT_DATA_DIR": str(tmp_path / "data")}
    r = _cli("models", "--json", env=env)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["models"]
    names = {row["name"]: row for row in rows}
    assert any(row["source"] == "demo" and "error" not in row for row in rows)
    assert "error" not in names["good"]
    assert names["loop"]["error"] == "a loop of symbolic links"
    assert "not a regular file" in names["pipe"]["error"]


def _nested_array_header(path: Path, outer: int, size: int) -> Path:
    """A GGUF whose one metadata value is an array of ``outer`` arrays; the rest of the file is zeros,
    which read as empty uint8 arrays: the header never ends until the items run out."""
    with open(path, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, 0, 1))
        f.write(struct.pack("<Q", 1) + b"x" + struct.pack("<IIQ", 9, 9, outer))
        f.truncate(size)  # sparse
    return path


def test_a_huge_nested_array_header_stops_with_header_too_large(tmp_path: Path) -> None:
    p = _nested_array_header(tmp_path / "nested.gguf", outer=80_000_000, size=2**30)
    with pytest.raises(ModelFileError) as e:
        _no_hang(lambda: read_model_info(p))
    assert "header too large" in str(e.value)
    p2 = _nested_array_header(tmp_path / "nested2.gguf", outer=MAX_HEADER_ITEMS + 1, size=64 * 2**20)
    with pytest.raises(ModelFileError) as e:
        read_model_info(p2)
    assert "header too large" in str(e.value)


def test_a_header_longer_than_the_first_read_is_read_in_full(tmp_path: Path) -> None:
    """A header past the first chunk (a big vocabulary) is read by growing reads, not rejected."""
    import core.gguf_info as gi

    p = write_tiny_model(tmp_path / "t.gguf", Shape(n_layer=2))
    whole = read_model_info(p)
    old = gi.FIRST_READ
    try:
        gi.FIRST_READ = 64  # every field now needs another read
        again = read_model_info(p)
    finally:
        gi.FIRST_READ = old
    assert again == whole


def _read_under_limit(path: str, limit: int) -> None:  # runs in a child process
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    info = read_model_info(path)
    print(json.dumps({"n_layer": info.n_layer, "file_size": info.file_size}))


def test_a_model_larger_than_the_address_space_limit_is_read(tmp_path: Path) -> None:
    p = write_sparse_model(tmp_path / "big.gguf", QWEN25_32B)
    size = p.stat().st_size
    limit = 3 * 2**30
    assert size > limit  # a whole-file mmap could not even be mapped
    code = ("import sys; sys.path.insert(0, 'tests'); from test_robust_files import _read_under_limit; "
            f"_read_under_limit({str(p)!r}, {limit})")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"n_layer": QWEN25_32B.n_layer, "file_size": size}
