"""The estimator against device memory measured on an H100 (tests/data/h100_llama8b.jsonl), and the
learned-correction store."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from gguf_factory import LLAMA3_8B, write_sparse_model

from core import calibration
from core.fit import make_plan
from core.gguf_info import ModelInfo, read_model_info
from core.hardware import GPU, Hardware
from core.loadsettings import LoadSettings
from core.memory import estimate
from core.placement import DeviceMemory

MiB = 1024**2
DATA = Path(__file__).parent / "data" / "h100_llama8b.jsonl"


def _rows() -> list[dict]:
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[1:] if line.strip()]
    return [r for r in rows if not r["oom"] and r["vram_eval_mib"] is not None]


def _settings(cfg: dict) -> LoadSettings:
    kv = cfg.get("kv", "f16")
    return LoadSettings(n_ctx=cfg["ctx"], n_gpu_layers=cfg["ngl"], type_k=kv, type_v=kv,
                        flash_attn="on" if cfg["fa"] else "off", n_batch=cfg.get("nb", 512),
                        n_ubatch=cfg.get("nub", 512))


@pytest.fixture(scope="module")
def llama8b(tmp_path_factory: pytest.TempPathFactory) -> ModelInfo:
    return read_model_info(write_sparse_model(tmp_path_factory.mktemp("h100") / "l8.gguf", LLAMA3_8B))


def test_every_measured_config_within_tolerance(llama8b: ModelInfo) -> None:
    rows = _rows()
    assert len(rows) >= 20
    errors = []
    for r in rows:
        e = estimate(llama8b, _settings(r["cfg"]), r["cfg"]["ngl"])
        measured = r["vram_eval_mib"] * MiB
        err = abs(e.gpu.total - measured)
        assert err <= max(0.05 * measured, 256 * MiB), (r["cfg"], e.gpu.total / MiB, r["vram_eval_mib"])
        errors.append(err / measured)
    assert statistics.median(errors) <= 0.03


def test_buffers_match_log_lines(llama8b: ModelInfo) -> None:
    """Weights and KV agree with llama.cpp's own buffer sizes to the 2 MiB allocation granule."""
    for r in _rows():
        b = r["bufs"]
        e = estimate(llama8b, _settings(r["cfg"]), r["cfg"]["ngl"])
        assert abs(e.gpu.weights - b.get("CUDA0.model", 0) * MiB) <= 2 * MiB
        assert abs(e.gpu.kv - b.get("CUDA0.KV", 0) * MiB) <= 2 * MiB
        assert abs(e.host.kv - b.get("CPU.KV", 0) * MiB) <= 2 * MiB


def test_oom_rows_do_not_fit_at_12_gib(llama8b: ModelInfo) -> None:
    """The rows that failed with ~11.7 GiB free need more than that; the fitter works around the pin."""
    free = int(11.7 * 1024 * MiB)
    hw = Hardware((GPU(0, "H100 80GB HBM3", 80 * 1024 * MiB, free),), 64 * 1024 * MiB, 64 * 1024 * MiB, 16)
    rows = [json.loads(line) for line in DATA.read_text().splitlines()[1:] if line.strip()]
    ooms = [r for r in rows if r["oom"]]
    assert ooms
    for r in ooms:
        assert estimate(llama8b, _settings(r["cfg"]), r["cfg"]["ngl"]).gpu.total > free
        p = make_plan(llama8b, _settings(r["cfg"]), hw, headroom=0, suggest=False)
        assert p.gpu.total <= free and p.gpu_layers == min(r["cfg"]["ngl"], 33)
        assert "KV in RAM" in p.levers


def test_calibration_store_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    assert calibration.overhead_correction("GPU|1", path) == 0
    for measured in (1600, 1700, 1650):
        # What the engine passes: the plan as made, which already includes the correction in force.
        corr = calibration.overhead_correction("GPU|1", path)
        planned = DeviceMemory(weights=1000 * MiB, overhead=500 * MiB + corr)
        calibration.record("GPU|1", planned, measured * MiB, path)
    assert calibration.overhead_correction("GPU|1", path) == 150 * MiB  # median of 100, 200, 150
    planned = DeviceMemory(weights=1000 * MiB, overhead=500 * MiB)
    assert calibration.overhead_correction("other|2", path) == 0
    calibration.record("GPU|1", planned, 100_000 * MiB, path)  # a broken measurement is clamped
    assert calibration.overhead_correction("GPU|1", path) <= calibration.MAX_CORRECTION
    calibration.forget("GPU|1", path)
    assert calibration.overhead_correction("GPU|1", path) == 0


def test_correction_applies_to_probed_gpu_only(llama8b: ModelInfo) -> None:
    gpu = GPU(0, "Tesla T4", 15360 * MiB, 15000 * MiB, driver="550")
    calibration.record(gpu.key, DeviceMemory(overhead=0), 300 * MiB)
    s = LoadSettings(n_ctx=4096)
    probed = make_plan(llama8b, s, Hardware((gpu,), 64 * 1024 * MiB, 64 * 1024 * MiB, 8), suggest=False)
    whatif = make_plan(llama8b, s, Hardware((GPU(0, "Tesla T4", 15360 * MiB, 15000 * MiB, driver="550",
                                                 what_if=True),), 64 * 1024 * MiB, 64 * 1024 * MiB, 8),
                       suggest=False)
    assert probed.gpu.overhead - whatif.gpu.overhead == 300 * MiB


def test_corrupt_store_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    path.write_text("{not json")
    assert calibration.overhead_correction("x", path) == 0
    calibration.record("x", DeviceMemory(), 10 * MiB, path)
    assert calibration.overhead_correction("x", path) == 10 * MiB
