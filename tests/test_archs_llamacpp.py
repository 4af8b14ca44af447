"""Every architecture of issue #12 against llama.cpp's own buffer lines, on the CPU.

For each of 28 architectures, a sparse full-size GGUF with a real model's metadata and the tensor
list llama.cpp itself asked for (``tests/arch_models.py``) is loaded by real llama.cpp in a child
process: once with mmap for the weights (never evaluated, so the sparse file costs nothing), then
with ``no_alloc`` for a context per configuration (context size, flash attention on/off, f16 and
q8_0/q4_0 KV, swa_full). The numbers on the right of each assertion are llama.cpp's log lines; the
left is ``core.memory``. Issue #12's bars: KV plus RS within max(2 %, 16 MiB) (here: to the logged
0.01 MiB), compute within max(10 %, 64 MiB), weights and total within max(5 %, 256 MiB).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from arch_models import ARCHS, load_specs, write_spec_model

from core.archs import arch_layout
from core.gguf_info import read_model_info
from core.loadsettings import LoadSettings
from core.memory import cpu_buffers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from crosscheck_cpu import Probe, probe_many  # noqa: E402

MiB = 1024**2
PROBES = [
    Probe(4096, True, "f16"),
    Probe(32768, False, "f16"),
    Probe(131072, True, "q8_0"),
    Probe(16384, True, "q4_0", 1024, swa_full=True),
]


#: (arch, probe index): compute-buffer peaks core.memory does not model yet. They are checked
#: separately below (strict xfail: the day they match, the test says so) and reported in
#: docs/benchmarks.md. KV, RS, weights and totals of these probes are still asserted.
KNOWN_COMPUTE_GAPS = {
    ("deepseek2", 3): "MLA graph at ubatch 1024: llama.cpp's peak is 64.5 MiB (13 %) above the logits stage",
    ("nemotron_h", 2): "Mamba2 hybrid at 128K q8_0: 382 MiB vs 286; llama.cpp's reserve is not monotonic in the "
                       "context here (280/354/280/315 MiB at 64K/96K/128K/192K f16): allocator placement",
}


def _settings(p: Probe) -> LoadSettings:
    return LoadSettings(n_ctx=p.n_ctx, n_batch=p.n_ubatch, n_ubatch=p.n_ubatch, type_k=p.type_kv, type_v=p.type_kv,
                        flash_attn="on" if p.flash_attn else "off", swa_full=p.swa_full)


@pytest.fixture(scope="module")
def specs() -> dict[str, Any]:
    return load_specs()


def test_every_issue_architecture_has_a_spec(specs: dict[str, Any]) -> None:
    """The 24 architectures of issue #12 plus qwen2, qwen3, qwen3moe and gemma2 (plus phi3/lfm2 extras)."""
    wanted = {"llama", "gemma3", "gpt-oss", "phi3", "mistral3", "command-r", "cohere2", "exaone", "smollm3", "lfm2",
              "olmo2", "exaone4", "granitehybrid", "nemotron_h_moe", "deepseek2", "qwen3next", "qwen35moe", "llama4",
              "gemma3n", "gemma4", "glm4moe", "falcon-h1", "nemotron_h", "mamba2", "qwen2", "qwen3", "qwen3moe",
              "gemma2"}
    assert wanted <= set(specs)
    assert wanted <= set(ARCHS)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_architecture_matches_llamacpp(tmp_path: Path, specs: dict[str, Any], arch: str) -> None:
    path = write_spec_model(tmp_path / f"{arch}.gguf", arch, specs)
    model = read_model_info(path)
    assert arch_layout(model).verified, arch_layout(model).notes
    got = probe_many(path, PROBES)
    assert got["ok"], got.get("log", "")[-2000:]
    w_meas = sum(got["weights"].values())
    for i, (p, m) in enumerate(zip(PROBES, got["probes"], strict=True)):
        assert m["ok"], (p, m.get("log", "")[-1500:])
        assert m["fa"] is p.flash_attn
        pred = {k: v / MiB for k, v in cpu_buffers(model, _settings(p)).items()}
        kv = sum(c["mib"] for c in m["kv"])
        rs = sum(c["mib"] for c in m["rs"])
        compute = m["compute"]["CPU"]
        assert pred["kv"] == pytest.approx(kv, abs=0.01), (p, "KV")
        assert pred["rs"] == pytest.approx(rs, abs=0.01), (p, "RS")
        if (arch, i) not in KNOWN_COMPUTE_GAPS:
            assert abs(pred["compute"] - compute) <= max(0.10 * compute, 64), (p, "compute", pred["compute"], compute)
        total_meas = w_meas + kv + rs + compute + m["output"]["CPU"]
        total_pred = pred["weights"] + pred["kv"] + pred["rs"] + pred["compute"] + pred["output"]
        assert abs(total_pred - total_meas) <= max(0.05 * total_meas, 256), (p, "total")
    assert pred["weights"] == pytest.approx(w_meas, abs=0.01)


@pytest.mark.xfail(strict=True, reason="compute peaks not modelled yet (KNOWN_COMPUTE_GAPS)")
@pytest.mark.parametrize("arch,index", sorted(KNOWN_COMPUTE_GAPS))
def test_known_compute_gaps(tmp_path: Path, specs: dict[str, Any], arch: str, index: int) -> None:
    path = write_spec_model(tmp_path / f"{arch}.gguf", arch, specs)
    p = PROBES[index]
    got = probe_many(path, [p])
    compute = got["probes"][0]["compute"]["CPU"]
    pred = cpu_buffers(read_model_info(path), _settings(p))["compute"] / MiB
    assert abs(pred - compute) <= max(0.10 * compute, 64)


def test_by_hand_mla_caches_only_the_latent(tmp_path: Path, specs: dict[str, Any]) -> None:
    """DeepSeek-V2-Lite at 32K, f16: 27 layers x 32768 cells x (kv_lora_rank 512 + RoPE 64) x 2 bytes, no V."""
    path = write_spec_model(tmp_path / "ds.gguf", "deepseek2", specs)
    got = probe_many(path, [Probe(32768, True, "f16")])["probes"][0]
    by_hand = 27 * 32768 * (512 + 64) * 2 / MiB
    assert sum(c["mib"] for c in got["kv"]) == by_hand == 972.0
    assert cpu_buffers(read_model_info(path), _settings(Probe(32768, True, "f16")))["kv"] / MiB == by_hand


def test_by_hand_qwen3next_layer_pattern_and_state(tmp_path: Path, specs: dict[str, Any]) -> None:
    """Qwen3-Next-80B-A3B: 12 of 48 layers (every 4th) hold KV; 36 delta-net layers hold a fixed state.

    KV: 12 x 32768 x 2 KV heads x 256 x 2 (K and V) x 2 bytes. State per layer (f32): conv
    (4 - 1) x (4096 + 2 x 16 x 128) plus 128 x 4096 (llama-hparams.cpp n_embd_r / n_embd_s).
    """
    path = write_spec_model(tmp_path / "q3n.gguf", "qwen3next", specs)
    got = probe_many(path, [Probe(32768, True, "f16")])["probes"][0]
    kv = 12 * 32768 * 2 * 256 * 2 * 2 / MiB
    rs = 36 * ((4 - 1) * (4096 + 2 * 16 * 128) + 128 * 4096) * 4 / MiB
    assert sum(c["mib"] for c in got["kv"]) == pytest.approx(kv, abs=0.01)
    assert sum(c["mib"] for c in got["rs"]) == pytest.approx(rs, abs=0.01)
    pred = cpu_buffers(read_model_info(path), _settings(Probe(32768, True, "f16")))
    assert pred["kv"] / MiB == pytest.approx(kv) and pred["rs"] / MiB == pytest.approx(rs)


def test_by_hand_llama4_chunked_and_gemma3n_shared(tmp_path: Path, specs: dict[str, Any]) -> None:
    """Llama-4-Scout at 32K: 36 chunked layers hold pad(8192 + 512) = 8704 cells, 12 full ones 32768.
    Gemma-3n-E4B: only the first 20 of 35 layers own a cache (the rest reuse layer 18 or 19)."""
    path = write_spec_model(tmp_path / "l4.gguf", "llama4", specs)
    got = probe_many(path, [Probe(32768, True, "f16")])["probes"][0]
    caches = sorted((c["cells"], c["layers"]) for c in got["kv"])
    assert caches == [(8704, 36), (32768, 12)]
    path = write_spec_model(tmp_path / "g3n.gguf", "gemma3n", specs)
    got = probe_many(path, [Probe(32768, True, "f16")])["probes"][0]
    assert sum(c["layers"] for c in got["kv"]) == 20
    lay = arch_layout(read_model_info(path))
    assert sum(lay.has_kv) == 20
