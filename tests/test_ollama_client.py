"""The bridge to a running Ollama, tested against an in-process HTTP server that answers /api/version,
/api/tags, /api/ps, /api/show and /api/create with the response shapes of Ollama's API docs
(tests/ollama_api_fixtures.py). The tests assert the exact requests LayerFit sends, and that an Ollama
that is down, errs or hangs is one plain line while everything else keeps working."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import ollama_api_fixtures as api
import pytest
from ollama_fake_server import FakeOllama, closed_port

from core.cli import main
from core.fit import plan_for_layers
from core.gguf_info import read_model_info
from core.loadsettings import LoadSettings
from core.ollama import read_store
from core.ollama_client import OllamaError, OllamaServer, OllamaUnavailable, RunningModel, create_fields
from core.units import GiB


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOllama]:
    f = FakeOllama()
    monkeypatch.setenv("OLLAMA_HOST", f.host)
    yield f
    f.close()


# --- the client -----------------------------------------------------------------------------------------


def test_client_reads_the_documented_shapes_and_sends_the_documented_requests(fake: FakeOllama) -> None:
    server = OllamaServer()
    assert server.host == fake.host  # from OLLAMA_HOST
    assert server.version() == "0.5.1"
    assert server.tags() == ["deepseek-r1:latest", "llama3.2:latest"]
    fake.ps = copy.deepcopy(api.PS["models"])
    (r,) = server.ps()
    assert (r.name, r.size, r.size_vram, r.context_length) == ("mistral:latest", 5137025024, 5137025024, 4096)
    assert r.processor == "100% GPU"
    shown = server.show("llama3.2:latest")
    assert shown["details"]["quantization_level"] == "Q4_0"
    assert [(m, p) for m, p, _ in fake.requests] == [
        ("GET", "/api/version"), ("GET", "/api/tags"), ("GET", "/api/ps"), ("POST", "/api/show")]
    assert fake.requests[-1][2] == {"model": "llama3.2:latest"}


def test_processor_reads_like_ollama_ps() -> None:
    assert RunningModel("m", 100, 0, None).processor == "100% CPU"
    assert RunningModel("m", 100, 100, None).processor == "100% GPU"
    assert RunningModel("m", 100, 52, None).processor == "48%/52% CPU/GPU"


def test_down_erring_and_hanging_ollama_are_one_line_each(fake: FakeOllama) -> None:
    with pytest.raises(OllamaUnavailable, match="not running at 127.0.0.1:") as down:
        OllamaServer(host=closed_port()).ps()
    assert "\n" not in str(down.value)
    fake.fail = (500, "llama runner process has terminated")
    with pytest.raises(OllamaError, match="llama runner process has terminated .HTTP 500.") as err:
        OllamaServer().ps()
    assert "\n" not in str(err.value)
    fake.fail = None
    with pytest.raises(OllamaError, match="model 'nope:latest' not found .HTTP 404."):
        OllamaServer().show("nope:latest")
    fake.hang = 2.0
    with pytest.raises(OllamaUnavailable, match=r"did not answer the running-models request within 0.3 s"):
        OllamaServer(timeout=0.3).ps()


def test_create_sends_from_parameters_and_system_then_lists_it_back(fake: FakeOllama) -> None:
    statuses = OllamaServer().create("smollm2:135m-fits", "smollm2:135m-max-context",
                                     {"num_ctx": 16384, "num_gpu": 31, "stop": ["<|im_end|>"]}, "Be brief.")
    assert statuses == ["success"]
    create = [b for m, p, b in fake.requests if p == "/api/create"]
    assert create == [{"model": "smollm2:135m-fits", "from": "smollm2:135m-max-context", "stream": False,
                       "parameters": {"num_ctx": 16384, "num_gpu": 31, "stop": ["<|im_end|>"]},
                       "system": "Be brief."}]
    assert [p for _, p, _ in fake.requests] == ["/api/create", "/api/tags"]  # confirmed by listing it back


def test_create_that_is_not_listed_afterwards_is_an_error(fake: FakeOllama) -> None:
    fake.create_lists_model = False
    with pytest.raises(OllamaError, match="does not list it afterwards"):
        OllamaServer().create("ghost", "llama3.2")


def test_create_fields_are_the_saved_modelfiles_values() -> None:
    text = ("FROM /m.gguf\nSYSTEM \"\"\"Two\nlines\"\"\"\nPARAMETER num_ctx 32768\nPARAMETER num_gpu 18\n"
            "PARAMETER temperature 0.7\nPARAMETER use_mmap false\nPARAMETER stop \"<|im_end|>\"\nPARAMETER stop END\n")
    params, system = create_fields(text)
    assert params == {"num_ctx": 32768, "num_gpu": 18, "temperature": 0.7, "use_mmap": False,
                      "stop": ["<|im_end|>", "END"]}
    assert system == "Two\nlines"


# --- `layerfit ollama ps`: Ollama's placement beside LayerFit's plan ------------------------------------------


def test_ollama_ps_explains_the_seed_story(fake: FakeOllama, env_store: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    # Ollama loaded the derived model at 131072 tokens and put nothing on the GPU (size_vram 0).
    fake.running("smollm2:135m-max-context", size=3 * GiB, size_vram=0, context_length=131072)
    assert main(["plan", "smollm2:135m-max-context", "--vram", "2GiB", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert main(["ollama", "ps", "--vram", "2GiB", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["host"] == fake.host
    (c,) = obj["models"]
    assert c["ollama"]["processor"] == "100% CPU" and c["ollama_layers"] == 0 and c["ollama_layers_exact"]
    assert c["layerfit"]["settings"]["n_ctx"] == 131072
    assert c["layerfit"]["gpu_layers"] == planned["gpu_layers"] > 0
    text = c["explanation"]
    assert text.startswith("Ollama put 0 of 31 layers on the GPU")
    assert f"{planned['gpu_layers']} fit with 2.0 GiB free; set num_gpu {planned['gpu_layers']}" in text
    ctx_sugg = next(s for s in planned["suggestions"] if s["text"].startswith("num_ctx"))
    assert f"or num_ctx {ctx_sugg['settings']['n_ctx']} for {ctx_sugg['gpu_layers']} layers" in text
    assert [p for _, p, _ in fake.requests] == ["/api/ps"]
    assert main(["ollama", "ps", "--vram", "2GiB"]) == 0
    out = capsys.readouterr().out
    assert "smollm2:135m-max-context" in out and "100% CPU" in out and "ctx 131072" in out
    assert "LayerFit:" in out and "Ollama put 0 of 31 layers" in out


def test_ollama_ps_estimates_a_partial_offload_and_agrees_when_equal(fake: FakeOllama, env_store: Path,
                                                                     store: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    m = read_store([store]).find("smollm2:135m")
    assert m is not None and m.path
    info = read_model_info(m.path)
    from core.hardware import Hardware

    hw = Hardware(ram_total=64 * GiB, ram_available=64 * GiB).with_vram(2 * GiB)
    ten = plan_for_layers(info, LoadSettings(n_ctx=131072), hw, 10).gpu.total
    fake.running("smollm2:135m", size=3 * GiB, size_vram=ten, context_length=131072)
    fake.running("llama3.2:latest", size=2 * GiB, size_vram=2 * GiB, context_length=4096)
    assert main(["ollama", "ps", "--vram", "2GiB", "--ram", "64GiB", "--json"]) == 0
    first, second = json.loads(capsys.readouterr().out)["models"]
    assert first["ollama_layers"] == 10 and first["ollama_layers_exact"] is False
    assert first["explanation"].startswith("Ollama put about 10 of 31 layers on the GPU")
    assert "error" in second and "not in the Ollama store" in second["error"]  # the rest still shows


def test_ollama_ps_when_ollama_is_down_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OLLAMA_HOST", closed_port())
    assert main(["ollama", "ps"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("layerfit ollama: Ollama is not running at") and "\n" not in err


def test_ollama_ps_with_nothing_loaded(fake: FakeOllama, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ollama", "ps"]) == 0
    assert "has no model loaded" in capsys.readouterr().out


# --- `layerfit modelfile --create` -------------------------------------------------------------------------


def test_modelfile_create_makes_the_tuned_model_in_ollama(fake: FakeOllama, env_store: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "Modelfile"
    rc = main(["modelfile", "smollm2:135m-max-context", "--ctx", "16384", "--vram", "2GiB", "-o", str(out),
               "--create", "smollm2:135m-fits"])
    assert rc == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert "created smollm2:135m-fits" in stdout and "listed by the server" in stdout
    saved = out.read_text()
    params, system = create_fields(saved)
    create = [b for _, p, b in fake.requests if p == "/api/create"]
    assert create == [{"model": "smollm2:135m-fits", "from": "smollm2:135m-max-context", "stream": False,
                       "parameters": params, "system": "You are a terse geography tutor."}]
    assert params["num_ctx"] == 16384 and params["temperature"] == 0.2
    assert params["stop"] == ["<|im_start|>", "<|im_end|>"]
    assert system == "You are a terse geography tutor."
    assert any(t["model"] == "smollm2:135m-fits" for t in fake.tags)


def test_modelfile_create_with_ollama_down_still_saves_the_modelfile(env_store: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OLLAMA_HOST", closed_port())
    out = tmp_path / "Modelfile"
    assert main(["modelfile", "smollm2:135m", "-o", str(out), "--create", "tuned"]) == 1
    err = capsys.readouterr().err.strip()
    assert "not running" in err and "the Modelfile is saved" in err and "\n" not in err
    assert out.read_text().startswith("# Modelfile made by LayerFit")


def test_modelfile_create_needs_an_ollama_source(tiny_model: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modelfile", str(tiny_model), "-o", str(tmp_path / "M"), "--create", "x"]) == 2
    assert "--create needs an Ollama model" in capsys.readouterr().err
    assert not (tmp_path / "M").exists()


def test_vram_ollama_holds_counts_as_free_for_the_comparison() -> None:
    from core.hardware import GPU, Hardware
    from core.ollama_compare import hardware_for_ps

    hw = Hardware(gpus=(GPU(0, "card", 16 * GiB, 4 * GiB),), ram_total=64 * GiB, ram_available=32 * GiB)
    held = [RunningModel("a", 12 * GiB, 10 * GiB, 8192), RunningModel("b", 1 * GiB, 1 * GiB, 2048)]
    assert hardware_for_ps(hw, held).vram_free == 15 * GiB
    assert hardware_for_ps(hw, [RunningModel("big", 40 * GiB, 30 * GiB, 8192)]).vram_free == 16 * GiB  # capped
    assert hardware_for_ps(Hardware(), held).gpu is None


def test_a_vision_projector_counts_in_ollamas_vram(fake: FakeOllama, tmp_path: Path, demo_model: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from ollama_store_factory import MODEL, PROJECTOR, add_bytes, add_file, add_manifest

    from core.hardware import Hardware

    store = tmp_path / "models"
    projector = add_bytes(store, PROJECTOR, b"GGUF" + bytes(24 * 1024**2 - 4))  # bigger than a few layers
    add_manifest(store, "seer:latest", [add_file(store, MODEL, demo_model), projector])
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    m = read_store([store]).find("seer")
    assert m is not None and m.path and m.projector_size == 24 * 1024**2
    hw = Hardware(ram_total=64 * GiB, ram_available=64 * GiB).with_vram(2 * GiB)
    totals = [plan_for_layers(read_model_info(m.path), LoadSettings(n_ctx=8192), hw, k).gpu.total for k in (10, 11)]
    assert totals[1] - totals[0] < m.projector_size / 2  # ignoring the projector would miss by layers
    fake.running("seer:latest", size=1 * GiB, size_vram=totals[0] + m.projector_size, context_length=8192)
    assert main(["ollama", "ps", "--vram", "2GiB", "--ram", "64GiB", "--json"]) == 0
    (c,) = json.loads(capsys.readouterr().out)["models"]
    assert c["ollama_layers"] == 10 and c["ollama_layers_exact"] is False
    assert "24 MiB vision projector" in c["explanation"]
