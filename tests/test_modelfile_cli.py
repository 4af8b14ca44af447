"""`layerfit modelfile`: a real (tiny) GGUF through the real fitter, written and read back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.cli import main
from core.modelfile import read_modelfile

# tests/gguf_factory.Shape(): 4 blocks; llama.cpp counts the output layer as one more.
TINY_LAYERS = 4 + 1


def test_writes_a_modelfile_that_reads_back(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "Modelfile"
    out.parent.mkdir()  # the user picks an existing folder; a typo is refused
    system = 'You are "terse".\nAnswer in one line.'
    rc = main(["modelfile", str(tiny_model), "--vram", "16GiB", "--ctx", "1024", "--kv-type", "q8_0",
               "--temperature", "0.3", "--top-k", "9", "--seed", "11", "--num-predict", "64",
               "--repeat-last-n", "16", "--system", system, "--stop", "</s>", "--stop", "User: ", "-o", str(out)])
    assert rc == 0
    assert str(out) in capsys.readouterr().out
    text = out.read_text()
    # 16 GiB holds the whole tiny model: every layer goes to the GPU
    assert f"PARAMETER num_gpu {TINY_LAYERS}\n" in text
    assert f"FROM {tiny_model.resolve()}\n" in text
    assert "OLLAMA_KV_CACHE_TYPE=q8_0" in text and "OLLAMA_FLASH_ATTENTION=1" in text
    assert not [line for line in text.splitlines() if line.startswith("PARAMETER") and "#" in line]

    spec = read_modelfile(out)
    assert spec.from_path == str(tiny_model.resolve())
    assert (spec.num_ctx, spec.num_gpu) == (1024, TINY_LAYERS)
    s = spec.sampling
    assert (s.temperature, s.top_k, s.seed, s.max_tokens, s.repeat_last_n) == (0.3, 9, 11, 64, 16)
    assert s.system == system and s.stop == ("</s>", "User: ")
    assert (spec.kv_type_k, spec.kv_type_v, spec.flash_attn) == ("q8_0", "q8_0", "on")


def test_pin_auto_and_stdout(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modelfile", str(tiny_model), "--vram", "16GiB", "--gpu-layers", "2", "-o", "-"]) == 0
    assert re.search(r"^PARAMETER num_gpu 2$", capsys.readouterr().out, re.M)
    assert main(["modelfile", str(tiny_model), "--vram", "16GiB", "--auto-gpu", "-o", "-"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("# Modelfile made by LayerFit")
    assert "PARAMETER num_gpu" not in printed
    assert "PARAMETER num_ctx 4096\n" in printed  # LoadSettings' default context


def test_errors_are_one_line_and_nothing_is_written(tiny_model: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "Modelfile"
    assert main(["modelfile", str(tmp_path / "missing.gguf"), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no such model file" in err and "Traceback" not in err

    assert main(["modelfile", str(tiny_model), "--system", 'say """hi"""', "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert '"""' in err and "Traceback" not in err
    assert not out.exists()

    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("just text")
    assert main(["modelfile", str(not_gguf), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_output_in_a_missing_folder_is_refused_and_creates_nothing(tiny_model: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "typo" / "Modelfile"
    assert main(["modelfile", str(tiny_model), "--vram", "16GiB", "-o", str(out)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not out.parent.exists()
