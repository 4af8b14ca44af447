"""Decode speed learned from measurement: CPU-only chats teach core.speed how fast this CPU is."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import calibration
from core.engine import Engine
from core.fit import make_plan
from core.gguf_info import read_model_info
from core.hardware import Hardware, cpu_key
from core.loadsettings import LoadSettings
from core.sampling import SamplingSettings
from core.speed import SpeedModel, predict_tps

GiB = 1024**3
CPU_ONLY = Hardware((), 16 * GiB, 16 * GiB, 2, gpu_problem="no NVIDIA driver (test)")


def test_ratios_are_stored_as_a_median_and_noise_is_ignored(tmp_path: Path) -> None:
    store = tmp_path / "calibration.json"
    assert calibration.cpu_speed_ratio("cpu-a", store) is None
    for r in (0.5, 0.2, 0.3, 1000.0, 0.0):  # 1000 and 0 are outside the plausible range
        calibration.record_cpu_speed("cpu-a", r, store)
    assert calibration.cpu_speed_ratio("cpu-a", store) == pytest.approx(0.3)
    assert calibration.cpu_speed_ratio("cpu-b", store) is None
    calibration.record("GPU|1", calibration.DeviceMemory(weights=100), 150, store)  # GPU part still works
    assert calibration.overhead_correction("GPU|1", store) == 50
    assert calibration.cpu_speed_ratio("cpu-a", store) == pytest.approx(0.3)


def test_cpu_time_scale_slows_cpu_only_decoding_exactly(demo_model: Path) -> None:
    info = read_model_info(demo_model)
    s = LoadSettings(n_ctx=1024)
    base = predict_tps(info, s, 0, SpeedModel())
    assert predict_tps(info, s, 0, SpeedModel(cpu_time_scale=4.0)) == pytest.approx(base / 4)
    full = info.n_layer + 1  # everything on the GPU: the CPU scale must not matter
    assert predict_tps(info, s, full, SpeedModel(cpu_time_scale=4.0)) == pytest.approx(
        predict_tps(info, s, full, SpeedModel()))


def test_learned_timing_reaches_plans() -> None:
    # Measured 4x slower than predicted on one model size: the excess becomes a per-token fixed cost.
    calibration.record_cpu_timing(cpu_key(), 0.01, 0.04)
    learned = SpeedModel.for_hardware(CPU_ONLY)
    assert learned.cpu_fixed_cost == pytest.approx(0.03) and learned.cpu_time_scale == 1.0
    unlearned = SpeedModel.for_hardware(CPU_ONLY, learned=False)
    assert unlearned.cpu_fixed_cost == 0.0 and unlearned.cpu_time_scale == 1.0


def test_a_real_cpu_chat_records_measured_over_predicted(demo_model: Path) -> None:
    info = read_model_info(demo_model)
    plan = make_plan(info, LoadSettings(n_ctx=512), CPU_ONLY, 0, suggest=False)
    assert plan.gpu_layers == 0
    with Engine() as engine:
        engine.load(plan)
        msgs = [{"role": "user", "content": "Write a short story about a cat who learns to sail."}]
        done = list(engine.chat(msgs, SamplingSettings(temperature=0.0, max_tokens=40, seed=1)))[-1]
    assert done.kind == "done" and done.tokens >= 16 and done.tokens_per_second > 0
    timings = calibration.cpu_timings(cpu_key())
    assert len(timings) == 1
    fill = int(done.extra.get("prompt_tokens", 0)) + done.tokens // 2
    predicted = predict_tps(info, plan.settings, 0, SpeedModel.for_hardware(CPU_ONLY, learned=False), kv_fill=fill)
    assert timings[0] == pytest.approx((1 / predicted, 1 / done.tokens_per_second), rel=1e-6)


def test_a_damaged_store_is_kept_aside_not_silently_replaced(tmp_path: Path) -> None:
    store = tmp_path / "calibration.json"
    store.write_text("{half a file")
    assert calibration.overhead_correction("GPU|1", store) == 0  # reading copes
    calibration.record("GPU|1", calibration.DeviceMemory(weights=100), 164, store)
    kept = list(tmp_path.glob("calibration.json.bad-*"))
    assert len(kept) == 1 and kept[0].read_text() == "{half a file"
    assert calibration.overhead_correction("GPU|1", store) == 64
