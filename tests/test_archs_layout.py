"""core.archs rules that need no llama.cpp run: flash-attention auto on CUDA for MLA and Gemma-4
head sizes, and the built-in pattern conditions (worked out by hand from llama.cpp's load_arch_hparams)."""

from __future__ import annotations

from pathlib import Path

from arch_models import write_spec_model
from gguf_factory import Shape, write_sparse_model

from core.archs import arch_layout, warning_text
from core.gguf_info import read_model_info
from core.loadsettings import LoadSettings
from core.memory import resolve_flash_attn


def test_flash_attention_auto_on_cuda_for_mla_heads(tmp_path: Path) -> None:
    ds = read_model_info(write_spec_model(tmp_path / "ds.gguf", "deepseek2"))
    assert (ds.key_length, ds.value_length) == (576, 512)
    assert resolve_flash_attn(ds, LoadSettings(flash_attn="auto"), has_gpu=True)
    odd = read_model_info(write_sparse_model(tmp_path / "odd.gguf", Shape(n_embd=160, n_head=1, n_head_kv=1)))
    assert odd.key_length == 160 and not resolve_flash_attn(odd, LoadSettings(flash_attn="auto"), has_gpu=True)


def test_builtin_patterns_and_their_conditions(tmp_path: Path) -> None:
    # EXAONE-4 has SWA only at 64 layers (3 SWA : 1 full, window 4096 without a key).
    ex = arch_layout(read_model_info(write_spec_model(tmp_path / "ex.gguf", "exaone4")))
    assert ex.n_swa == 4096 and sum(ex.swa) == 48 and not ex.swa[3] and ex.swa[0]
    small = read_model_info(write_sparse_model(tmp_path / "ex12.gguf", Shape(arch="exaone4", n_layer=30,
                                                                               sliding_window=4096)))
    assert not arch_layout(small).has_swa
    # Phi-3's SWA key is ignored by llama.cpp (models/phi3.cpp).
    phi = arch_layout(read_model_info(write_spec_model(tmp_path / "phi.gguf", "phi3")))
    assert not phi.has_swa and phi.verified
    # GLM-4.5-Air: 47 blocks, the last is NextN: 46 layers own a cache.
    glm = arch_layout(read_model_info(write_spec_model(tmp_path / "glm.gguf", "glm4moe")))
    assert glm.n_layer_trunk == 46 and sum(glm.has_kv) == 46 and not glm.has_kv[46]
    # Gemma-4: local layers use key_length_swa (256), global ones 512; V padded to 512 without FA.
    g4 = arch_layout(read_model_info(write_spec_model(tmp_path / "g4.gguf", "gemma4")))
    assert g4.k_v_widths(0, True) == (16 * 256, 16 * 256) and g4.k_v_widths(5, True) == (16 * 512, 16 * 512)
    assert g4.k_v_widths(0, False) == (16 * 256, 16 * 512)


def test_unknown_architecture_warns(tmp_path: Path) -> None:
    m = read_model_info(write_sparse_model(tmp_path / "x.gguf", Shape(arch="brand-new-arch")))
    assert warning_text(m) == ("not verified for brand-new-arch: numbers may be off "
                               "(LayerFit has not checked brand-new-arch against llama.cpp)")
    assert not arch_layout(m).verified


def test_plan_json_states_the_effective_cache_layout(tmp_path: Path) -> None:
    from core.fit import make_plan
    from core.hardware import Hardware
    from core.units import GiB

    hw = Hardware((), 64 * GiB, 60 * GiB, 8, gpu_problem="none")
    l4 = make_plan(read_model_info(write_spec_model(tmp_path / "l4.gguf", "llama4")), LoadSettings(n_ctx=32768), hw)
    j = l4.to_json()["model"]
    # Llama-4 has no window key: the 8192-token chunks are llama.cpp's built-in (3 chunked : 1 full).
    assert (j["sliding_window"], j["n_swa_layers"], j["chunked_attention"], j["n_kv_layers"]) == (8192, 36, True, 48)
    q3n = make_plan(read_model_info(write_spec_model(tmp_path / "q.gguf", "qwen3next")), LoadSettings(n_ctx=4096), hw)
    assert (q3n.to_json()["model"]["n_kv_layers"], q3n.to_json()["model"]["n_recurrent_layers"]) == (12, 36)
    assert q3n.host.rs == 36 * ((4 - 1) * (4096 + 2 * 16 * 128) + 128 * 4096) * 4
