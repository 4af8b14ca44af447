"""The fitter: seed cases, pins, levers, suggestions with computed effects, the fallback ladder."""

from __future__ import annotations

import pytest
from gguf_factory import LLAMA3_8B, QWEN25_32B, Shape, write_sparse_model

from core.fit import ladder_steps, make_plan, sweep_context
from core.gguf_info import ModelInfo, read_model_info
from core.hardware import Hardware, what_if
from core.loadsettings import LoadSettings

GiB = 1024**3
RAM = Hardware((), 128 * GiB, 128 * GiB, 16)


@pytest.fixture(scope="module")
def q32(tmp_path_factory: pytest.TempPathFactory) -> ModelInfo:
    return read_model_info(write_sparse_model(tmp_path_factory.mktemp("q32") / "q.gguf", QWEN25_32B))


@pytest.fixture(scope="module")
def l8(tmp_path_factory: pytest.TempPathFactory) -> ModelInfo:
    return read_model_info(write_sparse_model(tmp_path_factory.mktemp("l8") / "l.gguf", LLAMA3_8B))


def test_seed_32b_128k_on_t4_is_partial(q32: ModelInfo) -> None:
    hw = what_if("t4", RAM)
    p = make_plan(q32, LoadSettings(n_ctx=131072), hw)
    assert not p.fits_gpu and p.fits
    assert 0 < p.gpu_layers < 65
    usable = hw.vram_free - p.headroom
    assert p.gpu.total <= usable
    # near the limit: one more layer (~265 MiB weights + 512 MiB of f16 KV at 128K) would not fit
    assert usable - p.gpu.total < 1 * GiB
    assert p.settings.n_ctx == 131072  # never shrunk silently
    text = " ".join(p.reasons)
    assert "weights alone" in text and "any context" in text
    kinds = [s.text for s in p.suggestions]
    assert any(t.startswith("KV cache q8_0") for t in kinds)
    # no context gives 100% GPU, but a shorter one buys layers: offered, with its effect, never applied
    short = [s for s in p.suggestions if s.text.startswith("num_ctx 32768")]
    assert short and short[0].settings.n_ctx == 32768 and short[0].gpu_layers > p.gpu_layers
    assert "100% GPU" not in short[0].text
    for s in p.suggestions:  # each suggestion's effect is real: re-planning its settings gives it
        q = make_plan(q32, s.settings.with_(n_gpu_layers=None), hw, suggest=False)
        assert q.gpu_layers == s.gpu_layers and s.gpu_layers >= p.gpu_layers


def test_seed_32b_32k_q8_on_24gb_fits(q32: ModelInfo) -> None:
    p = make_plan(q32, LoadSettings(n_ctx=32768, type_k="q8_0", type_v="q8_0", flash_attn="on"),
                  what_if("rtx4090", RAM))
    assert p.fits_gpu and p.fits and p.gpu_layers == 65 and p.processor == "100% GPU"
    assert p.host.kv == 0 and p.gpu.weights > 16 * GiB


def test_context_suggestion_is_largest_power_of_two(l8: ModelInfo) -> None:
    hw = Hardware(what_if("t4", RAM).gpus, 128 * GiB, 128 * GiB, 16)
    p = make_plan(l8, LoadSettings(n_ctx=131072, flash_attn="off"), hw)
    ctx = [s for s in p.suggestions if s.text.startswith("num_ctx")]
    assert len(ctx) == 1
    c = ctx[0].settings.n_ctx
    assert make_plan(l8, LoadSettings(n_ctx=c, flash_attn="off"), hw, suggest=False).fits_gpu
    assert not make_plan(l8, LoadSettings(n_ctx=2 * c, flash_attn="off"), hw, suggest=False).fits_gpu
    assert any(s.text.startswith("flash attention on") and s.saves > GiB for s in p.suggestions)


def test_no_gpu(l8: ModelInfo) -> None:
    hw = Hardware((), 64 * GiB, 64 * GiB, 8, gpu_problem="no NVIDIA driver answered")
    p = make_plan(l8, LoadSettings(), hw)
    assert p.gpu_layers == 0 and p.gpu.total == 0 and p.processor == "100% CPU"
    assert "no NVIDIA driver answered" in p.reasons[0]
    j = p.to_json()
    assert j["gpu"] == {"weights": 0, "kv": 0, "compute": 0, "overhead": 0, "rs": 0, "total": 0}


def test_pin_is_honoured(l8: ModelInfo) -> None:
    p = make_plan(l8, LoadSettings(n_gpu_layers=10), what_if("h100", RAM))
    assert p.gpu_layers == 10 and p.settings.n_gpu_layers == 10 and not p.fits_gpu


def test_more_vram_never_fewer_layers(l8: ModelInfo) -> None:
    s = LoadSettings(n_ctx=65536)
    prev = -1
    for gib in (2, 4, 6, 8, 10, 12, 16, 24):
        p = make_plan(l8, s, what_if(f"{gib}GiB", RAM), suggest=False)
        assert p.gpu_layers >= prev
        assert p.gpu.total <= gib * GiB - p.headroom or p.gpu_layers == 0
        prev = p.gpu_layers


def test_moe_prefers_experts_in_ram(tmp_path_factory: pytest.TempPathFactory) -> None:
    shape = Shape(arch="llama", n_layer=24, n_embd=2048, n_head=16, n_head_kv=4, n_ff=6144, n_vocab=32000,
                  n_expert=8, n_expert_used=2, weight_type="Q4_K", output_type="Q6_K", embd_type="Q4_K")
    m = read_model_info(write_sparse_model(tmp_path_factory.mktemp("moe") / "m.gguf", shape))
    exps = sum(t.n_bytes for t in m.tensors if "_exps" in t.name)
    dense = sum(t.n_bytes for t in m.tensors) - exps
    # A card that holds the dense part with room to spare but not the experts.
    p = make_plan(m, LoadSettings(n_ctx=4096), what_if(f"{(dense + 2 * GiB) / GiB:.2f}GiB", RAM))
    assert p.fits and not p.fits_gpu
    alt = make_plan(m, LoadSettings(n_ctx=4096, experts_on_cpu=True), what_if(f"{(dense + 2 * GiB) / GiB:.2f}GiB",
                                                                               RAM), suggest=False)
    assert alt.gpu_layers == 25 and alt.host.weights >= exps  # every layer's dense part on the GPU
    if p.settings.experts_on_cpu:
        assert "experts in RAM" in p.levers and p.gpu_layers == 25
    else:  # the fitter kept the earlier lever (fewer layers); experts in RAM is offered with its effect
        assert p.predicted_tps * 1.03 >= alt.predicted_tps
        sug = [x for x in p.suggestions if x.text.startswith("MoE expert weights in RAM")]
        assert sug and sug[0].gpu_layers == 25 and sug[0].settings.experts_on_cpu


def test_ladder_goes_down_to_cpu(l8: ModelInfo) -> None:
    p = make_plan(l8, LoadSettings(n_ctx=32768), what_if("t4", RAM))
    steps = ladder_steps(p)
    assert steps[-1].use_gpu is False and steps[-1].gpu_layers == 0
    totals = [p.gpu.total] + [s.gpu.total for s in steps[:-1]]
    assert all(b < a for a, b in zip(totals, totals[1:], strict=False))


def test_sweep_context(l8: ModelInfo) -> None:
    plans = sweep_context(l8, LoadSettings(), what_if("t4", RAM), 768 * 1024**2, [4096, 16384, 65536])
    assert [p.settings.n_ctx for p in plans] == [4096, 16384, 65536]
    assert all(not p.suggestions for p in plans)
    assert plans[0].kv_total < plans[1].kv_total < plans[2].kv_total


def test_json_schema(l8: ModelInfo) -> None:
    j = make_plan(l8, LoadSettings(n_ctx=131072), what_if("t4", RAM)).to_json()
    assert {"model", "settings", "gpu_layers", "gpu", "host", "processor", "fits_gpu", "fits", "reasons",
            "suggestions"} <= set(j)
    assert set(j["gpu"]) == {"weights", "kv", "compute", "overhead", "rs", "total"}
    assert set(j["host"]) == {"weights", "kv", "compute", "rs", "repack", "total"}
    assert j["gpu"]["total"] == sum(j["gpu"][k] for k in ("weights", "kv", "compute", "overhead", "rs"))
    assert j["model"]["verified"] is True and j["warnings"] == []  # llama is checked against llama.cpp
    for s in j["suggestions"]:
        assert set(s) >= {"text", "settings", "gpu_layers", "processor"}
        assert LoadSettings.from_dict(s["settings"]).n_ctx > 0


def test_ladder_after_a_forced_all_layers_plan_starts_from_what_the_card_holds(q32: ModelInfo) -> None:
    """A pin far above the card (all 65 layers of a 32B at 128K on a T4) must not shrink 10% at a time
    from 45 GiB down to CPU-only: the first rung already fits the free VRAM with GPU layers."""
    hw = what_if("t4", RAM)
    forced = make_plan(q32, LoadSettings(n_ctx=131072, n_gpu_layers=65), hw, suggest=False)
    assert forced.gpu.total > hw.vram_free  # the pin doesn't fit: llama.cpp would run out of memory
    steps = ladder_steps(forced)
    first = steps[0]
    assert first.use_gpu and 0 < first.gpu_layers < 65
    assert first.gpu.total <= hw.vram_free - first.headroom
    assert all(a.gpu.total > b.gpu.total for a, b in zip(steps, steps[1:-1], strict=False))  # each rung uses less
    assert not steps[-1].use_gpu and steps[-1].gpu.total == 0 and steps[-1].processor == "100% CPU"
