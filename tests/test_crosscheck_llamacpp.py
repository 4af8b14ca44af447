"""core.memory against llama.cpp's own allocator: real llama.cpp runs on sparse full-size models.

Each probe runs ``benchmarks/crosscheck_cpu.py --probe`` in a child process: llama.cpp loads the model
with ``no_alloc`` (nothing allocated, nothing read), creates a context and logs the KV cache size and
the compute buffer its scheduler reserves. Those numbers are llama.cpp's, not ours; the tests assert
the estimator's mechanisms (KV cells and rows, sliding-window caches, per-architecture graph peaks,
MoE routing, tied embeddings) reproduce them. A second set of known answers is computed by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gguf_factory import (
    GEMMA2_9B,
    GPT_OSS_20B,
    MIXTRAL_8X7B,
    QWEN3_30B_A3B,
    QWEN25_7B,
    Shape,
    write_sparse_model,
    write_tiny_model,
)

from core.gguf_info import read_model_info
from core.loadsettings import LoadSettings
from core.memory import cpu_buffers, estimate

MiB = 1024**2
PROBE = Path(__file__).resolve().parent.parent / "benchmarks" / "crosscheck_cpu.py"


def _probe(path: Path, n_ctx: int, fa: bool, kv: str = "f16", ubatch: int = 512, swa_full: bool = False,
           real: bool = False) -> dict[str, Any]:
    cfg = {"n_ctx": n_ctx, "flash_attn": fa, "type_kv": kv, "n_ubatch": ubatch, "swa_full": swa_full}
    args = [sys.executable, str(PROBE), "--probe", str(path), json.dumps(cfg)] + (["--real"] if real else [])
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    res: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["ok"], res.get("log", "")[-2000:]
    return res


def _settings(n_ctx: int, fa: bool, kv: str = "f16", ubatch: int = 512, swa_full: bool = False) -> LoadSettings:
    return LoadSettings(n_ctx=n_ctx, n_batch=ubatch, n_ubatch=ubatch, type_k=kv, type_v=kv,
                        flash_attn="on" if fa else "off", swa_full=swa_full)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("xc")
    shapes = {"qwen2": QWEN25_7B, "mixtral": MIXTRAL_8X7B, "qwen3moe": QWEN3_30B_A3B, "gemma2": GEMMA2_9B,
              "gptoss": GPT_OSS_20B}
    return {k: write_sparse_model(d / f"{k}.gguf", s) for k, s in shapes.items()}


# (model, n_ctx, FA, KV type, ubatch, swa_full): dense with biases, MoE, SWA 4096/128, quantized KV.
CASES = [
    ("qwen2", 32768, False, "f16", 512, False),
    ("qwen2", 8192, True, "q8_0", 2048, False),
    ("mixtral", 2048, True, "f16", 512, False),
    ("mixtral", 32768, True, "f16", 512, False),
    ("mixtral", 2048, True, "q4_0", 512, False),
    ("mixtral", 8192, False, "f16", 2048, False),
    ("qwen3moe", 32768, False, "f16", 512, False),
    ("gemma2", 32768, True, "f16", 512, False),
    ("gemma2", 32768, False, "f16", 512, True),
    ("gemma2", 131072, True, "q8_0", 512, False),
    ("gptoss", 131072, False, "f16", 512, False),
    ("gptoss", 32768, True, "q4_0", 512, True),
]


@pytest.mark.parametrize("name,n_ctx,fa,kv,ub,swa_full", CASES)
def test_kv_and_compute_match_llamacpp(models: dict[str, Path], name: str, n_ctx: int, fa: bool, kv: str,
                                       ub: int, swa_full: bool) -> None:
    got = _probe(models[name], n_ctx, fa, kv, ub, swa_full)
    assert got["fa"] is fa
    pred = cpu_buffers(read_model_info(models[name]), _settings(n_ctx, fa, kv, ub, swa_full))
    kv_mib = sum(c["mib"] for c in got["kv"])
    assert pred["kv"] / MiB == pytest.approx(kv_mib, abs=0.01)  # the log prints 2 decimals
    compute = got["compute"]["CPU"]
    assert pred["compute"] / MiB == pytest.approx(compute, rel=0.025, abs=1.0)
    assert pred["output"] / MiB == pytest.approx(got["output"]["CPU"], abs=0.01)


def test_gemma2_swa_cache_by_hand(models: dict[str, Path]) -> None:
    """Gemma-2-9B at 32K, f16: 21 global layers hold 32768 cells, 21 SWA layers pad(4096 + 512, 256)."""
    got = _probe(models["gemma2"], 32768, True)
    row = 2 * 8 * 256 * 2  # K and V, 8 KV heads x head_dim 256, f16
    swa_cells = 4608  # 4096 + 512 is already a multiple of 256
    caches = sorted((c["cells"], c["layers"], c["mib"]) for c in got["kv"])
    assert caches == [(swa_cells, 21, 21 * swa_cells * row / MiB), (32768, 21, 21 * 32768 * row / MiB)]
    # With swa_full both caches are full size.
    full = _probe(models["gemma2"], 32768, True, swa_full=True)
    assert sum(c["mib"] for c in full["kv"]) == 42 * 32768 * row / MiB


def test_mixtral_moe_compute_by_hand(models: dict[str, Path]) -> None:
    """Mixtral-8x7B, FA, 2K, ubatch 512: the MoE FFN is the peak (vocab 32000 is small).

    Alive at the SwiGLU: gate, up and their product [14336, 2 experts, 512] f32 = 3 x 56 MiB, the normed
    input, the residual and one more n_embd row per token (3 x 8 MiB), the f16 mask 2048 x 512 (2 MiB),
    router logits/probs (tiny), plus the input embedding rows of the CPU graph (8 MiB).
    """
    got = _probe(models["mixtral"], 2048, True)
    T = 512
    by_hand = (3 * 14336 * 2 * T * 4 + 3 * 4096 * T * 4 + 2 * 8 * T * 4 + 2048 * T * 2 + 4096 * T * 4) / MiB
    assert got["compute"]["CPU"] == pytest.approx(by_hand, abs=0.1)


def test_tied_embedding_is_not_duplicated_on_the_host(tmp_path: Path) -> None:
    """A real mmap load: llama.cpp maps the file once; a tied output on the CPU reuses token_embd."""
    shape = Shape(n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, n_vocab=4096, tied_embeddings=True)
    path = write_tiny_model(tmp_path / "tied.gguf", shape)
    got = _probe(path, 256, True, real=True)
    mapped = got["weights"]["CPU_Mapped"]
    # By hand: F32 weights. embd 4096x64, per layer 2 norms + q/o 64x64 + k/v 32x64 + 3 ffn 64x128.
    per_layer = 2 * 64 + 2 * 64 * 64 + 2 * 32 * 64 + 3 * 64 * 128
    by_hand = (4096 * 64 + 2 * per_layer + 64) * 4 / MiB
    assert mapped == pytest.approx(by_hand, abs=0.01)
    model = read_model_info(path)
    cpu_only = estimate(model, LoadSettings(n_ctx=256, flash_attn="on"), 0, has_gpu=False)
    assert cpu_only.host.weights / MiB == pytest.approx(mapped, abs=0.01)
    gpu_k0 = estimate(model, LoadSettings(n_ctx=256, flash_attn="on"), 0)
    assert gpu_k0.host.weights / MiB == pytest.approx(mapped, abs=0.01)
    # On the GPU the output layer is a real copy of the embedding (a different buffer type).
    full = estimate(model, LoadSettings(n_ctx=256, flash_attn="on"), 3)
    assert full.gpu.weights >= 4096 * 64 * 4
