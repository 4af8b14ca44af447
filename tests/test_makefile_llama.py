"""The Makefile's llama.cpp step (issue #11), run for real with a stand-in Python that records what it is asked.

An existing .venv whose llama.cpp has AMX compiled in (made before AMX was left out) must be rebuilt by the
next `make`, with the flags that leave AMX out; a .venv that already has the wanted build is left alone.
"""

from __future__ import annotations

import os
import platform
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = r'''#!/bin/sh
# A stand-in for .venv/bin/python: answers `-m core.buildinfo` from a state file, records pip calls.
dir=$(dirname "$0")
if [ "$1" = "-m" ] && [ "$2" = "core.buildinfo" ]; then cat "$dir/state"; exit 0; fi
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  echo "pip $3 CMAKE_ARGS=[$CMAKE_ARGS]" >> "$dir/calls"
  if [ "$3" = "wheel" ]; then
    while [ $# -gt 0 ]; do if [ "$1" = "-w" ]; then out="$2"; fi; shift; done
    mkdir -p "$out"; : > "$out/llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl"
  fi
  if [ "$3" = "install" ]; then echo "cpu noamx rpc" > "$dir/state"; fi
  exit 0
fi
exit 0
'''


def _fake_venv(tmp: Path, state: str) -> Path:
    bindir = tmp / "venv" / "bin"
    bindir.mkdir(parents=True)
    py = bindir / "python"
    py.write_text(FAKE_PYTHON, encoding="utf-8")
    py.chmod(py.stat().st_mode | stat.S_IXUSR)
    (bindir / "state").write_text(state + "\n", encoding="utf-8")
    return bindir


def _make_llama(tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "llama", "CUDA=0",
                           f"VENV={tmp / 'venv'}", f"WHEEL_CACHE={tmp / 'wheels'}"],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_a_venv_with_an_amx_build_is_rebuilt_without_amx(tmp_path: Path) -> None:
    bindir = _fake_venv(tmp_path, "cpu amx rpc")
    r = _make_llama(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = (bindir / "calls").read_text(encoding="utf-8").splitlines()
    wheel = [c for c in calls if c.startswith("pip wheel")]
    assert len(wheel) == 1, calls
    assert "-DGGML_CUDA=off" in wheel[0] and "-DGGML_RPC=on" in wheel[0]
    if platform.machine().lower() in ("x86_64", "amd64"):
        for flag in ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16"):
            assert "-DCMAKE_C_FLAGS='" in wheel[0] and wheel[0].count(flag) == 2, wheel[0]  # C and C++
    assert any(c.startswith("pip install") for c in calls)
    assert (bindir / "state").read_text(encoding="utf-8").strip() == "cpu noamx rpc"
    assert ">>> llama.cpp build: cpu noamx rpc" in r.stdout

    # the next make finds the wanted build and does nothing
    (bindir / "calls").unlink()
    r = _make_llama(tmp_path)
    assert r.returncode == 0 and not (bindir / "calls").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_a_kept_wheel_is_reused_not_rebuilt(tmp_path: Path) -> None:
    bindir = _fake_venv(tmp_path, "cpu noamx norpc")  # built before the RPC backend was added
    assert _make_llama(tmp_path).returncode == 0
    (bindir / "state").write_text("none\n", encoding="utf-8")  # e.g. the .venv was deleted and made again
    (bindir / "calls").unlink()
    r = _make_llama(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = (bindir / "calls").read_text(encoding="utf-8").splitlines()
    assert not any(c.startswith("pip wheel") for c in calls) and any(c.startswith("pip install") for c in calls)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_a_build_that_still_is_not_right_stops_setup(tmp_path: Path) -> None:
    bindir = _fake_venv(tmp_path, "cpu amx rpc")
    # pip "installs" but the build still reports AMX: set-up must stop and say so, not carry on
    fake = (bindir / "python").read_text(encoding="utf-8").replace(
        'echo "cpu noamx rpc" > "$dir/state"', 'echo "cpu amx rpc" > "$dir/state"')
    (bindir / "python").write_text(fake, encoding="utf-8")
    r = _make_llama(tmp_path)
    assert r.returncode != 0
    assert "The llama.cpp build is 'cpu amx rpc', not 'cpu noamx rpc'" in r.stdout + r.stderr
