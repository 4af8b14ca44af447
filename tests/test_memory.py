"""Memory model: hand-computed answers on small shapes, and properties that must always hold."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf_factory import Shape, write_sparse_model
from hypothesis import given, settings
from hypothesis import strategies as st

from core.gguf_info import ModelInfo, read_model_info
from core.loadsettings import LoadSettings
from core.memory import estimate, kv_cells, layer_kv_bytes

MiB = 1024**2


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> ModelInfo:
    d = tmp_path_factory.mktemp("mem")
    s = Shape(n_layer=4, n_embd=256, n_head=8, n_head_kv=2, n_ff=512, n_vocab=1000, weight_type="Q8_0",
              output_type="Q8_0", embd_type="Q8_0")
    return read_model_info(write_sparse_model(d / "m.gguf", s))


@pytest.fixture(scope="module")
def swa(tmp_path_factory: pytest.TempPathFactory) -> ModelInfo:
    d = tmp_path_factory.mktemp("swa")
    s = Shape(arch="gemma2", n_layer=4, n_embd=256, n_head=8, n_head_kv=4, head_dim=64, n_ff=512, n_vocab=1000,
              sliding_window=1024, tied_embeddings=True)
    return read_model_info(write_sparse_model(d / "g.gguf", s))


def test_kv_known_answer(small: ModelInfo) -> None:
    s = LoadSettings(n_ctx=1000, type_k="f16", type_v="q8_0", flash_attn="on")
    # 1000 cells pad to 1024; head dim 256/8 = 32, 2 KV heads -> rows of 64 elements:
    # K f16 64*2 = 128 bytes, V q8_0 2 blocks of 34 = 68 bytes.
    assert layer_kv_bytes(small, s) == (1024 * (128 + 68),) * 4


def test_swa_cells(swa: ModelInfo) -> None:
    s = LoadSettings(n_ctx=8192, n_ubatch=512)
    full, cells = kv_cells(swa, s)
    assert full == 8192 and cells == 1536  # pad(1024 + 512, 256)
    assert kv_cells(swa, s.with_(swa_full=True)) == (8192, 8192)
    # gemma2 alternates: layers 0 and 2 slide. Row: 4 heads x 64 x 2 bytes, K and V.
    row = 4 * 64 * 2 * 2
    assert layer_kv_bytes(swa, s) == (1536 * row, 8192 * row, 1536 * row, 8192 * row)


def test_placement_known_answer(small: ModelInfo) -> None:
    s = LoadSettings(n_ctx=2048, flash_attn="on")
    blk = {t.layer: 0 for t in small.tensors if t.layer is not None}
    for t in small.tensors:
        if t.layer is not None:
            blk[t.layer] += t.n_bytes
    out = sum(t.n_bytes for t in small.tensors if t.name.startswith("output"))
    embd = next(t.n_bytes for t in small.tensors if t.name == "token_embd.weight")
    e2 = estimate(small, s, 2)  # llama.cpp: output layer + the last block
    assert e2.gpu_blocks == 1 and e2.output_on_gpu
    raw_gpu = blk[3] + out
    assert e2.gpu.weights == -(-raw_gpu // (2 * MiB)) * 2 * MiB
    assert e2.host.weights == embd + blk[0] + blk[1] + blk[2]
    kv_layer = 2048 * (2 * 64 * 2)
    assert e2.gpu.kv == 2 * MiB  # one layer's 256 KiB rounds up to the 2 MiB CUDA granularity
    assert e2.host.kv == 3 * kv_layer
    e0 = estimate(small, s, 0)
    assert e0.gpu.weights == 0 and e0.host.weights == sum(t.n_bytes for t in small.tensors)
    none = estimate(small, s, 5, has_gpu=False)
    assert none.gpu.total == 0 and none.host.kv == 4 * kv_layer


def test_tied_output_is_duplicated_on_gpu(swa: ModelInfo) -> None:
    s = LoadSettings(n_ctx=2048)
    embd = next(t.n_bytes for t in swa.tensors if t.name == "token_embd.weight")
    full = estimate(swa, s, 5)
    assert full.host.weights == embd  # the input embedding stays on the host
    blocks = sum(t.n_bytes for t in swa.tensors if t.layer is not None)
    norm = next(t.n_bytes for t in swa.tensors if t.name == "output_norm.weight")
    assert full.gpu.weights >= blocks + norm + embd


def test_compute_without_fa_holds_kq(small: ModelInfo) -> None:
    s = LoadSettings(n_ctx=65536, n_ubatch=512, flash_attn="off")
    on = estimate(small, s.with_(flash_attn="on"), 5)
    off = estimate(small, s, 5)
    kq = 65536 * 512 * 8 * 4  # n_ctx x n_ubatch x n_head x f32
    assert off.gpu.compute >= kq
    assert on.gpu.compute < kq


def test_experts_on_cpu_moves_exps(tmp_path: Path) -> None:
    m = read_model_info(write_sparse_model(tmp_path / "moe.gguf", Shape(n_layer=2, n_embd=256, n_head=4,
                                           n_head_kv=2, n_ff=512, n_expert=8, n_expert_used=2,
                                           weight_type="Q8_0")))
    exps = sum(t.n_bytes for t in m.tensors if "_exps" in t.name)
    s = LoadSettings(n_ctx=2048)
    a = estimate(m, s, 3)
    b = estimate(m, s.with_(experts_on_cpu=True), 3)
    assert b.host.weights - a.host.weights == exps


def test_offload_kqv_off_keeps_kv_on_host(small: ModelInfo) -> None:
    e = estimate(small, LoadSettings(n_ctx=4096, offload_kqv=False), 5)
    assert e.gpu.kv == 0 and e.host.kv == e.kv_total > 0


@settings(max_examples=60, deadline=None)
@given(ctx=st.integers(256, 200_000), extra=st.integers(1, 100_000), k=st.integers(0, 5),
       fa=st.booleans(), kv=st.sampled_from(["f16", "q8_0", "q4_0"]))
def test_memory_grows_with_context(small: ModelInfo, ctx: int, extra: int, k: int, fa: bool, kv: str) -> None:
    if kv != "f16":
        fa = True
    s = LoadSettings(n_ctx=ctx, type_k=kv, type_v=kv, flash_attn="on" if fa else "off")
    a = estimate(small, s, k)
    b = estimate(small, s.with_(n_ctx=ctx + extra), k)
    assert b.gpu.total >= a.gpu.total and b.host.total >= a.host.total
    assert b.kv_total >= a.kv_total


@settings(max_examples=40, deadline=None)
@given(ctx=st.integers(256, 200_000), k=st.integers(1, 4), fa=st.booleans())
def test_memory_grows_with_layers(small: ModelInfo, ctx: int, k: int, fa: bool) -> None:
    s = LoadSettings(n_ctx=ctx, flash_attn="on" if fa else "off")
    a = estimate(small, s, k)
    b = estimate(small, s, k + 1)
    assert b.gpu.weights >= a.gpu.weights and b.gpu.kv >= a.gpu.kv
    assert b.gpu.total >= a.gpu.total


@settings(max_examples=40, deadline=None)
@given(ctx=st.integers(256, 200_000))
def test_kv_type_order(small: ModelInfo, ctx: int) -> None:
    s = LoadSettings(n_ctx=ctx, flash_attn="on")
    sizes = [estimate(small, s.with_(type_k=t, type_v=t), 5).kv_total for t in ("q4_0", "q8_0", "f16")]
    assert sizes[0] < sizes[1] < sizes[2]


@settings(max_examples=60, deadline=None)
@given(ctx=st.integers(256, 200_000), k=st.integers(0, 5), ub=st.sampled_from([32, 128, 512, 2048]))
def test_fa_never_increases_compute(small: ModelInfo, ctx: int, k: int, ub: int) -> None:
    s = LoadSettings(n_ctx=ctx, n_batch=2048, n_ubatch=ub)
    on = estimate(small, s.with_(flash_attn="on"), k)
    off = estimate(small, s.with_(flash_attn="off"), k)
    assert on.gpu.compute <= off.gpu.compute and on.host.compute <= off.host.compute


def test_tied_output_is_not_duplicated_on_the_host(swa: ModelInfo) -> None:
    """CPU layers share token_embd with the tied output (llama.cpp reuses the tensor in the same buffer)."""
    s = LoadSettings(n_ctx=2048)
    # By hand, F32 tensors of the gemma2-like fixture: embd 1000x256, per layer norms 2x256,
    # q 512x256, k/v 256x256 each, o 256x512, 3 ffn 512x256; plus output_norm 256.
    per_layer = 2 * 256 + 512 * 256 + 2 * 256 * 256 + 256 * 512 + 3 * 512 * 256
    file_bytes = (1000 * 256 + 4 * per_layer + 256) * 4
    assert estimate(swa, s, 0, has_gpu=False).host.weights == file_bytes
    k0 = estimate(swa, s, 0)
    assert k0.host.weights == file_bytes and k0.gpu.weights == 0
    # Output on the GPU: the host keeps all but the output norm; the GPU gets a real embedding copy.
    one = estimate(swa, s, 1)
    assert one.host.weights == file_bytes - 256 * 4
    assert one.gpu.weights >= 1000 * 256 * 4


def test_swa_full_keeps_two_masks(swa: ModelInfo) -> None:
    """Without FA the attention stage holds one f32 mask per KV cache, even when both are full size."""
    off = estimate(swa, LoadSettings(n_ctx=8192, flash_attn="off", swa_full=False), 0, has_gpu=False)
    on = estimate(swa, LoadSettings(n_ctx=8192, flash_attn="off", swa_full=True), 0, has_gpu=False)
    T = 512
    # By hand: SWA cells pad(1024 + 512, 256) = 1536 vs 8192 with swa_full: the second mask grows by
    # (8192 - 1536) x T x 4 bytes; the KQ matrix (largest cache) is the same.
    assert on.detail["stages"]["attention"] - off.detail["stages"]["attention"] == (8192 - 1536) * T * 4


def test_moe_ffn_stage_by_hand(tmp_path: Path) -> None:
    """MoE FFN peak: 3 x [n_ff_exp, n_used, T] (gate, up, SwiGLU) + 3 n_embd + 2 n_expert rows, f32."""
    s = Shape(n_layer=2, n_embd=256, n_head=4, n_head_kv=2, n_ff=512, n_vocab=300, n_expert=8, n_expert_used=2,
              weight_type="Q8_0")
    m = read_model_info(write_sparse_model(tmp_path / "moe.gguf", s))
    e = estimate(m, LoadSettings(n_ctx=2048, flash_attn="off", n_batch=512, n_ubatch=512), 0, has_gpu=False)
    T = 512
    assert e.detail["stages"]["ffn"] == (3 * 512 * 2 + 3 * 256 + 2 * 8) * T * 4


def test_partial_offload_at_long_context_copies_a_cpu_layers_kv(tmp_path: Path) -> None:
    """With op offload, a CPU layer's attention runs on the GPU on its copied K/V views (ggml-backend's
    "expand gpu up" pass): at 128K that copy, not the logits, sets the partial-offload compute buffer."""
    from gguf_factory import LLAMA3_8B

    info = read_model_info(write_sparse_model(tmp_path / "l8.gguf", LLAMA3_8B))
    s = LoadSettings(n_ctx=131072, flash_attn="on")
    one_layer_kv = 131072 * 8 * 128 * 2 * 2  # cells × kv heads × head dim × (K and V) × f16 = 512 MiB
    partial = estimate(info, s, 16)
    full = estimate(info, s, info.n_layer + 1)
    assert partial.gpu.compute >= one_layer_kv + 128 * MiB  # + the f16 mask, 131072 × 512 × 2
    assert full.gpu.compute < 300 * MiB  # every layer on the GPU: no copies, the logits dominate
    # KV in RAM pins attention to the CPU (llama-graph.cpp): no copy on the GPU
    assert estimate(info, s.with_(offload_kqv=False), 16).gpu.compute < 300 * MiB
    # a short context keeps the copy (16 MiB at 4K) below the logits: the H100 measured 266.5 MiB there
    short = estimate(info, LoadSettings(n_ctx=4096, flash_attn="on"), 16)
    assert short.gpu.compute < 300 * MiB
