"""Issue #11: the llama.cpp build suits the CPU it runs on, and a crash is explained in words.

* the installed build has no AMX compiled in (AMX crashes the first decode on many Intel CPUs, llama.cpp #20824);
* the decode check (set-up's proof and `layerfit doctor`) really decodes the demo model, and reports a child
  that crashes, hangs or dies with the signal, the CPU features involved and how to rebuild;
* the engine's message for a crashed child names the likely cause and what to do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.buildinfo import parse_features, read_build
from core.doctor import Finding, decode_finding
from core.engine import crash_message
from core.selftest import cpu_feature_report, decode_check, explain_crash

ROOT = Path(__file__).resolve().parents[1]

AMX_INFO = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | "
            "AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 |")
HASWELL_FLAGS = frozenset({"pni", "ssse3", "avx", "avx2", "f16c", "fma", "bmi2"})


def test_installed_build_has_no_amx() -> None:
    b = read_build()
    assert b.installed, b.error
    info = b.system_info
    assert "AVX" in info or "NEON" in info or "CPU" in info, info  # the real system info, not an empty string
    assert "AMX_INT8 = 1" not in info
    assert not b.amx
    assert b.signature().split()[1] == "noamx"


def test_installed_build_keeps_this_cpus_native_features() -> None:
    """Leaving AMX out must not throw away AVX2/AVX-512: every such flag the CPU has is compiled in."""
    flags = frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = frozenset(next(ln for ln in f if ln.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo on this platform")
    built = parse_features(read_build().system_info)
    for ggml_name, cpu_flag in (("AVX2", "avx2"), ("AVX512", "avx512f"), ("FMA", "fma")):
        if cpu_flag in flags:
            assert ggml_name in built, f"{ggml_name} is missing from a -march=native build on a CPU with {cpu_flag}"


def test_installed_build_has_the_rpc_backend() -> None:
    assert read_build().rpc


def test_buildinfo_signature_is_what_the_makefile_compares() -> None:
    r = subprocess.run([sys.executable, "-m", "core.buildinfo"], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0
    kind, amx, rpc = r.stdout.strip().split()
    assert (kind, amx, rpc) == (read_build().kind, "noamx", "rpc")
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "WANT_SIG := $(WANT_BUILD) noamx rpc" in make
    # both the CPU and the CUDA build leave AMX out
    for kind in ("cpu", "cuda"):
        line = next(ln for ln in make.splitlines() if ln.startswith(f"LLAMA_CMAKE_{kind} "))
        assert "-DCMAKE_C_FLAGS='$(NOAMX)'" in line and "-DCMAKE_CXX_FLAGS='$(NOAMX)'" in line
    assert "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" in make


def test_parse_features_reads_only_what_is_on() -> None:
    assert parse_features("AVX = 1 | AVX2 = 0 | AMX_INT8 = 1 | LLAMAFILE = 1") == {"AVX", "AMX_INT8", "LLAMAFILE"}
    assert parse_features("") == frozenset()


@pytest.mark.slow
def test_decode_check_really_decodes_the_demo_model() -> None:
    res = decode_check(n_tokens=6)
    assert res.ok, res.message
    assert 1 <= res.tokens <= 6
    assert res.tokens_per_second > 0
    assert res.text.strip()  # the model said something
    assert "AVX" in res.features or "NEON" in res.features or res.features


@pytest.mark.slow
def test_decode_check_reports_a_segfaulting_child_in_words() -> None:
    res = decode_check(n_tokens=4, fault="segv")
    assert not res.ok
    assert res.exitcode == -signal.SIGSEGV
    assert res.stage == "decode"
    msg = res.message
    assert "SIGSEGV" in msg and "segmentation fault" in msg and "first decode" in msg
    assert "make rebuild-llama" in msg
    assert "Traceback" not in msg


@pytest.mark.slow
def test_decode_check_reports_a_crash_before_the_load() -> None:
    res = decode_check(n_tokens=4, fault="segv-load")
    assert not res.ok and res.exitcode == -signal.SIGSEGV and res.stage == "load"
    assert "model load" in res.message


@pytest.mark.slow
def test_decode_check_time_limit_ends_a_hung_child() -> None:
    res = decode_check(n_tokens=4, fault="hang", timeout=20)
    assert not res.ok and res.exitcode is None
    assert "did not finish the first decode in time" in res.message


def test_a_crash_on_an_amx_build_names_amx() -> None:
    msg = explain_crash(-signal.SIGSEGV, "first decode", AMX_INFO, frozenset({"amx_int8", "avx512f"}))
    assert "AMX_INT8" in msg and "#20824" in msg and "make rebuild-llama" in msg


def test_a_crash_from_missing_instructions_names_them() -> None:
    info = "AVX = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | FMA = 1"
    missing, amx = cpu_feature_report(info, HASWELL_FLAGS)
    assert missing == ["AVX512", "AVX512_VNNI"] and amx == []
    msg = explain_crash(-signal.SIGILL, "first decode", info, HASWELL_FLAGS)
    assert "SIGILL" in msg and "illegal instruction" in msg and "AVX512, AVX512_VNNI" in msg


def test_sigkill_is_explained_as_memory_not_as_the_build() -> None:
    msg = explain_crash(-signal.SIGKILL, "model load", AMX_INFO, HASWELL_FLAGS)
    assert "ran out of memory" in msg and "rebuild" not in msg


def test_engine_crash_message_names_cause_and_action() -> None:
    msg = crash_message(-signal.SIGSEGV, system_info=AMX_INFO)
    assert msg.startswith("the engine process was killed by SIGSEGV (llama.cpp crashed).")
    assert "AMX" in msg and "layerfit doctor" in msg and "make rebuild-llama" in msg
    plain = crash_message(-signal.SIGSEGV, system_info="")
    assert "doesn't suit this CPU, or running out of memory" in plain and "layerfit doctor" in plain


@pytest.mark.slow
def test_a_real_engine_child_killed_by_sigsegv_is_explained(tiny_model: Path) -> None:
    from core.engine import Engine, EngineCrashed
    from core.fit import make_plan
    from core.gguf_info import read_model_info
    from core.hardware import Hardware
    from core.loadsettings import LoadSettings
    from core.sampling import SamplingSettings

    hw = Hardware((), 8 * 1024**3, 8 * 1024**3, 2, gpu_problem="none")
    plan = make_plan(read_model_info(tiny_model), LoadSettings(n_ctx=256), hw)
    with Engine() as engine:
        engine.load(plan)
        pid = engine.child_pid
        assert pid is not None
        os.kill(pid, signal.SIGSEGV)
        with pytest.raises(EngineCrashed) as err:
            list(engine.chat([{"role": "user", "content": "hi"}], SamplingSettings(max_tokens=4)))
        assert "SIGSEGV" in str(err.value) and "layerfit doctor" in str(err.value)
        assert engine.loaded is None


def test_doctor_says_all_good_only_after_a_model_ran(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from core.commands import doctor as cmd

    ok = Finding("Python", "ok", "3.11")
    not_run = decode_finding(None, installed=True)
    assert not_run.status == "warn"
    monkeypatch.setattr(cmd, "diagnose", lambda: [ok, not_run])
    assert cmd.run(argparse.Namespace(json=False)) == 0
    out = capsys.readouterr().out
    assert "All good" not in out and "not proven" in out

    from core.selftest import DecodeCheck

    ran = decode_finding(DecodeCheck(True, tokens=8, tokens_per_second=42.0, load_seconds=0.3, stage="done"),
                         installed=True)
    monkeypatch.setattr(cmd, "diagnose", lambda: [ok, ran])
    assert cmd.run(argparse.Namespace(json=False)) == 0
    out = capsys.readouterr().out
    assert "All good" in out and "42 tokens/s" in out

    crashed = decode_finding(DecodeCheck(False, stage="decode", exitcode=-11,
                                         message=explain_crash(-11, "first decode", AMX_INFO)), installed=True)
    monkeypatch.setattr(cmd, "diagnose", lambda: [ok, crashed])
    assert cmd.run(argparse.Namespace(json=False)) == 1
    out = capsys.readouterr().out
    assert "All good" not in out and "SIGSEGV" in out and "make rebuild-llama" in out


@pytest.mark.slow
def test_doctor_cli_decodes_for_real_and_reports_tokens_per_second() -> None:
    r = subprocess.run([sys.executable, "-m", "core", "doctor", "--json"], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    data = json.loads(r.stdout)
    dec = next(f for f in data["findings"] if f["topic"] == "Decode check")
    assert dec["status"] == "ok", dec
    assert "tokens/s" in dec["detail"]
    cpu = next(f for f in data["findings"] if f["topic"] == "CPU")
    assert cpu["status"] == "ok" and "AMX" in cpu["detail"]


@pytest.mark.slow
def test_setup_proof_passes_here_and_fails_in_words_for_a_crashing_build(monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from core import selftest

    assert selftest.main(["--setup"]) == 0
    assert "llama.cpp works" in capsys.readouterr().out

    real = selftest.decode_check
    monkeypatch.setattr(selftest, "decode_check", lambda: real(n_tokens=2, fault="segv"))
    assert selftest.main(["--setup"]) == 1
    err = capsys.readouterr().err
    assert "Set-up stopped" in err and "SIGSEGV" in err and "make rebuild-llama" in err


def test_doctor_names_missing_qt_libraries_with_their_debian_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    from core import doctor

    ldd = ("/x/libqxcb.so:\n\tlibxcb-cursor.so.0 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n"
           "/x/libQt6XcbQpa.so.6:\n\tlibxcb-cursor.so.0 => not found\n\tlibxcb-keysyms.so.1 => not found\n")
    assert doctor.missing_qt_libraries(ldd) == ["libxcb-cursor.so.0", "libxcb-keysyms.so.1"]

    class Done:
        stdout = ldd

    monkeypatch.setattr(doctor, "_qt_xcb_libraries", lambda: ["/x/libqxcb.so"])
    monkeypatch.setattr(doctor.subprocess, "run", lambda *a, **k: Done())
    if not sys.platform.startswith("linux"):
        pytest.skip("the X11 check is Linux only")
    (f,) = doctor.qt_findings()
    assert f.status == "warn" and f.action == "sudo apt install libxcb-cursor0 libxcb-keysyms1"
