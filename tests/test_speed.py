"""Decode-speed model: the H100 reference points of issue #3 and properties of the curve."""

from __future__ import annotations

import pytest
from gguf_factory import LLAMA3_8B, write_sparse_model

from core.gguf_info import ModelInfo, read_model_info
from core.hardware import GPU, Hardware
from core.loadsettings import LoadSettings
from core.speed import SpeedModel, predict_tps, tps_curve


@pytest.fixture(scope="module")
def l8(tmp_path_factory: pytest.TempPathFactory) -> ModelInfo:
    return read_model_info(write_sparse_model(tmp_path_factory.mktemp("sp") / "l.gguf", LLAMA3_8B))


# Measured on an H100 box with 16 cores, 8B Q4_K at 4K context (tests/data/h100_llama8b.jsonl).
REFERENCE = {0: 6.89, 8: 9.37, 16: 15.19, 24: 29.41, 32: 237.96, 33: 254.86}


def test_reference_points_within_15_percent(l8: ModelInfo) -> None:
    hw = Hardware((GPU(0, "NVIDIA H100 80GB HBM3", 80 * 1024**3, 79 * 1024**3),), 0, 0, 16)
    model = SpeedModel.for_hardware(hw)
    for k, measured in REFERENCE.items():
        got = predict_tps(l8, LoadSettings(n_ctx=4096), k, model, kv_fill=32)
        assert abs(got - measured) / measured < 0.15, (k, got, measured)


def test_curve_rises_with_layers(l8: ModelInfo) -> None:
    curve = tps_curve(l8, LoadSettings(n_ctx=4096))
    assert len(curve) == 34
    assert all(b >= a for a, b in zip(curve, curve[1:], strict=False))


def test_bandwidths_are_inputs(l8: ModelInfo) -> None:
    s = LoadSettings(n_ctx=4096)
    slow = predict_tps(l8, s, 0, SpeedModel(cpu_bandwidth=10e9))
    fast = predict_tps(l8, s, 0, SpeedModel(cpu_bandwidth=40e9))
    assert fast > 2.5 * slow
    # All on the GPU, CPU bandwidth does not matter.
    assert predict_tps(l8, s, 33, SpeedModel(cpu_bandwidth=10e9)) == predict_tps(l8, s, 33,
                                                                               SpeedModel(cpu_bandwidth=40e9))
