"""`layerfit run`: the reply on stdout, a JSON last line with the measured placement, errors in words."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from gguf_factory import Shape, write_tiny_model

from core.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_demo_model_answers_paris_with_a_measured_cpu_placement() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "core", "run", "--prompt",
         "What is the capital of France? Answer in one sentence.", "--temperature", "0", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    obj = json.loads(lines[-1])
    assert "Paris" in obj["text"]
    assert obj["text"] in proc.stdout.split(lines[-1])[0]  # streamed before the JSON line
    assert obj["tokens_per_second"] > 0
    pl = obj["placement"]
    assert pl["measured"] is True
    assert pl["processor"] == "100% CPU"
    assert pl["gpu_layers"] == 0
    assert pl["host"]["weights"] > 0 and pl["gpu"]["total"] == 0
    assert obj["fallbacks"] == []
    assert "loaded" in proc.stderr  # progress and info go to stderr


def test_tiny_model_in_process_with_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = write_tiny_model(tmp_path / "tiny.gguf", Shape(n_layer=2))
    rc = main(["run", str(model), "--prompt", "hello", "--max-tokens", "3", "--ctx", "256",
               "--gpu-layers", "0", "--seed", "7", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    obj = json.loads(out.strip().splitlines()[-1])
    # llama-cpp-python may run past max_tokens while a byte-token UTF-8 sequence is incomplete (random
    # weights emit raw bytes), so "length" well short of the default 512 is what shows --max-tokens arrived.
    assert obj["finish_reason"] == "length"
    assert 3 <= obj["tokens"] < 50
    assert obj["n_ctx"] == 256
    assert obj["settings"]["n_ctx"] == 256
    assert obj["placement"]["n_layer"] == 2
    assert obj["placement"]["measured"] is True


def test_missing_model_is_a_plain_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["run", "/nonexistent/model.gguf", "--prompt", "hi"])
    _, err = capsys.readouterr()
    assert rc == 1  # like plan and modelfile: a failure, not a usage error
    assert "no such model file" in err
    assert "Traceback" not in err


def test_corrupt_model_is_one_line_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a gguf file at all")
    rc = main(["run", str(bad), "--prompt", "hi"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert out == ""
    assert "bad.gguf" in err
    assert "Traceback" not in err
