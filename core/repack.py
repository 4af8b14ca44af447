"""The CPU_REPACK copy: which host weights llama.cpp repacks for this CPU, and how many bytes.

llama.cpp's CPU backend offers an extra buffer type, ``CPU_REPACK`` (ggml-cpu/repack.cpp), that
stores matrix weights interleaved for its SIMD kernels. A weight goes there when it stays in host
memory, is used by a matrix multiplication (``MUL_MAT`` on a 2-D weight, ``MUL_MAT_ID`` on a 3-D
expert tensor: not ``token_embd``, which is read by ``GET_ROWS``), and
``ggml_repack_get_optimal_repack_type`` finds a layout for its type on this CPU (rows a multiple of
the interleave). The copy has the weight's own size and is anonymous memory on top of the mapped
file (the file pages it was read from become plain page cache). llama-cpp-python enables it by
default (``use_extra_bufts``).

The per-CPU rules (x86 and ARM) are ``ggml_repack_get_optimal_repack_type``'s, read from the
vendored llama.cpp; the CPU's features come from ``/proc/cpuinfo`` (Linux) or the platform.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

from core.gguf_info import ModelInfo, TensorInfo


@functools.lru_cache(maxsize=1)
def cpu_features() -> frozenset[str]:
    """Lower-case feature flags: avx2, avx512f, neon, dotprod, i8mm, sve (best effort, never raises)."""
    flags: set[str] = set()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
            break
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        flags.add("neon")
        if "asimddp" in flags or platform.system() == "Darwin":
            flags.add("dotprod")
        if platform.system() == "Darwin":
            flags.add("i8mm")  # Apple M2 and later; an M1 repacks a little less (dotprod layouts)
    return frozenset(f.lower() for f in flags)


def repack_rows(ggml_type: str, features: frozenset[str]) -> int:
    """The row multiple a repack layout needs for ``ggml_type`` on a CPU with ``features`` (0 = none)."""
    avx2 = "avx2" in features
    avx512 = "avx512f" in features
    neon = "neon" in features
    i8mm = neon and "i8mm" in features
    dot = neon and "dotprod" in features
    if ggml_type == "Q4_0":
        return 8 if avx2 else 4 if (i8mm or dot) else 0
    if ggml_type == "Q4_K":
        return 8 if (avx2 or i8mm or dot) else 0
    if ggml_type == "Q2_K":
        return 8 if avx512 else 0
    if ggml_type in ("Q5_K", "Q6_K"):
        return 8 if (i8mm or dot) else 0
    if ggml_type in ("IQ4_NL", "MXFP4"):
        return 8 if avx2 else 4 if dot else 0
    if ggml_type in ("Q8_0", "Q1_0"):
        return 4 if (i8mm or dot) else 0
    return 0


def is_repacked(t: TensorInfo, features: frozenset[str]) -> bool:
    """Whether llama.cpp would put this weight in CPU_REPACK when it stays in host memory."""
    if t.name.startswith("token_embd") or len(t.shape) not in (2, 3):
        return False
    if len(t.shape) == 3 and "_exps" not in t.name:
        return False
    rows = repack_rows(t.ggml_type, features)
    return rows > 0 and t.shape[-2] % rows == 0


def repack_bytes(model: ModelInfo, host_layers: range, output_on_host: bool, experts_on_host: range = range(0),
                 features: frozenset[str] | None = None) -> int:
    """Bytes of the CPU_REPACK copy for the blocks in ``host_layers`` (plus the output layer and the
    expert tensors of ``experts_on_host`` when those stay in host memory)."""
    f = cpu_features() if features is None else features
    total = 0
    tied = not any(t.name == "output.weight" for t in model.tensors)
    for t in model.tensors:
        if t.layer is None:
            # The output matmul: output.weight, or for a tied model a duplicate of token_embd that
            # llama.cpp creates in the output layer's buffer type (TENSOR_DUPLICATED) - CPU_REPACK here.
            is_out = t.name == "output.weight" or (tied and t.name == "token_embd.weight")
            if output_on_host and is_out and len(t.shape) == 2:
                rows = repack_rows(t.ggml_type, f)
                total += t.n_bytes if rows and t.shape[-2] % rows == 0 else 0
        elif is_repacked(t, f) and (t.layer in host_layers or ("_exps" in t.name and t.layer in experts_on_host)):
            total += t.n_bytes
    return total
