"""Sparse synthetic GGUFs for any architecture llama.cpp knows, with the tensor list llama.cpp asks for.

Writing each architecture's tensor list by hand is a race against llama.cpp's 100+ architectures.
Instead, ``discover`` asks llama.cpp itself: it writes a sparse file with the real metadata (the
``ARCHS`` table: published configs of real models) and the tensors known so far, loads it with
``no_alloc`` (nothing allocated, nothing read), and reads the loader's error: ``tensor 'X' not
found`` adds X, ``tensor 'X' has wrong shape; expected [...]`` gives X's real shape. It repeats until
llama.cpp loads the file. Discovery runs with a small tokenizer (the vocabulary size lives in the
shapes only) and the result is stored in ``tests/data/arch_specs.json``; ``write_spec_model`` then
writes the full-size sparse file (real vocabulary) from that spec in milliseconds.

Regenerate the stored specs after a llama.cpp upgrade:
``python tests/arch_models.py --discover [ARCH ...]`` (a child process per architecture).
"""

from __future__ import annotations

import ctypes
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter, TokenType
from gguf.constants import GGML_QUANT_SIZES

SPECS = Path(__file__).resolve().parent / "data" / "arch_specs.json"
_SMALL_VOCAB = 1031  # discovery vocabulary; no real dimension has this size

#: Nemotron-H-8B's hybrid_override_pattern: M = Mamba2, * = attention, - = MLP (52 layers).
_NEMOTRON_H_8B = "M-M-M-M*-" * 4 + "M-M-M-M-M-M-M-M-"
#: Nemotron-3-Nano-30B-A3B: M = Mamba2, * = attention, E = MoE (52 layers).
_NEMOTRON_3_NANO = "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME"

#: Optional tensors the loader accepts as alternatives (TENSOR_NOT_REQUIRED) but the graph then needs:
#: discovery can't ask for them, so real files' choice is seeded here: (name template, layers).
#: Their shapes are still llama.cpp's (a wrong seed shape is corrected like any other).
def _layers(n: int, pred: Any) -> list[int]:
    return [il for il in range(n) if pred(il)]


_SSM_BIASES = ("blk.{}.ssm_conv1d.bias", "blk.{}.ssm_dt.bias")
SEEDS: dict[str, list[tuple[str, list[int]]]] = {
    "phi3": [("blk.{}.attn_qkv.weight", list(range(32)))],
    "qwen3next": [(t, _layers(48, lambda il: (il + 1) % 4 != 0))
                  for t in ("blk.{}.attn_qkv.weight", "blk.{}.attn_gate.weight")],
    "qwen35moe": [(t, _layers(40, lambda il: (il + 1) % 4 != 0))
                  for t in ("blk.{}.attn_qkv.weight", "blk.{}.attn_gate.weight")],
    "falcon-h1": [(t, list(range(44))) for t in _SSM_BIASES],
    "nemotron_h": [(t, _layers(52, lambda il: _NEMOTRON_H_8B[il] == "M")) for t in _SSM_BIASES],
    "nemotron_h_moe": [(t, _layers(52, lambda il: _NEMOTRON_3_NANO[il] == "M")) for t in _SSM_BIASES],
    "granitehybrid": [(t, _layers(40, lambda il: il not in (5, 15, 25, 35))) for t in _SSM_BIASES],
}

# Published configs of real models, as convert_hf_to_gguf.py writes them (keys without the arch prefix
# are written as "<arch>.<key>"; "general.*"/"tokenizer.*" as given). n_vocab is the real vocabulary.
ARCHS: dict[str, dict[str, Any]] = {
    "llama": {"model": "Llama-3.2-1B", "n_vocab": 128256, "kv": {
        "block_count": 16, "context_length": 131072, "embedding_length": 2048, "feed_forward_length": 8192,
        "attention.head_count": 32, "attention.head_count_kv": 8, "rope.dimension_count": 64,
        "attention.layer_norm_rms_epsilon": 1e-5, "rope.freq_base": 500000.0}},
    "qwen2": {"model": "Qwen2.5-7B", "n_vocab": 152064, "kv": {
        "block_count": 28, "context_length": 131072, "embedding_length": 3584, "feed_forward_length": 18944,
        "attention.head_count": 28, "attention.head_count_kv": 4, "attention.layer_norm_rms_epsilon": 1e-6,
        "rope.freq_base": 1000000.0}},
    "qwen3": {"model": "Qwen3-8B", "n_vocab": 151936, "kv": {
        "block_count": 36, "context_length": 40960, "embedding_length": 4096, "feed_forward_length": 12288,
        "attention.head_count": 32, "attention.head_count_kv": 8, "attention.key_length": 128,
        "attention.value_length": 128, "attention.layer_norm_rms_epsilon": 1e-6, "rope.freq_base": 1000000.0}},
    "qwen3moe": {"model": "Qwen3-30B-A3B", "n_vocab": 151936, "kv": {
        "block_count": 48, "context_length": 40960, "embedding_length": 2048, "feed_forward_length": 6144,
        "attention.head_count": 32, "attention.head_count_kv": 4, "attention.key_length": 128,
        "attention.value_length": 128, "expert_count": 128, "expert_used_count": 8,
        "expert_feed_forward_length": 768, "attention.layer_norm_rms_epsilon": 1e-6}},
    "gemma2": {"model": "gemma-2-9b", "n_vocab": 256000, "kv": {
        "block_count": 42, "context_length": 8192, "embedding_length": 3584, "feed_forward_length": 14336,
        "attention.head_count": 16, "attention.head_count_kv": 8, "attention.key_length": 256,
        "attention.value_length": 256, "attention.sliding_window": 4096, "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0, "attention.layer_norm_rms_epsilon": 1e-6}},
    "gemma3": {"model": "gemma-3-12b", "n_vocab": 262208, "kv": {
        "block_count": 48, "context_length": 131072, "embedding_length": 3840, "feed_forward_length": 15360,
        "attention.head_count": 16, "attention.head_count_kv": 8, "attention.key_length": 256,
        "attention.value_length": 256, "attention.sliding_window": 1024, "attention.layer_norm_rms_epsilon": 1e-6,
        "rope.freq_base": 1000000.0}},
    "gpt-oss": {"model": "gpt-oss-20b", "n_vocab": 201088, "kv": {
        "block_count": 24, "context_length": 131072, "embedding_length": 2880, "feed_forward_length": 2880,
        "attention.head_count": 64, "attention.head_count_kv": 8, "attention.key_length": 64,
        "attention.value_length": 64, "attention.sliding_window": 128, "expert_count": 32, "expert_used_count": 4,
        "expert_feed_forward_length": 2880, "attention.layer_norm_rms_epsilon": 1e-5, "rope.freq_base": 150000.0}},
    "phi3": {"model": "Phi-3.5-mini-instruct", "n_vocab": 32064, "kv": {
        "block_count": 32, "context_length": 131072, "embedding_length": 3072, "feed_forward_length": 8192,
        "attention.head_count": 32, "attention.head_count_kv": 32, "rope.dimension_count": 96,
        "attention.sliding_window": 262144, "attention.layer_norm_rms_epsilon": 1e-5}},
    "mistral3": {"model": "Mistral-Small-3.1-24B", "n_vocab": 131072, "kv": {
        "block_count": 40, "context_length": 131072, "embedding_length": 5120, "feed_forward_length": 32768,
        "attention.head_count": 32, "attention.head_count_kv": 8, "attention.key_length": 128,
        "attention.value_length": 128, "rope.dimension_count": 128, "attention.layer_norm_rms_epsilon": 1e-5,
        "rope.freq_base": 1000000000.0}},
    "command-r": {"model": "c4ai-command-r-08-2024", "n_vocab": 256000, "kv": {
        "block_count": 40, "context_length": 131072, "embedding_length": 8192, "feed_forward_length": 22528,
        "attention.head_count": 64, "attention.head_count_kv": 8, "logit_scale": 0.0625,
        "attention.layer_norm_epsilon": 1e-5, "rope.freq_base": 4000000.0}},
    "cohere2": {"model": "c4ai-command-r7b-12-2024", "n_vocab": 256000, "kv": {
        "block_count": 32, "context_length": 8192, "embedding_length": 4096, "feed_forward_length": 14336,
        "attention.head_count": 32, "attention.head_count_kv": 8, "attention.sliding_window": 4096,
        "logit_scale": 0.25, "attention.layer_norm_epsilon": 1e-5, "rope.freq_base": 50000.0}},
    "exaone": {"model": "EXAONE-3.5-7.8B", "n_vocab": 102400, "kv": {
        "block_count": 32, "context_length": 32768, "embedding_length": 4096, "feed_forward_length": 14336,
        "attention.head_count": 32, "attention.head_count_kv": 8, "rope.dimension_count": 128,
        "attention.layer_norm_rms_epsilon": 1e-5, "rope.freq_base": 1000000.0}},
    "exaone4": {"model": "EXAONE-4.0-32B (no pattern key)", "n_vocab": 102400, "kv": {
        "block_count": 64, "context_length": 131072, "embedding_length": 5120, "feed_forward_length": 27392,
        "attention.head_count": 40, "attention.head_count_kv": 8, "attention.key_length": 128,
        "attention.value_length": 128, "attention.sliding_window": 4096, "attention.layer_norm_rms_epsilon": 1e-5,
        "rope.freq_base": 1000000.0}},
    "smollm3": {"model": "SmolLM3-3B", "n_vocab": 128256, "kv": {
        "block_count": 36, "context_length": 65536, "embedding_length": 2048, "feed_forward_length": 11008,
        "attention.head_count": 16, "attention.head_count_kv": 4, "attention.layer_norm_rms_epsilon": 1e-6,
        "rope.freq_base": 5000000.0}},
    "olmo2": {"model": "Olmo-3-7B (SWA, no pattern key)", "n_vocab": 100278, "kv": {
        "block_count": 32, "context_length": 65536, "embedding_length": 4096, "feed_forward_length": 11008,
        "attention.head_count": 32, "attention.head_count_kv": 32, "attention.sliding_window": 4096,
        "attention.layer_norm_rms_epsilon": 1e-6, "rope.freq_base": 500000.0}},
    "lfm2": {"model": "LFM2-1.2B", "n_vocab": 65536, "kv": {
        "block_count": 16, "context_length": 128000, "embedding_length": 2048, "feed_forward_length": 8192,
        "attention.head_count": 32,
        "attention.head_count_kv": [0, 0, 8, 0, 0, 8, 0, 0, 8, 0, 8, 0, 8, 0, 8, 0],
        "shortconv.l_cache": 3, "attention.layer_norm_rms_epsilon": 1e-5, "rope.freq_base": 1000000.0}},
    "deepseek2": {"model": "DeepSeek-V2-Lite (MLA)", "n_vocab": 102400, "kv": {
        "block_count": 27, "context_length": 163840, "embedding_length": 2048, "feed_forward_length": 10944,
        "attention.head_count": 16, "attention.head_count_kv": 1, "attention.key_length": 576,
        "attention.value_length": 512, "attention.key_length_mla": 192, "attention.value_length_mla": 128,
        "attention.kv_lora_rank": 512, "rope.dimension_count": 64, "leading_dense_block_count": 1,
        "expert_count": 64, "expert_used_count": 6, "expert_shared_count": 2, "expert_feed_forward_length": 1408,
        "expert_weights_scale": 1.0, "attention.layer_norm_rms_epsilon": 1e-6, "vocab_size": 102400}},
    "qwen3next": {"model": "Qwen3-Next-80B-A3B", "n_vocab": 151936, "kv": {
        "block_count": 48, "context_length": 262144, "embedding_length": 2048, "feed_forward_length": 5120,
        "attention.head_count": 16, "attention.head_count_kv": 2, "attention.key_length": 256,
        "attention.value_length": 256, "rope.dimension_count": 64, "expert_count": 512, "expert_used_count": 10,
        "expert_feed_forward_length": 512, "expert_shared_feed_forward_length": 512, "ssm.conv_kernel": 4,
        "ssm.state_size": 128, "ssm.group_count": 16, "ssm.time_step_rank": 32, "ssm.inner_size": 4096,
        "full_attention_interval": 4, "attention.layer_norm_rms_epsilon": 1e-6, "rope.freq_base": 10000000.0}},
    "qwen35moe": {"model": "Qwen3.5-35B-A3B (+1 MTP layer)", "n_vocab": 248320, "kv": {
        "block_count": 41, "nextn_predict_layers": 1, "context_length": 262144, "embedding_length": 2048,
        "attention.head_count": 16, "attention.head_count_kv": 2, "attention.key_length": 256,
        "attention.value_length": 256, "rope.dimension_count": 64, "rope.dimension_sections": [11, 11, 10, 0],
        "expert_count": 256, "expert_used_count": 8, "expert_feed_forward_length": 512,
        "expert_shared_feed_forward_length": 512, "ssm.conv_kernel": 4, "ssm.state_size": 128,
        "ssm.group_count": 16, "ssm.time_step_rank": 32, "ssm.inner_size": 4096, "full_attention_interval": 4,
        "attention.layer_norm_rms_epsilon": 1e-6, "rope.freq_base": 10000000.0}},
    "llama4": {"model": "Llama-4-Scout-17B-16E", "n_vocab": 202048, "kv": {
        "block_count": 48, "context_length": 10485760, "embedding_length": 5120, "feed_forward_length": 16384,
        "attention.head_count": 40, "attention.head_count_kv": 8, "rope.dimension_count": 128,
        "expert_count": 16, "expert_used_count": 1, "expert_feed_forward_length": 8192,
        "interleave_moe_layer_step": 1, "attention.layer_norm_rms_epsilon": 1e-5, "rope.freq_base": 500000.0}},
    "gemma3n": {"model": "gemma-3n-E4B", "n_vocab": 262144, "kv": {
        "block_count": 35, "context_length": 32768, "embedding_length": 2048, "feed_forward_length": 16384,
        "attention.head_count": 8, "attention.head_count_kv": 2, "attention.key_length": 256,
        "attention.value_length": 256, "attention.sliding_window": 512, "embedding_length_per_layer_input": 256,
        "altup.active_idx": 0, "altup.num_inputs": 4, "attention.layer_norm_rms_epsilon": 1e-6,
        "rope.freq_base": 1000000.0, "attention.shared_kv_layers": 15}},
    "gemma4": {"model": "gemma-4-31B-like (5 local : 1 global, local head 256, global head 512)", "n_vocab": 262144,
               "kv": {
        "block_count": 60, "context_length": 262144, "embedding_length": 5376, "feed_forward_length": 21504,
        "attention.head_count": 32, "attention.head_count_kv": 16, "attention.key_length": 512,
        "attention.value_length": 512, "attention.key_length_swa": 256, "attention.value_length_swa": 256,
        "attention.sliding_window": 1024, "attention.sliding_window_pattern": [(il % 6) < 5 for il in range(60)],
        "embedding_length_per_layer_input": 0, "attention.layer_norm_rms_epsilon": 1e-6,
        "rope.freq_base": 1000000.0, "final_logit_softcapping": 30.0}},
    "glm4moe": {"model": "GLM-4.5-Air (+1 NextN layer)", "n_vocab": 151552, "kv": {
        "block_count": 47, "nextn_predict_layers": 1, "context_length": 131072, "embedding_length": 4096,
        "feed_forward_length": 10944, "attention.head_count": 96, "attention.head_count_kv": 8,
        "attention.key_length": 128, "attention.value_length": 128, "rope.dimension_count": 64,
        "expert_count": 128, "expert_used_count": 8, "expert_feed_forward_length": 1408, "expert_shared_count": 1,
        "leading_dense_block_count": 1, "expert_weights_scale": 1.0, "expert_weights_norm": True,
        "attention.layer_norm_rms_epsilon": 1e-5, "rope.freq_base": 1000000.0}},
    "falcon-h1": {"model": "Falcon-H1-7B", "n_vocab": 130049, "kv": {
        "block_count": 44, "context_length": 262144, "embedding_length": 3072, "feed_forward_length": 12288,
        "attention.head_count": 12, "attention.head_count_kv": 2, "attention.key_length": 128,
        "attention.value_length": 128, "ssm.conv_kernel": 4, "ssm.inner_size": 3072, "ssm.state_size": 256,
        "ssm.time_step_rank": 24, "ssm.group_count": 1, "attention.layer_norm_rms_epsilon": 1e-5,
        "rope.freq_base": 100000000000.0}},
    "nemotron_h": {"model": "Nemotron-H-8B", "n_vocab": 131072, "kv": {
        "block_count": 52, "context_length": 8192, "embedding_length": 4096,
        "feed_forward_length": [21504 if c == "-" else 0 for c in
                                _NEMOTRON_H_8B],
        "attention.head_count": 32,
        "attention.head_count_kv": [8 if c == "*" else 0 for c in
                                    _NEMOTRON_H_8B],
        "attention.key_length": 128, "attention.value_length": 128, "ssm.conv_kernel": 4, "ssm.inner_size": 8192,
        "ssm.state_size": 128, "ssm.time_step_rank": 128, "ssm.group_count": 8,
        "attention.layer_norm_epsilon": 1e-5}},
    "nemotron_h_moe": {"model": "Nemotron-3-Nano-30B-A3B", "n_vocab": 131072, "kv": {
        "block_count": 52, "context_length": 262144, "embedding_length": 2688,
        "feed_forward_length": [1856 if c == "E" else 0 for c in
                                _NEMOTRON_3_NANO],
        "attention.head_count": 32,
        "attention.head_count_kv": [2 if c == "*" else 0 for c in
                                    _NEMOTRON_3_NANO],
        "attention.key_length": 128, "attention.value_length": 128, "ssm.conv_kernel": 4, "ssm.inner_size": 4096,
        "ssm.state_size": 128, "ssm.time_step_rank": 64, "ssm.group_count": 8, "expert_count": 128,
        "expert_used_count": 6, "expert_feed_forward_length": 1856, "expert_shared_feed_forward_length": 3712,
        "expert_shared_count": 1, "expert_weights_scale": 2.5, "expert_weights_norm": True,
        "attention.layer_norm_epsilon": 1e-5}},
    "granitehybrid": {"model": "granite-4.0-h-tiny", "n_vocab": 100352, "kv": {
        "block_count": 40, "context_length": 131072, "embedding_length": 1536, "feed_forward_length": 512,
        "attention.head_count": 12,
        "attention.head_count_kv": [4 if il in (5, 15, 25, 35) else 0 for il in range(40)],
        "ssm.conv_kernel": 4, "ssm.inner_size": 3072, "ssm.state_size": 128, "ssm.time_step_rank": 48,
        "ssm.group_count": 1, "expert_count": 64, "expert_used_count": 6,
        "expert_shared_feed_forward_length": 1024, "attention.layer_norm_rms_epsilon": 1e-5,
        "rope.freq_base": 10000.0}},
    "mamba2": {"model": "mamba2-2.7b", "n_vocab": 50288, "kv": {
        "block_count": 64, "context_length": 1048576, "embedding_length": 2560, "feed_forward_length": 0,
        "attention.head_count": 0, "ssm.conv_kernel": 4, "ssm.inner_size": 5120, "ssm.state_size": 128,
        "ssm.time_step_rank": 80, "ssm.group_count": 1, "attention.layer_norm_rms_epsilon": 1e-5}},
}


#: Architectures llama.cpp knows but LayerFit has not verified: they must warn until the referee checks them.
UNVERIFIED: dict[str, dict[str, Any]] = {
    "olmoe": {"model": "OLMoE-1B-7B", "n_vocab": 50304, "kv": {
        "block_count": 16, "context_length": 4096, "embedding_length": 2048, "feed_forward_length": 1024,
        "attention.head_count": 16, "attention.head_count_kv": 16, "expert_count": 64, "expert_used_count": 8,
        "attention.layer_norm_rms_epsilon": 1e-5, "rope.freq_base": 10000.0}},
}


def _config(arch: str) -> dict[str, Any]:
    return ARCHS[arch] if arch in ARCHS else UNVERIFIED[arch]


def _add_kv(w: GGUFWriter, key: str, v: Any) -> None:
    if isinstance(v, bool):
        w.add_bool(key, v)
    elif isinstance(v, int):
        w.add_uint32(key, v)
    elif isinstance(v, float):
        w.add_float32(key, v)
    elif isinstance(v, str):
        w.add_string(key, v)
    elif isinstance(v, list):
        w.add_array(key, v)
    else:
        raise TypeError(key)


def _ggml_type(name: str, ne: list[int]) -> str:
    """A realistic type: norms, biases, SSM and conv tensors in F32; matrices Q8_0 (Q4_K where rows allow)."""
    if len(ne) == 1 or any(s in name for s in ("norm", "ssm_", "conv", "_b.", "bias", "sinks", "scale")):
        return "F32"
    if ne[0] % 256 == 0:
        return "Q4_K"
    if ne[0] % 32 == 0:
        return "Q8_0"
    return "F32"


def _nbytes(t: str, ne: list[int]) -> int:
    block, size = GGML_QUANT_SIZES[Q[t]]
    n = int(np.prod(ne))
    return n // block * size


def write_gguf(path: str | Path, arch: str, kv: dict[str, Any], n_vocab: int,
               tensors: list[tuple[str, list[int]]]) -> Path:
    """Header, tokenizer and tensor infos; then truncate() to the full size (a sparse file)."""
    w = GGUFWriter(str(path), arch)
    w.add_name(f"{arch}-synthetic")
    for k, v in kv.items():
        _add_kv(w, k if k.startswith(("general.", "tokenizer.")) else f"{arch}.{k}", v)
    w.add_file_type(15)  # MOSTLY_Q4_K_M
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["<|endoftext|>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256 \
        + [TokenType.CONTROL]
    toks += [f"\u2581w{i}" for i in range(n_vocab - len(toks))]
    types += [TokenType.NORMAL] * (n_vocab - len(types))
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    total = 0
    for name, ne in tensors:
        t = _ggml_type(name, ne)
        nb = _nbytes(t, ne)
        w.add_tensor_info(name, tuple(reversed(ne)), np.dtype(np.float32), nb, raw_dtype=Q[t])
        total += GGUFWriter.ggml_pad(nb, w.data_alignment)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    assert w.fout is not None
    fout = w.fout[0]
    fout.flush()
    end = fout.tell()
    w.close()
    with open(path, "r+b") as f:
        f.truncate(GGUFWriter.ggml_pad(end, w.data_alignment) + total)
    return Path(path)


def load_specs() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SPECS.read_text())
    return data


def write_spec_model(path: str | Path, arch: str, specs: dict[str, Any] | None = None) -> Path:
    """The full-size sparse GGUF of ``arch`` from the stored spec (real vocabulary in the shapes)."""
    spec = (specs or load_specs())[arch]
    n_vocab = spec["n_vocab"]
    tensors = [(n, [n_vocab if d == _SMALL_VOCAB else d for d in ne]) for n, ne in spec["tensors"]]
    # NextN/MTP layers last: llama.cpp skips them without load_mtp, and its CPU_Mapped line counts the
    # mapped address range, so unused tensors between used ones would count (their pages are never read).
    nextn = _config(arch)["kv"].get("nextn_predict_layers", 0)
    if nextn:
        trunk = _config(arch)["kv"]["block_count"] - nextn

        def is_mtp(name: str) -> bool:
            head = name.split(".")
            return head[0] == "blk" and int(head[1]) >= trunk

        tensors = [t for t in tensors if not is_mtp(t[0])] + [t for t in tensors if is_mtp(t[0])]
    return write_gguf(path, arch, _config(arch)["kv"], n_vocab, tensors)


# --- discovery (in a child process: a llama.cpp abort must not take the caller down) ------------

_MISSING = re.compile(r"tensor '([^']+)' not found")
_SHAPE = re.compile(r"tensor '([^']+)' has wrong shape; expected ([\d ,]+), got")
_KEY = re.compile(r"key not found in model: (\S+)")


def _discover_child(arch: str, max_iter: int = 4000) -> dict[str, Any]:
    import llama_cpp as L

    lines: list[str] = []

    @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    def cb(level: int, text: bytes, ud: Any) -> None:
        lines.append(text.decode(errors="replace"))

    L.llama_log_set(cb, None)
    L.llama_backend_init()
    kv = _config(arch)["kv"]
    tensors: dict[str, list[int]] = {}
    for template, layers in SEEDS.get(arch, []):
        for il in layers:
            tensors[template.format(il)] = [32]
    nextn = kv.get("nextn_predict_layers", 0)
    if nextn:  # a file with trunk and MTP layers (mtp_only/trunk_only probes in load_arch_tensors)
        e = kv["embedding_length"]
        tensors["blk.0.attn_norm.weight"] = [e]
        tensors[f"blk.{kv['block_count'] - nextn}.nextn.eh_proj.weight"] = [2 * e, e]
    suffix_shape: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.gguf"
        for it in range(max_iter):
            write_gguf(path, arch, kv, _SMALL_VOCAB, list(tensors.items()))
            lines.clear()
            mp = L.llama_model_default_params()
            mp.n_gpu_layers = 0
            mp.no_alloc = True
            mp.load_mode = 0
            mp.use_extra_bufts = False
            model = L.llama_model_load_from_file(str(path).encode(), mp)
            text = "".join(lines)
            if model:
                L.llama_model_free(model)
                return {"ok": True, "n_vocab": _config(arch)["n_vocab"], "iterations": it,
                        "tensors": [[n, s] for n, s in tensors.items()]}
            m = _SHAPE.search(text)
            if m:
                shape = [int(x) for x in m[2].split(",")]
                tensors[m[1]] = shape
                suffix_shape[re.sub(r"^blk\.\d+\.", "", m[1])] = shape
                continue
            m = _MISSING.search(text)
            if m:
                name = m[1]
                tensors[name] = suffix_shape.get(re.sub(r"^blk\.\d+\.", "", name), [32])
                continue
            return {"ok": False, "error": text[-3000:], "iterations": it}
    return {"ok": False, "error": "too many iterations"}


def discover(arch: str, timeout: float = 900.0) -> dict[str, Any]:
    r = subprocess.run([sys.executable, __file__, "--child", arch], capture_output=True, text=True,
                       timeout=timeout)
    out = r.stdout.strip().splitlines()
    if r.returncode != 0 or not out:
        return {"ok": False, "error": f"exit {r.returncode}: {r.stderr[-2000:]}"}
    res: dict[str, Any] = json.loads(out[-1])
    return res


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        print(json.dumps(_discover_child(argv[1])))
        return 0
    if argv[:1] == ["--discover"]:
        names = argv[1:] or list(ARCHS)
        specs = json.loads(SPECS.read_text()) if SPECS.exists() else {}
        for a in names:
            res = discover(a)
            print(a, "ok" if res.get("ok") else "FAILED", res.get("iterations"),
                  "" if res.get("ok") else res.get("error", "")[-600:], flush=True)
            if res.get("ok"):
                specs[a] = {"model": _config(a)["model"], "n_vocab": res["n_vocab"], "tensors": res["tensors"]}
                SPECS.write_text(json.dumps(specs, indent=None, separators=(",", ":")) + "\n")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
