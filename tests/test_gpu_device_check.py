"""The GPU device kit (benchmarks/gpu_device_check.py) runs its whole flow on this CPU-only machine.

``--cpu-smoke`` drives the same code the lent H100 will run (write sparse zero-weight GGUFs, plan,
load through the Engine child, chat, unload, record) with a tiny model, so a device session finds a
script that already works and only the GPU numbers are new. Without NVML the measured fields are null.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_device_check.py"
MiB = 1024**2


def _load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_device_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


gdc = _load_module()


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "LAYERFIT_CONFIG_DIR": str(tmp_path / "cfg")}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model-dir", str(tmp_path / "models"), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    data = json.loads((out / "gpu_check.json").read_text())
    return proc, data


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("gpu_check")
    proc, data = _run(tmp, "--cpu-smoke")
    return proc, data, tmp


def _tiny_weight_bytes() -> int:
    """The tiny Q4_K/Q6_K shape's tensor bytes, by hand: Q4_K is 144 bytes per 256 values, Q6_K 210."""
    q4k = 144 / 256
    q6k = 210 / 256
    embd = 512 * 256 * q4k
    layer = (256 * 256 + 128 * 256 + 128 * 256 + 256 * 256 + 3 * 512 * 256) * q4k + 2 * 256 * 4
    out = 256 * 4 + 512 * 256 * q6k
    return int(embd + 2 * layer + out)


def test_smoke_run_completes_every_phase(smoke: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]) -> None:
    proc, data, _ = smoke
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert data["mode"] == "cpu-smoke"
    assert data["device"] is None  # no NVIDIA driver here
    assert set(data["phases"]) == {"seed", "ladder", "core", "speed", "extra"}
    assert all(v.startswith("done") for v in data["phases"].values()), data["phases"]
    assert data["skipped"] == []
    assert "| config | ngl | planned MiB | measured MiB | error % |" in proc.stdout


def test_smoke_configs_load_and_chat_on_the_cpu(smoke: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]) -> None:
    _, data, _ = smoke
    names = [r["name"] for r in data["configs"]]
    assert names == ["tiny 512 FA f16", "tiny 1K noFA f16"]
    for r in data["configs"]:
        assert r["error"] is None
        assert r["loaded"]["gpu_layers_planned"] == 0 and r["loaded"]["placement"]["processor"] == "100% CPU"
        assert r["loaded"]["placement"]["measured"] is True
        # Zero weights give equal logits: greedy decoding never picks end-of-sequence, so the reply
        # runs to max_tokens (8 for memory configs).
        assert r["chat"]["tokens"] == 8 and r["chat"]["finish_reason"] == "length"
        assert r["chat"]["prompt_tokens"] > 0
        # No NVML: nothing measured on a GPU, so no error figure either.
        assert r["nvml_mib"] is None and r["measured_mib"] is None and r["error_pct"] is None
    assert [r["settings"]["flash_attn"] for r in data["configs"]] == ["on", "off"]
    assert [r["settings"]["n_ctx"] for r in data["configs"]] == [512, 1024]


def test_smoke_sparse_zero_model_is_read_in_full(smoke: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]) -> None:
    """llama.cpp maps the whole sparse file: its model buffer is every tensor's bytes (holes read as zeros)."""
    _, data, tmp = smoke
    expected_mib = _tiny_weight_bytes() / MiB
    assert data["models"]["tiny"]["weights_mib"] == pytest.approx(expected_mib, abs=0.05)
    bufs = data["configs"][0]["loaded"]["buffers_mib"]
    assert bufs["CPU_Mapped.model"] == pytest.approx(expected_mib, abs=0.02)
    path = tmp / "models" / "tiny.gguf"
    assert path.stat().st_size >= _tiny_weight_bytes()


def test_smoke_ladder_recovers_from_injected_oom(smoke: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]) -> None:
    _, data, _ = smoke
    lad = data["ladder"]
    assert lad["planned"]["gpu_layers"] == 3  # forced: 2 blocks + the output layer
    assert lad["recovered"] is True and lad["no_crash"] is True and lad["error"] is None
    assert lad["fallbacks"] and lad["fallbacks"][-1]["step"] == "CPU only"
    assert "out of GPU memory" in lad["fallbacks"][0]["reason"]
    assert lad["steps"] == len(lad["fallbacks"]) == len(lad["ladder_status"])
    assert lad["loaded"]["placement"]["gpu_layers"] == 0


def test_smoke_seed_speed_and_summary(smoke: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]) -> None:
    _, data, tmp = smoke
    seed = data["seed"]
    assert seed["filler"] is None  # no GPU to hold down
    assert seed["fit"]["no_oom"] is True and seed["fit"]["error"] is None
    assert seed["reasons"] and "CPU" in seed["reasons"][0]
    assert len(data["speed"]) == 1 and data["speed"][0]["chat"]["tokens"] == 8
    s = data["summary"]
    assert s["measured"] == 0 and s["errors"] == 0
    assert s["ladder_recovered"] is True and s["seed_no_oom"] is True
    # The jsonl holds only loads NVML measured: none here.
    assert (tmp / "out" / "gpu_check.jsonl").read_text() == ""


def test_no_time_left_skips_every_phase(tmp_path: Path) -> None:
    proc, data = _run(tmp_path, "--cpu-smoke", "--budget-s", "0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(data["phases"].values()) == {"skipped"}
    assert len(data["skipped"]) == 5
    assert data["configs"] == [] and data["speed"] == [] and data["seed"] is None


def test_unknown_phase_is_refused() -> None:
    with pytest.raises(SystemExit):
        gdc.parse_args(["--phases", "seed,warp"])


def test_full_offload_configs_pin_every_layer() -> None:
    # Llama-3-8B has 32 blocks; all of them plus the output layer is 33.
    cfg = gdc._full("x", "llama8b", 4096)
    assert cfg.ngl == 33
    s = cfg.settings(16)
    assert (s.n_gpu_layers, s.n_ctx, s.type_k, s.type_v, s.n_threads) == (33, 4096, "f16", "f16", 16)
    assert all(c.model in gdc.SHAPES for c in (*gdc.CORE_CONFIGS, *gdc.EXTRA_CONFIGS))
    archs = {gdc.SHAPES[c.model].arch for c in gdc.CORE_CONFIGS}
    assert archs == {"llama", "qwen2", "gemma2"}  # mixtral's shape is llama with experts
    assert any(gdc.SHAPES[c.model].n_expert for c in gdc.CORE_CONFIGS)


def _record(planned_mib: float, measured_mib: float, name: str = "r") -> dict[str, Any]:
    diff = planned_mib - measured_mib
    return {"name": name, "model": "m", "planned": {"gpu_layers": 33}, "planned_mib": planned_mib,
            "settings": {"n_ctx": 4096, "flash_attn": "on", "type_k": "q8_0", "n_batch": 512, "n_ubatch": 256,
                         "swa_full": False, "experts_on_cpu": False, "offload_kqv": True},
            "nvml_mib": {"base": 480.0, "after_load": 480.0 + measured_mib - 70.0, "after_eval": 480.0 + measured_mib},
            "loaded": {"gpu_layers_planned": 33, "load_s": 1.5, "buffers_mib": {"CUDA0.KV": 256.0}},
            "measured_mib": measured_mib, "error_pct": 100 * diff / measured_mib,
            "within_tolerance": abs(diff) <= max(0.05 * measured_mib, 256.0), "error": None,
            "chat": {"tokens_per_second": 250.0}}


def test_jsonl_row_matches_the_reference_data_format() -> None:
    row = gdc._jsonl_row(_record(5400.0, 5370.8))
    assert row["cfg"]["ngl"] == 33 and row["cfg"]["ctx"] == 4096 and row["cfg"]["fa"] is True
    assert row["cfg"]["kv"] == "q8_0" and row["cfg"]["nub"] == 256
    assert row["vram_base_mib"] == 480.0
    assert row["vram_eval_mib"] == pytest.approx(5370.8)
    assert row["vram_load_mib"] == pytest.approx(5300.8)
    assert row["bufs"] == {"CUDA0.KV": 256.0} and row["oom"] is False and row["tps"] == 250.0


def test_summary_counts_tolerance_and_median() -> None:
    # Errors +2 %, -10 % and +1 % of 10000 MiB: the -10 % one (1000 MiB) is outside max(5 %, 256 MiB).
    data = {"seed": None, "ladder": None, "speed": [],
            "configs": [_record(10200.0, 10000.0, "a"), _record(9000.0, 10000.0, "b"), _record(10100.0, 10000.0, "c")]}
    s = gdc.summarize(data)
    assert s["measured"] == 3 and s["within_tolerance"] == 2
    assert s["median_abs_error_pct"] == pytest.approx(2.0)
    assert s["worst_abs_error_pct"] == pytest.approx(10.0)


def test_platformdirs_stand_in_when_it_is_missing(tmp_path: Path) -> None:
    """The device has no platformdirs: the script's stand-in lets core.settings import anyway."""
    code = ("import sys, runpy; sys.modules['platformdirs'] = None; "
            f"runpy.run_path({str(SCRIPT)!r}, run_name='not_main'); "
            "import core.settings as s; print(type(sys.modules['platformdirs']).__name__, s.data_dir())")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAYERFIT_")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    kind, path = proc.stdout.split()
    assert kind == "module"
    assert Path(path).name == "LayerFit" and "layerfit-platformdirs" in path


def test_markdown_report_of_the_smoke_run(smoke: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]) -> None:
    _, _, tmp = smoke
    proc = subprocess.run([sys.executable, str(SCRIPT), "--report", str(tmp / "out" / "gpu_check.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = proc.stdout
    for heading in ("### Seed case", "### Forced plan and the fallback ladder", "### Decode speed",
                    "### Planned vs measured GPU memory"):
        assert heading in md
    assert "| tiny 512 FA f16 | llama | 0 | 512 | on | f16 |" in md
    assert "1. CPU only: out of GPU memory" in md


def test_filesystem_type_of_a_known_mount() -> None:
    # /proc is always procfs on Linux; the model folder must never be a tmpfs.
    assert gdc._fs_type(Path("/proc/self")) == "proc"
    assert gdc._fs_type(gdc.pick_model_dir(Path("/tmp/anything")).parent) != "tmpfs" or \
        gdc._fs_type(ROOT / "build") == "tmpfs"


DRY_RUN = '''
"""The GPU branch with its boundary faked: NVML "used" rises 100 MiB per reading, a filler that only
pretends, a probed H100, and every shape replaced by the tiny zero-weight model (loads on the CPU)."""
import importlib.util, itertools, sys
from dataclasses import replace
spec = importlib.util.spec_from_file_location("gdc", sys.argv[1])
g = importlib.util.module_from_spec(spec); sys.modules["gdc"] = g; spec.loader.exec_module(g)
from core.hardware import what_if
hw = what_if("h100")
hw = replace(hw, gpus=(replace(hw.gpus[0], what_if=False, driver="580", name="NVIDIA H100 80GB HBM3"),))
g.probe = lambda: hw
readings = itertools.count()
g.nvml_used = lambda index=0: 480 * 2**20 + next(readings) * 100 * 2**20
class FakeFiller:
    def __init__(self, keep_free, hold_s): self.free_after = keep_free
    def start(self, timeout=90.0): print("FILLER START", self.free_after); return self.free_after
    def stop(self): print("FILLER STOP")
g.Filler = FakeFiller
for key in list(g.SHAPES): g.SHAPES[key] = g.TINY
if __name__ == "__main__":
    sys.exit(g.main(sys.argv[2:]))
'''


def test_gpu_branch_dry_run_with_faked_nvml(tmp_path: Path) -> None:
    """Unit test of the GPU-only code (filler, NVML arithmetic, jsonl rows) with the NVML boundary faked."""
    driver = tmp_path / "dry.py"
    driver.write_text(DRY_RUN)
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out)}
    proc = subprocess.run([sys.executable, str(driver), str(SCRIPT), "--phases", "seed,ladder,speed",
                           "--speed-levels", "0", "--model-dir", str(tmp_path / "m")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((out / "gpu_check.json").read_text())
    assert data["mode"] == "gpu" and data["device"]["name"] == "NVIDIA H100 80GB HBM3"
    # The filler holds the card for the seed and ladder phases, and is let go before the speed sweep.
    assert proc.stdout.count("FILLER START") == 1 and proc.stdout.count("FILLER STOP") >= 1
    assert proc.stdout.index("FILLER STOP") < proc.stdout.index("speed llama8b 4K FA ngl0")
    seed = data["seed"]
    assert seed["filler"]["free_after_mib"] == 16384.0
    fit = seed["fit"]
    # Readings: base, after load, after the chat, after unload: 100 MiB apart, so the rise is 200 MiB.
    assert fit["nvml_mib"]["after_eval"] - fit["nvml_mib"]["base"] == 200.0
    assert fit["measured_mib"] == 200.0
    assert fit["unused_mib"] == 16384.0 - 200.0
    assert fit["error_pct"] == pytest.approx(100 * (fit["planned_mib"] - 200.0) / 200.0, abs=1e-3)
    assert fit["within_tolerance"] is (abs(fit["planned_mib"] - 200.0) <= 256.0)
    rows = [json.loads(x) for x in (out / "gpu_check.jsonl").read_text().splitlines()]
    assert len(rows) == 2  # the seed fit and one speed point (the ladder is not a config row)
    assert all(r["vram_eval_mib"] == 200.0 and r["vram_load_mib"] == 100.0 for r in rows)
    assert data["ladder"]["no_crash"] is True


def test_filler_start_reads_ready_and_stop_ends_it() -> None:
    """The parent side of the filler, with a stand-in child (the real one needs torch and a GPU)."""
    compile(gdc.Filler.CODE, "filler", "exec")  # the real child's code at least parses

    class StandIn(gdc.Filler):  # type: ignore[misc, name-defined]
        CODE = "import sys, time; print('READY', int(sys.argv[1]) + 5, flush=True); time.sleep(float(sys.argv[2]))"

    f = StandIn(keep_free=1000, hold_s=60.0)
    assert f.start(timeout=30.0) == 1005 and f.free_after == 1005
    proc = f.proc
    assert proc is not None and proc.poll() is None
    f.stop()
    assert f.proc is None and proc.returncode is not None


def test_filler_that_never_gets_ready_is_an_error() -> None:
    class Silent(gdc.Filler):  # type: ignore[misc, name-defined]
        CODE = "import sys; sys.exit(3)"

    with pytest.raises(RuntimeError, match="did not get ready"):
        Silent(keep_free=1, hold_s=1.0).start(timeout=10.0)


def test_without_a_gpu_the_real_mode_refuses_with_words(tmp_path: Path) -> None:
    proc, data = _run(tmp_path)
    assert proc.returncode == 2
    assert "no NVIDIA GPU answered" in proc.stderr and "--cpu-smoke" in proc.stderr
    assert data["fatal"].startswith("no NVIDIA GPU answered") and data["configs"] == []
