"""Ollama's model store, read from a real store layout built in a temp folder (tests/ollama_store_factory.py):
names as Ollama shows them, params and system layers, shared blobs, broken entries, and the CLI taking
Ollama names wherever it takes a path. One test loads the demo model's blob and hears "Paris"."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import main
from core.loadsettings import LoadSettings
from core.ollama import (
    OllamaModelNotFound,
    find_model,
    parse_name,
    read_store,
    resolve_model,
    sampling_from_params,
    settings_from_params,
    store_dirs,
)

ROOT = Path(__file__).resolve().parent.parent


def _tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``root``: (size, mtime_ns, sha256 of small files) to prove nothing was written."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if st.st_size < 1 << 20 else ""
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, digest)
    return out


# --- names ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "display"), [
    ("llama3", "llama3:latest"),
    ("llama3:8b", "llama3:8b"),
    ("registry.ollama.ai/library/llama3:latest", "llama3:latest"),
    ("library/deepseek-r1:32b", "deepseek-r1:32b"),
    ("someone/mistral:7b", "someone/mistral:7b"),
    ("hf.co/bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M", "hf.co/bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M"),
    ("localhost:5000/me/model:v1", "localhost:5000/me/model:v1"),
])
def test_names_display_as_ollama_shows_them(text: str, display: str) -> None:
    name = parse_name(text)
    assert name is not None
    assert name.display == display


@pytest.mark.parametrize("text", ["", "a//b", "/abs/path/model", "a/b/c/d", "model:", "has space:tag",
                                  "ns.with.dot/model:tag", "-leading:dash"])
def test_text_that_cannot_be_an_ollama_name(text: str) -> None:
    assert parse_name(text) is None


def test_store_lists_every_name_with_its_layers(store: Path) -> None:
    s = read_store([store])
    names = [m.name for m in s.models]
    assert names == sorted(names, key=str.lower)
    assert set(names) == {"smollm2:135m", "smollm2:135m-max-context", "hf.co/someone/tiny-GGUF:Q8_0",
                          "me/looker:latest", "notgguf:latest", "gone:latest", "broken:latest"}
    base = s.find("smollm2:135m")
    derived = s.find("smollm2:135m-max-context")
    assert base is not None and derived is not None
    assert base.params == {"stop": ["<|im_start|>", "<|im_end|>"]}
    assert derived.params["num_ctx"] == 131072 and derived.params["temperature"] == 0.2
    assert derived.system == "You are a terse geography tutor."
    assert base.system is None
    assert base.template is not None and "<|im_start|>" in base.template
    hf = s.find("hf.co/someone/tiny-GGUF:Q8_0")
    assert hf is not None and hf.params == {"num_gpu": 3} and hf.problem is None
    looker = s.find("me/looker")  # ":latest" filled in, as Ollama does
    assert looker is not None
    assert looker.projector_size == 4096 and len(looker.projectors) == 1
    assert len(looker.adapters) == 1
    assert s.problems == ()


def test_names_compare_case_insensitively_like_ollama(store: Path) -> None:
    s = read_store([store])
    m = s.find("SmolLM2:135M-Max-Context")
    assert m is not None and m.name == "smollm2:135m-max-context"
    assert s.find("registry.ollama.ai/library/smollm2:135m") is s.find("smollm2:135m")


def test_shared_blobs_are_listed_once_with_every_name(store: Path, demo_model: Path) -> None:
    s = read_store([store])
    demo_digest = "sha256:" + hashlib.sha256(demo_model.read_bytes()).hexdigest()
    blobs = {b.digest: b for b in s.blobs}
    assert len(blobs) == len(s.blobs)  # each blob once
    assert blobs[demo_digest].names == ("smollm2:135m", "smollm2:135m-max-context")
    assert blobs[demo_digest].size == demo_model.stat().st_size
    assert Path(blobs[demo_digest].path).name == "sha256-" + demo_digest[7:]
    base = s.find("smollm2:135m")
    assert base is not None and base.shared_with == ("smollm2:135m-max-context",)
    tiny_names = [b.names for b in s.blobs if "me/looker:latest" in b.names]
    assert tiny_names == [("hf.co/someone/tiny-GGUF:Q8_0", "me/looker:latest")]
    assert all(not b.digest.endswith("ab" * 32) for b in s.blobs)  # a missing blob is no blob


def test_broken_entries_are_one_line_each_and_the_rest_still_shows(store: Path) -> None:
    s = read_store([store])
    problems = {m.name: m.problem for m in s.models if m.problem}
    assert set(problems) == {"notgguf:latest", "gone:latest", "broken:latest"}
    assert "not valid JSON" in (problems["broken:latest"] or "")
    assert "missing" in (problems["gone:latest"] or "")
    assert "not a GGUF" in (problems["notgguf:latest"] or "")
    assert all("\n" not in p for p in problems.values() if p)
    assert len([m for m in s.models if not m.problem]) == 4


def test_a_manifest_digest_never_points_outside_the_store(tmp_path: Path) -> None:
    from ollama_store_factory import MODEL, Layer, add_manifest

    add_manifest(tmp_path, "evil:latest", [Layer(MODEL, "sha256:../../../../etc/passwd", 10)])
    m = read_store([tmp_path]).find("evil")
    assert m is not None and m.path is None
    assert m.problem is not None and "invalid digest" in m.problem


def test_an_unreadable_store_folder_is_a_line_not_a_crash(store: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, for whom chmod 000 changes nothing: make os.access say what it would say.
    locked = tmp_path / "locked"
    (locked / "manifests").mkdir(parents=True)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).startswith(str(locked)) else real_access(p, mode))
    s = read_store([locked, store])
    assert any("permission denied" in p and str(locked) in p for p in s.problems)
    assert s.find("smollm2:135m") is not None  # the readable store still lists


def test_listing_and_planning_never_write_into_the_store(store: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    before = _tree(store)
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    read_store([store])
    assert main(["models", "--json"]) == 0
    assert main(["plan", "smollm2:135m-max-context", "--vram", "0", "--ram", "8GiB", "--json"]) == 0
    capsys.readouterr()
    assert _tree(store) == before


# --- where the stores are ---------------------------------------------------------------------------------


def test_store_folders_follow_ollama_models_then_the_defaults() -> None:
    assert store_dirs({"OLLAMA_MODELS": "/data/ollama"}, "linux") == [Path("/data/ollama")]
    linux = store_dirs({}, "linux")
    assert linux == [Path.home() / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")]
    assert store_dirs({}, "darwin") == [Path.home() / ".ollama" / "models"]
    assert store_dirs({"USERPROFILE": "C:\\Users\\ana"}, "win32") == [Path("C:\\Users\\ana") / ".ollama" / "models"]


# --- params → settings -------------------------------------------------------------------------------------


def test_params_become_load_and_sampling_settings() -> None:
    s = settings_from_params({"num_ctx": 131072, "num_gpu": 18, "num_batch": 256, "num_thread": 6,
                              "use_mmap": False})
    assert (s.n_ctx, s.n_gpu_layers, s.n_batch, s.n_ubatch, s.n_threads, s.use_mmap) == (
        131072, 18, 256, 256, 6, False)
    assert settings_from_params({"num_gpu": -1}, LoadSettings(n_gpu_layers=5)).n_gpu_layers is None  # -1 = auto
    assert settings_from_params({"num_ctx": "lots"}).n_ctx == LoadSettings().n_ctx  # wrong type: ignored
    sm = sampling_from_params({"temperature": 0.6, "top_k": 20, "num_predict": -1, "stop": "<end>", "seed": 3},
                              "Be brief.")
    assert (sm.temperature, sm.top_k, sm.stop, sm.seed, sm.system) == (0.6, 20, ("<end>",), 3, "Be brief.")
    assert sm.max_tokens == 512  # -1 ("until the context is full") keeps LayerFit's cap


# --- resolving a MODEL argument ----------------------------------------------------------------------------


def test_model_argument_resolves_paths_first_then_ollama_names(env_store: Path, demo_model: Path) -> None:
    path, om = resolve_model(str(demo_model))
    assert om is None and path == demo_model
    path, om = resolve_model("smollm2:135m-max-context")
    assert om is not None and om.name == "smollm2:135m-max-context"
    assert path.name.startswith("sha256-") and path.stat().st_size == demo_model.stat().st_size
    with pytest.raises(OllamaModelNotFound, match="did you mean smollm2:135m"):
        find_model("smollm2:13")
    with pytest.raises(OllamaModelNotFound, match="not a GGUF"):
        resolve_model("notgguf")
    with pytest.raises(OllamaModelNotFound, match="no such model file: /nowhere/x.gguf"):
        resolve_model("/nowhere/x.gguf")


def test_the_derived_model_plans_at_its_own_context(env_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The seed story on the demo model: num_ctx 131072 in the params pushes most of it off a 2 GiB card.
    assert main(["plan", "smollm2:135m-max-context", "--vram", "2GiB", "--ram", "32GiB", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["settings"]["n_ctx"] == 131072
    assert obj["model"]["name"] == "smollm2:135m-max-context"
    assert obj["ollama"]["params"]["num_ctx"] == 131072
    assert obj["ollama"]["shared_with"] == ["smollm2:135m"]
    assert obj["fits_gpu"] is False and obj["gpu_layers"] < obj["model"]["n_layer"] + 1
    assert any("131072" in r for r in obj["reasons"])  # the KV cache for 131072 tokens is why
    assert any(s["text"].startswith("num_ctx") for s in obj["suggestions"])
    # The base model, same blob, opens at LayerFit's default and fits the same card.
    assert main(["plan", "smollm2:135m", "--vram", "2GiB", "--ram", "32GiB", "--json"]) == 0
    base = json.loads(capsys.readouterr().out)
    assert base["settings"]["n_ctx"] == LoadSettings().n_ctx and base["fits_gpu"] is True
    # A command-line option still wins over the params.
    assert main(["plan", "smollm2:135m-max-context", "--ctx", "8192", "--vram", "2GiB", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["n_ctx"] == 8192


def test_num_gpu_in_params_is_a_pin(env_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "hf.co/someone/tiny-GGUF:Q8_0", "--vram", "8GiB", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["gpu_layers"] == 3 and obj["settings"]["n_gpu_layers"] == 3


def test_unknown_and_broken_names_are_one_line(env_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "deepseek-r1:32b"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no Ollama model called 'deepseek-r1:32b'" in err
    assert main(["plan", "broken"]) == 1
    err = capsys.readouterr().err
    assert "broken:latest" in err and "not valid JSON" in err and "Traceback" not in err


def test_models_lists_ollama_names(env_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in obj["models"] if r["source"] == "ollama"}
    assert rows["smollm2:135m-max-context"]["params"]["num_ctx"] == 131072
    assert rows["smollm2:135m-max-context"]["shared_with"] == ["smollm2:135m"]
    assert "error" in rows["gone:latest"] and "error" not in rows["smollm2:135m"]
    assert obj["ollama"]["stores"] == [str(env_store)]
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "Ollama models" in text and "smollm2:135m-max-context  num_ctx 131072" in text
    assert "used by 2 names" in text and "broken:latest  — error:" in text


def test_modelfile_from_an_ollama_model_keeps_its_params_and_system(env_store: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "Modelfile"
    assert main(["modelfile", "smollm2:135m-max-context", "--vram", "2GiB", "-o", str(out)]) == 0
    text = out.read_text()
    assert "PARAMETER num_ctx 131072" in text
    assert "PARAMETER temperature 0.2" in text
    assert 'PARAMETER stop "<|im_end|>"' in text or "PARAMETER stop <|im_end|>" in text
    assert "SYSTEM You are a terse geography tutor." in text
    capsys.readouterr()
    assert main(["modelfile", str(tmp_path / "nope.gguf"), "--create", "x", "-o", "-"]) == 1


def test_an_ollama_blob_loads_and_answers_paris(env_store: Path) -> None:
    """The blob is loaded in place by LayerFit's own engine: no copy, no second download."""
    proc = subprocess.run(
        [sys.executable, "-m", "core", "run", "smollm2:135m", "--prompt",
         "What is the capital of France? Answer in one sentence.", "--temperature", "0", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "Paris" in obj["text"]
    assert Path(obj["model"]).name.startswith("sha256-")  # the blob itself, not a copy
    assert Path(obj["model"]).parent == env_store / "blobs"
    assert "loaded smollm2:135m" in proc.stderr


def test_a_folder_named_like_a_model_does_not_hide_it(env_store: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notgguf").mkdir()
    (tmp_path / "shelf").mkdir()
    with pytest.raises(OllamaModelNotFound, match="not a GGUF"):  # the Ollama entry, not the folder
        resolve_model("notgguf")
    with pytest.raises(OllamaModelNotFound, match="shelf is a folder"):
        resolve_model("shelf")
    path, om = resolve_model("smollm2:135m")
    assert om is not None and path.is_file()


def test_an_ollama_projector_layer_is_planned_like_an_mmproj(tmp_path: Path, tiny_model: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A vision model in Ollama keeps its projector as a `projector` layer, not as an mmproj file next to
    the model: the plan still finds it, sizes it from its header, and names it (outside the totals)."""
    import gguf
    import numpy as np
    from ollama_store_factory import MODEL, PROJECTOR, add_file, add_manifest

    from core.fit import make_plan
    from core.gguf_info import read_model_info
    from core.hardware import Hardware
    from core.loadsettings import LoadSettings

    proj_file = tmp_path / "proj.gguf"
    w = gguf.GGUFWriter(str(proj_file), "clip")
    w.add_tensor("v.patch_embd.weight", np.zeros((256, 1024), dtype=np.float32))  # 1 MiB
    w.add_tensor("mm.0.weight", np.zeros((128, 512), dtype=np.float16))  # 128 KiB
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    store = tmp_path / "models"
    add_manifest(store, "vision:latest", [add_file(store, MODEL, tiny_model), add_file(store, PROJECTOR, proj_file)])
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    from core.ollama import find_model

    m = find_model("vision")
    assert m.path and m.projectors
    hw = Hardware((), 8 * 1024**3, 8 * 1024**3, 2, gpu_problem="none")
    plan = make_plan(read_model_info(m.path), LoadSettings(n_ctx=256), hw)
    assert plan.projector is not None
    assert plan.projector.weights == 256 * 1024 * 4 + 128 * 512 * 2
    assert Path(plan.projector.path).resolve() == Path(m.projectors[0]).resolve()
    assert any("Vision projector" in r for r in plan.reasons)
