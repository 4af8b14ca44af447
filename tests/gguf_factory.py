"""Write GGUF files for tests with gguf-py's GGUFWriter.

Two kinds:
- ``write_tiny_model``: a complete, tiny llama-architecture model (a few layers, random F32/F16
  weights, SPM tokenizer with byte tokens <0x00>…<0xFF>) that llama.cpp really loads and runs.
- ``write_sparse_model``: real shapes of a big model (say a 32B Q4_K_M), but only the header and tensor
  infos are written; the file is then ``truncate()``d to its full size. To the parser it is a real
  40 GB file; on disk it is a few kilobytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter, TokenType
from gguf.constants import GGML_QUANT_SIZES


@dataclass(frozen=True)
class Shape:
    """Architecture shape. Types are ggml type names ("Q4_K", "F16", …)."""

    arch: str = "llama"
    n_layer: int = 4
    n_embd: int = 64
    n_head: int = 4
    n_head_kv: int | tuple[int, ...] = 2
    n_ff: int = 128
    n_vocab: int = 259
    n_ctx_train: int = 2048
    head_dim: int | None = None  # default n_embd // n_head
    weight_type: str = "F32"
    output_type: str | None = None  # None = same as weight_type
    embd_type: str | None = None  # None = same as weight_type
    tied_embeddings: bool = False
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_exp: int | None = None
    sliding_window: int = 0
    swa_pattern: int = 0  # every Nth layer is global (gemma3: 6); 0 = no SWA
    layer_types: dict[int, str] = field(default_factory=dict)  # per-layer weight type override
    name: str = "test-model"
    chat_template: str | None = None
    extra_kv: dict[str, object] = field(default_factory=dict)
    # Architecture-specific tensors (all off by default: the plain llama layout above).
    attn_bias: bool = False  # q/k/v biases (qwen2)
    qk_norm: bool = False  # attn_q_norm/attn_k_norm of head_dim (qwen3, gemma3)
    post_norms: bool = False  # attn_post_norm + ffn_post_norm (gemma2, gemma3)
    gpt_oss: bool = False  # gpt-oss layer: post-attention norm instead of ffn_norm, sinks, biases
    expert_type: str | None = None  # None = the layer's weight type (gpt-oss: "MXFP4")
    write_swa_pattern: bool = False  # write swa_pattern into the header (else llama.cpp's arch default)

    @property
    def hd(self) -> int:
        return self.head_dim or self.n_embd // self.n_head


def _nbytes(type_name: str, shape_numpy: tuple[int, ...]) -> int:
    qt = Q[type_name]
    block, type_size = GGML_QUANT_SIZES[qt]
    n = int(np.prod(shape_numpy))
    assert shape_numpy[-1] % block == 0, f"row {shape_numpy[-1]} not a multiple of block {block} for {type_name}"
    return n // block * type_size


def tensor_layout(s: Shape) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, numpy shape, ggml type) for every tensor of a llama-like model."""
    wt = s.weight_type
    et = s.embd_type or wt
    ot = s.output_type or wt
    hd = s.hd
    n_kv = s.n_head_kv if isinstance(s.n_head_kv, int) else None
    out: list[tuple[str, tuple[int, ...], str]] = [("token_embd.weight", (s.n_vocab, s.n_embd), et)]
    for i in range(s.n_layer):
        t = s.layer_types.get(i, wt)
        kv = n_kv if n_kv is not None else s.n_head_kv[i]  # type: ignore[index]
        p = f"blk.{i}."
        out += [
            (p + "attn_norm.weight", (s.n_embd,), "F32"),
            (p + "attn_q.weight", (s.n_head * hd, s.n_embd), t),
            (p + "attn_k.weight", (kv * hd, s.n_embd), t),
            (p + "attn_v.weight", (kv * hd, s.n_embd), t),
            (p + "attn_output.weight", (s.n_embd, s.n_head * hd), t),
        ]
        if s.attn_bias:
            out += [(p + "attn_q.bias", (s.n_head * hd,), "F32"), (p + "attn_k.bias", (kv * hd,), "F32"),
                    (p + "attn_v.bias", (kv * hd,), "F32")]
        if s.qk_norm:
            out += [(p + "attn_q_norm.weight", (hd,), "F32"), (p + "attn_k_norm.weight", (hd,), "F32")]
        if s.post_norms:
            out += [(p + "post_attention_norm.weight", (s.n_embd,), "F32"),
                    (p + "post_ffw_norm.weight", (s.n_embd,), "F32")]
        if s.gpt_oss:
            out += [(p + "post_attention_norm.weight", (s.n_embd,), "F32"), (p + "attn_sinks.weight", (s.n_head,), "F32"),
                    (p + "attn_output.bias", (s.n_embd,), "F32")]
        else:
            out.append((p + "ffn_norm.weight", (s.n_embd,), "F32"))
        if s.n_expert:
            ff = s.n_ff_exp or s.n_ff
            xt = s.expert_type or t
            out += [
                (p + "ffn_gate_inp.weight", (s.n_expert, s.n_embd), "F32"),
                (p + "ffn_gate_exps.weight", (s.n_expert, ff, s.n_embd), xt),
                (p + "ffn_up_exps.weight", (s.n_expert, ff, s.n_embd), xt),
                (p + "ffn_down_exps.weight", (s.n_expert, s.n_embd, ff), xt),
            ]
            if s.gpt_oss:
                out += [(p + "ffn_gate_inp.bias", (s.n_expert,), "F32"),
                        (p + "ffn_gate_exps.bias", (s.n_expert, ff), "F32"),
                        (p + "ffn_up_exps.bias", (s.n_expert, ff), "F32"),
                        (p + "ffn_down_exps.bias", (s.n_expert, s.n_embd), "F32")]
        else:
            out += [
                (p + "ffn_gate.weight", (s.n_ff, s.n_embd), t),
                (p + "ffn_up.weight", (s.n_ff, s.n_embd), t),
                (p + "ffn_down.weight", (s.n_embd, s.n_ff), t),
            ]
    out.append(("output_norm.weight", (s.n_embd,), "F32"))
    if not s.tied_embeddings:
        out.append(("output.weight", (s.n_vocab, s.n_embd), ot))
    return out


def _add_metadata(w: GGUFWriter, s: Shape) -> None:
    a = s.arch
    w.add_name(s.name)
    w.add_block_count(s.n_layer)
    w.add_context_length(s.n_ctx_train)
    w.add_embedding_length(s.n_embd)
    w.add_feed_forward_length(s.n_ff)
    w.add_head_count(s.n_head)
    if isinstance(s.n_head_kv, int):
        w.add_head_count_kv(s.n_head_kv)
    else:
        w.add_array(f"{a}.attention.head_count_kv", list(s.n_head_kv))
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    if s.head_dim:
        w.add_key_length(s.head_dim)
        w.add_value_length(s.head_dim)
    w.add_rope_dimension_count(s.hd)
    if s.n_expert:
        w.add_expert_count(s.n_expert)
        w.add_expert_used_count(s.n_expert_used or 2)
        if s.n_ff_exp:
            w.add_expert_feed_forward_length(s.n_ff_exp)
    if s.sliding_window:
        w.add_sliding_window(s.sliding_window)
        if s.write_swa_pattern and s.swa_pattern:
            w.add_uint32(f"{a}.attention.sliding_window_pattern", s.swa_pattern)
    w.add_file_type(1 if s.weight_type == "F16" else 0)
    for k, v in s.extra_kv.items():
        if isinstance(v, bool):
            w.add_bool(k, v)
        elif isinstance(v, int):
            w.add_uint32(k, v)
        elif isinstance(v, float):
            w.add_float32(k, v)
        elif isinstance(v, str):
            w.add_string(k, v)
        elif isinstance(v, list):
            w.add_array(k, v)
    _add_tokenizer(w, s.n_vocab)
    if s.chat_template:
        w.add_chat_template(s.chat_template)


def _add_tokenizer(w: GGUFWriter, n_vocab: int) -> None:
    """SPM ("llama") vocab: <unk>, <s>, </s>, 256 byte tokens, then filler word pieces."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
    i = 0
    while len(tokens) < n_vocab:
        tokens.append(f"\u2581w{i}")
        types.append(TokenType.NORMAL)
        i += 1
    tokens, types = tokens[:n_vocab], types[:n_vocab]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([-float(j) for j in range(len(tokens))])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)


def write_tiny_model(path: str | Path, shape: Shape | None = None, seed: int = 0) -> Path:
    """A complete tiny model that llama.cpp loads and runs (F32 or F16 weights)."""
    s = shape or Shape()
    assert s.n_vocab >= 259, "the SPM byte vocab needs at least 259 tokens"
    rng = np.random.default_rng(seed)
    w = GGUFWriter(str(path), s.arch)
    _add_metadata(w, s)
    for name, shp, t in tensor_layout(s):
        if name.endswith("norm.weight"):
            arr = np.ones(shp, dtype=np.float32)
        else:
            arr = (rng.standard_normal(shp) * 0.02).astype(np.float32)
        if t == "F16" and len(shp) > 1:
            arr = arr.astype(np.float16)
        elif t not in ("F32", "F16"):
            raise ValueError("write_tiny_model writes F32/F16 weights; use write_sparse_model for quant types")
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)


def write_sparse_model(path: str | Path, shape: Shape) -> Path:
    """Header + tensor infos of a full-size model, then truncate() to the real size (a sparse file)."""
    w = GGUFWriter(str(path), shape.arch)
    _add_metadata(w, shape)
    total = 0
    for name, shp, t in tensor_layout(shape):
        nb = _nbytes(t, shp)
        w.add_tensor_info(name, shp, np.dtype(np.float32), nb, raw_dtype=Q[t])
        total += GGUFWriter.ggml_pad(nb, w.data_alignment)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    assert w.fout is not None
    fout = w.fout[0]
    fout.flush()
    header_end = fout.tell()
    w.close()
    data_start = GGUFWriter.ggml_pad(header_end, w.data_alignment)
    with open(path, "r+b") as f:
        f.truncate(data_start + total)
    return Path(path)


# Shapes of real models, for planning tests (weights never read).
LLAMA3_8B = Shape(arch="llama", n_layer=32, n_embd=4096, n_head=32, n_head_kv=8, n_ff=14336, n_vocab=128256,
                  n_ctx_train=131072, weight_type="Q4_K", output_type="Q6_K", embd_type="Q4_K",
                  name="llama8b-shape-Q4_K")
QWEN25_32B = Shape(arch="qwen2", n_layer=64, n_embd=5120, n_head=40, n_head_kv=8, n_ff=27648, n_vocab=152064,
                   n_ctx_train=131072, weight_type="Q4_K", output_type="Q6_K", embd_type="Q4_K",
                   name="qwen2.5-32b-shape-Q4_K_M")

# More real shapes (for cross-checks against llama.cpp's own allocator on sparse files).
QWEN25_7B = Shape(arch="qwen2", n_layer=28, n_embd=3584, n_head=28, n_head_kv=4, n_ff=18944, n_vocab=152064,
                  n_ctx_train=131072, weight_type="Q4_K", output_type="Q6_K", embd_type="Q4_K", attn_bias=True,
                  name="qwen2.5-7b-shape-Q4_K_M")
QWEN25_7B_Q8 = Shape(arch="qwen2", n_layer=28, n_embd=3584, n_head=28, n_head_kv=4, n_ff=18944, n_vocab=152064,
                     n_ctx_train=131072, weight_type="Q8_0", attn_bias=True, name="qwen2.5-7b-shape-Q8_0")
MIXTRAL_8X7B = Shape(arch="llama", n_layer=32, n_embd=4096, n_head=32, n_head_kv=8, n_ff=14336, n_vocab=32000,
                     n_ctx_train=32768, weight_type="Q4_K", output_type="Q6_K", n_expert=8, n_expert_used=2,
                     name="mixtral-8x7b-shape-Q4_K_M")
QWEN3_30B_A3B = Shape(arch="qwen3moe", n_layer=48, n_embd=2048, n_head=32, n_head_kv=4, head_dim=128, n_ff=6144,
                      n_vocab=151936, n_ctx_train=40960, weight_type="Q4_K", output_type="Q6_K", n_expert=128,
                      n_expert_used=8, n_ff_exp=768, qk_norm=True, name="qwen3-30b-a3b-shape-Q4_K_M")
GEMMA2_9B = Shape(arch="gemma2", n_layer=42, n_embd=3584, n_head=16, n_head_kv=8, head_dim=256, n_ff=14336,
                  n_vocab=256000, n_ctx_train=8192, weight_type="Q4_K", embd_type="Q6_K", tied_embeddings=True,
                  sliding_window=4096, swa_pattern=2, post_norms=True,
                  extra_kv={"gemma2.attn_logit_softcapping": 50.0, "gemma2.final_logit_softcapping": 30.0},
                  name="gemma2-9b-shape-Q4_K_M")
GEMMA3_12B = Shape(arch="gemma3", n_layer=48, n_embd=3840, n_head=16, n_head_kv=8, head_dim=256, n_ff=15360,
                   n_vocab=262208, n_ctx_train=131072, weight_type="Q4_K", embd_type="Q6_K", tied_embeddings=True,
                   sliding_window=1024, swa_pattern=6, post_norms=True, qk_norm=True,
                   name="gemma3-12b-shape-Q4_K_M")
GEMMA3_27B = Shape(arch="gemma3", n_layer=62, n_embd=5376, n_head=32, n_head_kv=16, head_dim=128, n_ff=21504,
                   n_vocab=262208, n_ctx_train=131072, weight_type="Q4_K", embd_type="Q6_K", tied_embeddings=True,
                   sliding_window=1024, swa_pattern=6, post_norms=True, qk_norm=True,
                   name="gemma3-27b-shape-Q4_K_M")
GPT_OSS_20B = Shape(arch="gpt-oss", n_layer=24, n_embd=2880, n_head=64, n_head_kv=8, head_dim=64, n_ff=2880,
                    n_vocab=201088, n_ctx_train=131072, weight_type="Q8_0", expert_type="MXFP4", n_expert=32,
                    n_expert_used=4, n_ff_exp=2880, sliding_window=128, swa_pattern=2, gpt_oss=True,
                    name="gpt-oss-20b-shape-MXFP4")
