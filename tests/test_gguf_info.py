"""Header reader: known answers on tiny fixtures, clear errors on broken files, and a fuzz test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from gguf_factory import LLAMA3_8B, QWEN25_32B, Shape, write_sparse_model, write_tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.gguf_info import ModelFileError, read_model_info


def test_tiny_model_facts(tmp_path: Path) -> None:
    shape = Shape(n_layer=3, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, n_vocab=300, chat_template="{{ m }}")
    m = read_model_info(write_tiny_model(tmp_path / "t.gguf", shape))
    assert (m.arch, m.n_layer, m.n_embd, m.n_head) == ("llama", 3, 64, 4)
    assert m.n_head_kv == (2, 2, 2)
    assert m.key_length == m.value_length == 16  # n_embd / n_head
    assert m.n_vocab == 300 and m.n_ff == 128
    assert m.chat_template == "{{ m }}"
    assert m.bos_token == "<s>" and m.eos_token == "</s>"
    # F32 weights: token_embd 300x64 + per layer q 64x64, k/v 32x64, o 64x64, 3 ffn 128x64, 2 norms 64,
    # output_norm 64, output 300x64 — 4 bytes each.
    per_layer = 64 * 64 * 2 + 32 * 64 * 2 + 128 * 64 * 3 + 64 * 2
    expected = (300 * 64 * 2 + 64 + 3 * per_layer) * 4
    assert sum(t.n_bytes for t in m.tensors) == expected
    assert m.n_params == expected // 4
    assert sum(t.n_bytes for t in m.tensors if t.layer == 1) == per_layer * 4
    j = m.to_json()
    assert j["n_head_kv"] == 2 and j["n_layer"] == 3 and j["n_vocab"] == 300


def test_sparse_big_model_sizes(tmp_path: Path) -> None:
    m = read_model_info(write_sparse_model(tmp_path / "l8.gguf", LLAMA3_8B))
    # Q4_K is 144 bytes per 256 weights; one block: q,o 4096^2, k,v 1024x4096, 3 ffn 14336x4096, 2 F32 norms.
    blk = (2 * 4096 * 4096 + 2 * 1024 * 4096 + 3 * 14336 * 4096) // 256 * 144 + 2 * 4096 * 4
    assert sum(t.n_bytes for t in m.tensors if t.layer == 5) == blk
    out = next(t for t in m.tensors if t.name == "output.weight")
    assert out.ggml_type == "Q6_K" and out.n_bytes == 128256 * 4096 // 256 * 210
    assert m.n_vocab == 128256 and m.n_ctx_train == 131072


def test_per_layer_kv_heads_and_swa(tmp_path: Path) -> None:
    shape = Shape(arch="gemma3", n_layer=7, n_head_kv=(1, 2, 1, 2, 1, 2, 1), head_dim=32, sliding_window=512)
    m = read_model_info(write_sparse_model(tmp_path / "g.gguf", shape))
    assert m.n_head_kv == (1, 2, 1, 2, 1, 2, 1)
    assert m.to_json()["n_head_kv"] == [1, 2, 1, 2, 1, 2, 1]
    assert m.key_length == 32 and m.sliding_window == 512
    # Gemma-3: one global layer in six (layer 5), the rest sliding-window.
    assert m.swa_layers == (True, True, True, True, True, False, True)


def test_swa_pattern_key_overrides(tmp_path: Path) -> None:
    shape = Shape(arch="gemma2", n_layer=4, sliding_window=256,
                  extra_kv={"gemma2.attention.sliding_window_pattern": [True, False, False, True]})
    m = read_model_info(write_sparse_model(tmp_path / "g.gguf", shape))
    assert m.swa_layers == (True, False, False, True)


def test_moe_counts(tmp_path: Path) -> None:
    shape = Shape(n_expert=4, n_expert_used=2, n_ff_exp=64)
    m = read_model_info(write_sparse_model(tmp_path / "moe.gguf", shape))
    assert (m.n_expert, m.n_expert_used, m.n_ff_exp) == (4, 2, 64)
    exps = [t for t in m.tensors if "_exps" in t.name]
    assert len(exps) == 3 * 4 and exps[0].shape == (4, 64, 64)


def test_big_vocab_header_is_read(tmp_path: Path) -> None:
    m = read_model_info(write_sparse_model(tmp_path / "q.gguf", QWEN25_32B))
    assert m.n_vocab == 152064 and m.n_layer == 64 and m.file_size > 17 * 1024**3


@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (b"NOPE" + b"\0" * 100, "not a GGUF"),
    (b"GGUF" + (99).to_bytes(4, "little") + b"\0" * 16, "unsupported GGUF version 99"),
    (b"GGUF" + (3).to_bytes(4, "little") + b"\0" * 3, "truncated"),
    (b"GGUF" + (3).to_bytes(4, "little") + (10**12).to_bytes(8, "little") + b"\0" * 8, "tensors"),
])
def test_broken_files(tmp_path: Path, content: bytes, words: str) -> None:
    p = tmp_path / "bad.gguf"
    p.write_bytes(content)
    with pytest.raises(ModelFileError) as exc:
        read_model_info(p)
    assert words in str(exc.value) and "bad.gguf" in str(exc.value)


def test_truncated_tensor_data(tmp_path: Path) -> None:
    p = write_tiny_model(tmp_path / "t.gguf")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ModelFileError, match="truncated"):
        read_model_info(p)


def test_huge_metadata_array(tmp_path: Path) -> None:
    p = write_tiny_model(tmp_path / "t.gguf")
    data = bytearray(p.read_bytes())
    i = data.index(b"tokenizer.ggml.tokens") + len("tokenizer.ggml.tokens") + 4 + 4  # value type, array type
    data[i:i + 8] = (2**40).to_bytes(8, "little")
    p.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="array items"):
        read_model_info(p)


def test_directory_and_missing(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="folder"):
        read_model_info(tmp_path)
    with pytest.raises(ModelFileError, match="not found"):
        read_model_info(tmp_path / "nope.gguf")


@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d = tmp_path_factory.mktemp("fuzz")
    p = write_sparse_model(d / "s.gguf", Shape(n_layer=2, n_vocab=259, n_embd=32, n_head=2, n_head_kv=1,
                                                n_ff=64))
    data = p.read_bytes()
    shutil.rmtree(d)
    return data


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_only_model_file_error(small_gguf: bytes, tmp_path: Path, data: st.DataObject) -> None:
    buf = bytearray(small_gguf)
    n_mut = data.draw(st.integers(0, 8))
    for _ in range(n_mut):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(buf))))
    if cut is not None:
        del buf[cut:]
    p = tmp_path / "f.gguf"
    p.write_bytes(bytes(buf))
    try:
        m = read_model_info(p)
    except ModelFileError as exc:
        assert str(exc)
    else:
        assert m.n_layer >= 0 and all(t.n_bytes >= 0 for t in m.tensors)
