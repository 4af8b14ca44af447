"""llama.cpp as the referee (core.referee): its no-alloc pass checks weights, KV and recurrent state.

Real llama.cpp runs on sparse full-size files (tests/arch_models.py). OLMoE is an architecture
llama.cpp knows and LayerFit has not verified: the plan warns until the referee has checked it.
One unit test feeds ``apply`` a made-up disagreement (next to the real runs) to check that the plan
then shows llama.cpp's figure and says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from arch_models import write_spec_model

from core import referee
from core.fit import make_plan
from core.gguf_info import read_model_info
from core.hardware import Hardware
from core.loadsettings import LoadSettings
from core.memory import cpu_buffers

GiB = 1024**3
MiB = 1024**2
CPU_ONLY = Hardware((), 64 * GiB, 64 * GiB, 2, gpu_problem="no NVIDIA driver (test)")
S = LoadSettings(n_ctx=8192, flash_attn="on")


@pytest.fixture(scope="module")
def olmoe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_spec_model(tmp_path_factory.mktemp("ref") / "olmoe.gguf", "olmoe")


def test_unverified_architecture_warns_until_llamacpp_checks_it(olmoe: Path) -> None:
    model = read_model_info(olmoe)
    plan = make_plan(model, S, CPU_ONLY)
    assert not plan.verified and plan.warnings == ("not verified for olmoe: numbers may be off "
                                                   "(LayerFit has not checked olmoe against llama.cpp)",)
    assert plan.to_json()["model"]["verified"] is False
    assert plan.warnings[0] in plan.reasons
    result = referee.run_referee(str(olmoe), plan.settings)
    assert result.ok, result.error
    # llama.cpp's own figures: 16 layers x 8192 cells x 16 heads x 128 x (K + V) x 2 bytes = 1024 MiB.
    assert result.kv == 16 * 8192 * 16 * 128 * 2 * 2 and result.rs == 0
    ana = cpu_buffers(model, plan.settings)
    assert result.weights == pytest.approx(ana["weights"], abs=MiB // 50)
    referee.remember(str(olmoe), plan.settings, result)
    checked = make_plan(model, S, CPU_ONLY)
    assert checked.verified and checked.checked_by_llamacpp and not checked.warnings
    assert checked.to_json()["model"]["verified"] is True and checked.to_json()["checked_by_llamacpp"] is True
    assert any(r.startswith("Checked by llama.cpp: weights, KV cache and recurrent state agree") for r in
               checked.reasons)
    assert checked.host.kv == plan.host.kv  # they agreed: the analytic figure stays


def test_disagreement_uses_llamacpp_figure(olmoe: Path) -> None:
    """A made-up referee answer 1.5x the analytic KV (the real one agrees, see above)."""
    model = read_model_info(olmoe)
    plan = make_plan(model, S, CPU_ONLY)
    ana = cpu_buffers(model, plan.settings)
    fake = referee.RefereeResult(True, weights=ana["weights"], kv=ana["kv"] * 3 // 2, rs=0)
    out = referee.apply(plan, fake)
    assert out.gpu.kv + out.host.kv == ana["kv"] * 3 // 2
    assert out.host.weights == plan.host.weights
    assert out.checked_by_llamacpp and out.verified
    assert any("uses llama.cpp's KV cache" in r for r in out.reasons)
    assert referee.apply(plan, referee.RefereeResult(False, error="x")) is plan
    assert referee.apply(plan, None) is plan


def test_cli_check_flag(olmoe: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "core", "plan", str(olmoe), "--vram", "0", "--ctx", "8192",
                        "--json", "--check"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["model"]["verified"] is True and j["checked_by_llamacpp"] is True and j["warnings"] == []
    r = subprocess.run([sys.executable, "-m", "core", "plan", str(olmoe), "--vram", "0", "--ctx", "8192"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "WARNING: not verified for olmoe: numbers may be off" in r.stdout


def test_a_file_llamacpp_cannot_load_is_reported_not_raised(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    res = referee.run_referee(str(bad), replace(S, n_ctx=512))
    assert not res.ok and res.error
