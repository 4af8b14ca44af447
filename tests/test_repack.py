"""The CPU_REPACK copy (core.repack) against llama.cpp's own ``CPU_REPACK model buffer`` line.

A real mmap load of a sparse Llama-3.2-1B-shaped file (Q4_K matrices, Q8_0/F32 elsewhere) with
llama-cpp-python's default ``use_extra_bufts``: llama.cpp copies every repackable matrix into an
anonymous CPU_REPACK buffer. Which types qualify depends on this CPU, so the expectation is built from
the CPU's flags and the rules of ggml-cpu/repack.cpp, and checked against llama.cpp's line.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from arch_models import write_spec_model

from core.gguf_info import read_model_info
from core.loadsettings import LoadSettings
from core.memory import estimate
from core.repack import cpu_features, is_repacked, repack_rows

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from crosscheck_cpu import Probe, probe  # noqa: E402

MiB = 1024**2


def test_rules_by_cpu() -> None:
    x86 = frozenset({"avx2"})
    assert repack_rows("Q4_K", x86) == 8 and repack_rows("Q4_0", x86) == 8 and repack_rows("MXFP4", x86) == 8
    assert repack_rows("Q6_K", x86) == 0 and repack_rows("Q8_0", x86) == 0 and repack_rows("Q2_K", x86) == 0
    assert repack_rows("Q2_K", frozenset({"avx2", "avx512f"})) == 8
    arm = frozenset({"neon", "dotprod"})
    assert repack_rows("Q8_0", arm) == 4 and repack_rows("Q6_K", arm) == 8 and repack_rows("Q4_0", arm) == 4
    assert repack_rows("Q4_K", frozenset()) == 0  # an old CPU repacks nothing


def test_repack_copy_matches_llamacpp(tmp_path: Path) -> None:
    path = write_spec_model(tmp_path / "llama.gguf", "llama")
    model = read_model_info(path)
    got = probe(path, Probe(512, True), real_load=True, repack=True)
    assert got["ok"], got.get("log", "")[-2000:]
    measured = got["weights"].get("CPU_REPACK", 0.0)
    est = estimate(model, LoadSettings(n_ctx=512, flash_attn="on"), 0, has_gpu=False)
    assert est.host.repack / MiB == pytest.approx(measured, abs=0.01)
    # By hand, from the tensor list: every Q4_K matrix with rows divisible by 8. The model is tied, so
    # token_embd (read by GET_ROWS, not repacked itself) is duplicated as the output matmul, repacked.
    if "avx2" in cpu_features():
        q4k = sum(t.n_bytes for t in model.tensors if t.ggml_type == "Q4_K" and len(t.shape) == 2)
        assert measured == pytest.approx(q4k / MiB, abs=0.01) and q4k > 600 * MiB
        assert all(is_repacked(t, cpu_features()) for t in model.tensors if t.name.endswith("attn_q.weight"))
    # The plan still counts the whole mapped file (every page is read once, to repack it); llama.cpp's
    # CPU_Mapped line is the address range of the tensors that stayed in the mapping, never more.
    assert got["weights"]["CPU_Mapped"] <= est.host.weights / MiB + 0.01
    assert est.host.total == est.host.weights + est.host.kv + est.host.compute + est.host.rs + est.host.repack
