"""The analytic memory model: what llama.cpp allocates on the GPU and in host RAM for one placement.

Mechanisms, not fitted constants. Every number comes from tensor shapes in the GGUF header and the
load settings; only the CUDA context and first-eval workspace are per-GPU constants (learned through
``core.calibration``). The rules below were checked against llama.cpp's buffer log lines on an H100
(``shared/data/h100_llama8b.jsonl``; see docs/benchmarks.md):

* ``n_gpu_layers = k`` puts the **output layer and the last k-1 blocks** on the GPU (llama.cpp's
  ``i_gpu_start = n_layer + 1 - k``; the output counts as layer ``n_layer``). ``k >= n_layer + 1``
  offloads everything; ``k = 0`` nothing. ``token_embd`` always stays in host memory.
* KV per layer = cells x (row(type_k, n_head_kv*k_len) + row(type_v, n_head_kv*v_len)); cells are
  n_ctx padded to 256; sliding-window layers hold ``min(cells, pad(n_swa + n_ubatch, 256))`` unless
  swa_full. A layer's KV lives with the layer unless offload_kqv is off.
* The compute buffer is the peak of the worst-case graph (n_ubatch tokens, all outputs), which the
  ggml allocator reaches at one of three stages: the output (logits ``n_vocab x T`` f32 plus the
  normed input), attention (KQ mask; without flash attention the ``n_kv x T x n_head`` f32 KQ matrix;
  Q/K/V activations), or the FFN. When weights sit in host memory, llama.cpp's op offload copies the
  biggest one into the GPU compute buffer to run a prompt-sized matmul there (that is why a CPU-only
  placement still takes ~670 MiB of VRAM for Llama-3-8B: output.weight 411 MiB + 258.5 MiB).
* Device memory rises by the CUDA context (~529 MiB on an H100) plus, on the first eval, the CUDA
  pool/workspace (~74 MiB; ~170 MiB when cuBLAS runs, i.e. without flash attention or with F16
  weights). CUDA buffers are rounded up to 2 MiB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.archs import arch_layout
from core.gguf_info import ModelInfo
from core.loadsettings import LoadSettings, requested_flash_attn
from core.placement import DeviceMemory, HostMemory
from core.repack import repack_bytes

MiB = 1024**2
KV_PAD = 256  # llama.cpp pads the KV cache size (cells) to 256
OP_OFFLOAD_MIN_BATCH = 32  # ggml-cuda offload_op: prompt-sized matmuls on host weights run on the GPU
_FA_HEAD_SIZES = {40, 64, 72, 80, 96, 112, 128, 256}  # head sizes the CUDA flash-attention kernels support
#: (K, V) head sizes with their own CUDA kernels (ggml-cuda/fattn.cu): MLA 576/512 (DeepSeek, Kimi),
#: 512/512 (Gemma-4 global layers), 192/128 and 320/256; each needs the GQA-optimised path.
_FA_HEAD_PAIRS = {(576, 512), (512, 512), (192, 128), (320, 256)}

#: ggml block sizes of the KV cache types: (elements per block, bytes per block).
_KV_BLOCKS: dict[str, tuple[int, int]] = {"f32": (1, 4), "f16": (1, 2), "bf16": (1, 2), "q8_0": (32, 34),
                                          "q4_0": (32, 18), "q4_1": (32, 20), "q5_0": (32, 22),
                                          "q5_1": (32, 24), "iq4_nl": (32, 18)}


def pad(n: int, to: int) -> int:
    """``n`` rounded up to a multiple of ``to`` (GGML_PAD)."""
    return -(-n // to) * to


def row_bytes(kv_type: str, n: int) -> int:
    """Bytes of one row of ``n`` elements of a KV-cache type (ggml_row_size)."""
    block, size = _KV_BLOCKS[kv_type]
    return -(-n // block) * size


@dataclass(frozen=True)
class GpuOverhead:
    """What device memory rises by beyond llama.cpp's buffers (per GPU model and driver).

    Defaults measured on an H100 80GB, driver 580, CUDA 13 (docs/benchmarks.md). ``correction`` is the
    learned plan-versus-measured difference from ``core.calibration`` for the probed GPU.
    """

    context: int = 529 * MiB  # CUDA context + runtime, as NVML sees it after load
    eval_workspace: int = 74 * MiB  # CUDA pool growth on the first prompt eval (MMQ kernels)
    cublas_workspace: int = 96 * MiB  # extra when cuBLAS initialises (no flash attention, F16 weights)
    granularity: int = 2 * MiB  # cudaMalloc rounds each buffer up to this
    correction: int = 0

    def total(self, uses_cublas: bool) -> int:
        return max(0, self.context + self.eval_workspace + (self.cublas_workspace if uses_cublas else 0)
                   + self.correction)


DEFAULT_OVERHEAD = GpuOverhead()


@dataclass(frozen=True)
class _Layout:
    """Per-model sums computed once (the estimate itself then costs microseconds)."""

    layer_bytes: tuple[int, ...]
    layer_exps: tuple[int, ...]
    layer_max_mm: tuple[int, ...]  # largest non-expert matmul weight per block
    layer_max_exps: tuple[int, ...]  # largest expert tensor per block
    embd_bytes: int
    out_bytes: int  # output.weight (or the tied token_embd copy) + output_norm
    out_mm: int  # the output matmul weight alone
    other_bytes: int  # non-block tensors that are neither embedding nor output
    float_matmuls: bool  # F16/BF16/F32 matrices: cuBLAS will run
    tied: bool = False  # no output.weight: the output layer reuses token_embd

    @property
    def out_host_bytes(self) -> int:
        """The output layer's bytes when it stays in host memory.

        llama.cpp duplicates a tied embedding (``TENSOR_DUPLICATED``) only into a *different*
        buffer type: on the GPU it is a real copy, but on the host the output layer lands in the same
        CPU buffer as ``token_embd`` and the loader returns the existing tensor
        (llama-model-loader.cpp ``create_tensor``). The CUDA_Host buffer type, first in the host
        list, is swapped for the mapped CPU one under mmap, so no CPU_REPACK copy either.
        """
        return self.out_bytes - (self.embd_bytes if self.tied else 0)


_layout_cache: dict[int, tuple[ModelInfo, _Layout]] = {}


def _layout(model: ModelInfo) -> _Layout:
    hit = _layout_cache.get(id(model))
    if hit is not None and hit[0] is model:
        return hit[1]
    n = model.n_layer
    trunk = arch_layout(model).n_layer_trunk
    lb, le, lm, lx = [0] * n, [0] * n, [0] * n, [0] * n
    embd = out = out_mm = other = 0
    float_mm = False
    tied = True
    for t in model.tensors:
        if t.layer is not None and trunk <= t.layer < n:
            # NextN/MTP layers: llama.cpp loads them only for a draft context (load_mtp), else it
            # logs "model has unused tensor … ignoring" and they take no memory (llama-model-loader.cpp).
            continue
        if t.layer is not None and 0 <= t.layer < n:
            i = t.layer
            lb[i] += t.n_bytes
            if "_exps" in t.name:
                le[i] += t.n_bytes
                lx[i] = max(lx[i], t.n_bytes)
            elif len(t.shape) >= 2:
                lm[i] = max(lm[i], t.n_bytes)
                if t.ggml_type in ("F16", "BF16", "F32") and "gate_inp" not in t.name:
                    float_mm = True
        elif t.name == "token_embd.weight":
            embd += t.n_bytes
        elif t.name.startswith("output"):
            out += t.n_bytes
            if t.name == "output.weight":
                tied = False
                out_mm = t.n_bytes
        else:
            other += t.n_bytes
    if tied:  # llama.cpp duplicates the tied embedding as the output layer's weight
        out += embd
        out_mm = embd
    lay = _Layout(tuple(lb), tuple(le), tuple(lm), tuple(lx), embd, out, out_mm, other, float_mm, tied)
    if len(_layout_cache) > 32:
        _layout_cache.clear()
    _layout_cache[id(model)] = (model, lay)
    return lay


def resolve_flash_attn(model: ModelInfo, settings: LoadSettings, has_gpu: bool) -> bool:
    """What llama.cpp's ``flash_attn auto`` becomes, and what on/off mean for this model.

    llama.cpp resolves auto at context creation: FA is on when every layer's device supports the
    FLASH_ATTN_EXT op. The CPU backend supports it, so CPU-only auto means on. On CUDA it is on when
    the head size has a kernel (64…256, K and V the same size). A quantized V cache needs FA, so it
    forces on.
    """
    if settings.flash_attn == "on":
        return True
    if settings.flash_attn == "off":
        return False
    if requested_flash_attn(settings.type_v, settings.flash_attn) == "on":
        return True
    if not has_gpu:
        return True
    meta = model.metadata
    pairs = {(model.key_length, model.value_length)}
    k_swa = meta.get(f"{model.arch}.attention.key_length_swa")
    v_swa = meta.get(f"{model.arch}.attention.value_length_swa")
    if isinstance(k_swa, int) and isinstance(v_swa, int):
        pairs.add((k_swa, v_swa))
    return all((k == v and k in _FA_HEAD_SIZES) or (k, v) in _FA_HEAD_PAIRS for k, v in pairs)


@dataclass(frozen=True)
class Estimate:
    """Bytes per device for one placement, with the facts behind them."""

    gpu: DeviceMemory
    host: HostMemory
    gpu_layers: int  # as passed to llama.cpp: 0..n_layer+1
    gpu_blocks: int  # repeating blocks on the GPU
    output_on_gpu: bool
    flash_attn: bool
    n_ctx_kv: int  # KV cells of a full-attention layer (n_ctx padded)
    n_swa_cells: int  # KV cells of a sliding-window layer (0 when the model has none)
    kv_total: int  # all layers, wherever they live
    weights_gpu_max: int  # every offloadable weight (what "100% GPU" needs for weights)
    detail: dict[str, Any] = field(default_factory=dict, compare=False)


def kv_cells(model: ModelInfo, settings: LoadSettings) -> tuple[int, int]:
    """(cells of a full layer, cells of a sliding-window or chunked layer) for these settings.

    ``llama_kv_cache_iswa``: the SWA cache holds ``pad(min(n_ctx, n_swa + n_ubatch), 256)`` cells
    (chunked attention, Llama-4, uses the same size with n_swa = the chunk).
    """
    full = pad(max(settings.n_ctx, 1), KV_PAD)
    lay = arch_layout(model)
    if not lay.has_swa:
        return full, 0
    if settings.swa_full:
        return full, full
    ub = min(settings.n_ubatch, settings.n_batch)
    return full, pad(min(full, lay.n_swa + ub), KV_PAD)


def layer_kv_bytes(model: ModelInfo, settings: LoadSettings, flash_attn: bool | None = None) -> tuple[int, ...]:
    """KV-cache bytes of each layer (0 for layers without a cache of their own).

    Which layers own a cache, their K/V widths (MLA: K only; SWA head sizes; V padded to the widest
    row without flash attention) come from ``core.archs``. ``flash_attn`` None resolves as on a GPU.
    """
    full, swa = kv_cells(model, settings)
    lay = arch_layout(model)
    fa = resolve_flash_attn(model, settings, True) if flash_attn is None else flash_attn
    out = []
    for il in range(model.n_layer):
        if not lay.has_kv[il]:
            out.append(0)
            continue
        kw, vw = lay.k_v_widths(il, fa)
        row = row_bytes(settings.type_k, kw) + (row_bytes(settings.type_v, vw) if vw else 0)
        cells = swa if lay.swa[il] and swa else full
        out.append(cells * row)
    return tuple(out)


def layer_rs_bytes(model: ModelInfo, settings: LoadSettings) -> tuple[int, ...]:
    """Recurrent-state bytes of each layer (``llama_memory_recurrent``: f32 conv + SSM state per sequence)."""
    lay = arch_layout(model)
    n_seq = 1  # llama-cpp-python runs one sequence (n_seq_max = 1, no rollback snapshots)
    return tuple(4 * e * n_seq for e in lay.rs_elems)


def _mask_sizes(model: ModelInfo, n_kv: int, n_swa: int) -> list[int]:
    """KV cells of each attention mask in the graph: one for full layers, one for SWA layers."""
    lay = arch_layout(model)
    swa = [lay.swa[il] for il in range(model.n_layer) if lay.has_kv[il]]
    if not swa:
        return []
    sizes = []
    if not all(swa):
        sizes.append(n_kv)
    if any(swa) and n_swa:
        sizes.append(n_swa)
    return sizes


def _stages(model: ModelInfo, settings: LoadSettings, fa: bool, n_kv: int, n_swa: int) -> dict[str, int]:
    """Peak bytes of the worst-case graph at its three candidate stages (f32 activations)."""
    T = min(settings.n_ubatch, settings.n_batch, n_kv)  # tokens in the reserve graph
    e = model.n_embd
    h = model.n_head
    hkv = max(model.n_head_kv, default=0)
    out = (model.n_vocab + e) * T * 4
    has_attn = h > 0 and hkv > 0
    attn = 0
    if has_attn:
        act = (2 * e + h * (model.key_length + model.value_length) + hkv * (model.key_length + model.value_length))
        attn = act * T * 4
        # One mask per KV cache: a sliding-window model keeps two (full and SWA) even when swa_full
        # makes them the same size (llama_kv_cache_iswa builds a mask for each).
        kv_sizes = _mask_sizes(model, n_kv, n_swa)
        elt = 2 if fa else 4  # the KQ mask is f16 with flash attention, f32 without
        attn += sum(n * T * elt for n in kv_sizes)
        if not fa:
            attn += max(kv_sizes, default=n_kv) * T * h * 4  # the KQ matrix (softmax is in place)
    if model.n_expert:
        # build_moe_ffn: gate and up [n_ff_exp, n_used, T] and their (not in-place) SwiGLU product
        # are alive at once, with the router logits/probs and the normed input; the masks stay alive
        # through the FFN. Matches llama.cpp's reserve for Mixtral-8x7B to 0.05 MiB (crosscheck_cpu.py).
        ffe = model.n_ff_exp or model.n_ff
        used = max(model.n_expert_used, 1)
        ffn = (3 * e + 2 * model.n_expert + 3 * ffe * used) * T * 4
        if has_attn and fa:
            ffn += sum(n * T * 2 for n in _mask_sizes(model, n_kv, n_swa))
    else:
        # Gate, up and their (not in-place) product [n_ff, T], the residual and the normed input, and
        # one attention-sized row (n_head x head_dim) are alive at the FFN peak; with flash attention
        # the f16 masks, graph inputs used by every layer, stay allocated until the last layer. Checked
        # against llama.cpp's CPU reserve at 262144 cells for llama, qwen3, mistral3 and exaone4 to
        # 0.01 % (tests/test_archs_llamacpp.py; the peak there moves from the logits to the FFN).
        ffn = (3 * model.n_ff + 2 * e + h * model.value_length) * T * 4
        if has_attn and fa:
            ffn += sum(n * T * 2 for n in _mask_sizes(model, n_kv, n_swa))
    return {"output": out, "attention": attn, "ffn": ffn, "tokens": T}


def estimate(model: ModelInfo, settings: LoadSettings, gpu_layers: int, *, flash_attn: bool | None = None,
             has_gpu: bool = True, overhead: GpuOverhead | None = None) -> Estimate:
    """Predict GPU and host bytes for ``gpu_layers`` (llama.cpp's n_gpu_layers) and ``settings``.

    ``gpu.total`` is the rise of NVML "used" after load and a first prompt eval. With ``has_gpu``
    False everything is on the host and the GPU side is zero.
    """
    lay = _layout(model)
    n = model.n_layer
    fa = resolve_flash_attn(model, settings, has_gpu) if flash_attn is None else flash_attn
    k = max(0, min(gpu_layers, n + 1)) if has_gpu else 0
    out_gpu = k >= 1
    blocks = min(max(k - 1, 0), n)
    first_gpu = n - blocks
    kv_layers = layer_kv_bytes(model, settings, fa)
    rs_layers = layer_rs_bytes(model, settings)
    n_kv, n_swa = kv_cells(model, settings)
    st = _stages(model, settings, fa, n_kv, n_swa)
    T = st["tokens"]
    exps_cpu = settings.experts_on_cpu and model.n_expert > 0

    w_gpu = sum(lay.layer_bytes[first_gpu:]) + (lay.out_bytes if out_gpu else 0)
    if exps_cpu:
        w_gpu -= sum(lay.layer_exps[first_gpu:])
    w_host = lay.embd_bytes + lay.other_bytes + sum(lay.layer_bytes[:first_gpu]) \
        + (0 if out_gpu else lay.out_host_bytes) + (sum(lay.layer_exps[first_gpu:]) if exps_cpu else 0)
    kv_gpu = sum(kv_layers[first_gpu:]) if settings.offload_kqv else 0
    kv_host = sum(kv_layers) - kv_gpu
    rs_gpu = sum(rs_layers[first_gpu:]) if settings.offload_kqv else 0
    rs_host = sum(rs_layers) - rs_gpu
    attn_on_gpu = blocks > 0 and settings.offload_kqv
    attn_on_cpu = blocks < n or not settings.offload_kqv
    mask = n_kv * T * (2 if fa else 4)

    if not has_gpu:
        # CPU only: the graph peak, the input embedding rows (on CUDA they sit in the pinned host
        # buffer, here in the compute buffer) and the logits output buffer.
        host_compute = max(st["output"], st["attention"], st["ffn"]) + model.n_embd * T * 4 + model.n_vocab * 4
        repack = repack_bytes(model, range(arch_layout(model).n_layer_trunk), True) if settings.use_mmap else 0
        host = HostMemory(weights=w_host + w_gpu, kv=sum(kv_layers), compute=host_compute, rs=sum(rs_layers),
                          repack=repack)
        return Estimate(DeviceMemory(), host, 0, 0, False, fa, n_kv, n_swa, sum(kv_layers),
                        sum(lay.layer_bytes) + lay.out_bytes, {"stages": st})

    # GPU compute: the stages that run there, plus op-offload copies of host weights.
    cands = []
    if out_gpu:
        cands.append(st["output"])
    if attn_on_gpu:
        cands.append(st["attention"])
    if blocks > 0:
        cands.append(st["ffn"])
    if T >= OP_OFFLOAD_MIN_BATCH:
        if settings.offload_kqv and first_gpu > 0:
            # A CPU layer's attention runs on the GPU too: its Q/K/V matmuls are op-offloaded, and the
            # scheduler's "expand gpu up" pass (ggml-backend.cpp) then assigns the attention between
            # them to the GPU, so that layer's whole K and V views are copied into the compute buffer
            # while it runs (only offload_kqv=false pins attention to the CPU, llama-graph.cpp). At
            # long context this copy, not the logits, is the peak of a partial offload.
            cands.append(st["attention"] + max(kv_layers[:first_gpu], default=0))
        if not out_gpu:
            cands.append(lay.out_mm + st["output"])
        if first_gpu > 0:
            cands.append(max(lay.layer_max_mm[:first_gpu]) + st["ffn"])
            cands.append(max(lay.layer_max_exps[:first_gpu]) + st["ffn"])
        if exps_cpu and blocks > 0:
            cands.append(max(lay.layer_max_exps[first_gpu:]) + st["ffn"])
    compute_gpu = max(cands, default=0)

    ov = overhead or DEFAULT_OVERHEAD
    g = ov.granularity
    uses_cublas = (not fa and attn_on_gpu) or (lay.float_matmuls and (blocks > 0 or T >= OP_OFFLOAD_MIN_BATCH))
    gpu = DeviceMemory(weights=pad(w_gpu, g) if w_gpu else 0, kv=pad(kv_gpu, g) if kv_gpu else 0,
                       compute=pad(compute_gpu, g) if compute_gpu else 0, overhead=ov.total(uses_cublas),
                       rs=pad(rs_gpu, g) if rs_gpu else 0)

    # Host compute (pinned CUDA_Host buffer): graph inputs, the mask, and the attention of CPU layers.
    host_compute = 2 * model.n_embd * T * 4 + mask + model.n_vocab * 4
    if not fa:
        host_compute += 2 * max(model.n_head_kv, default=0) * model.key_length * T * 4
    if attn_on_cpu and not fa:
        host_compute += st["attention"]
    repack = repack_bytes(model, range(min(first_gpu, arch_layout(model).n_layer_trunk)), not out_gpu) \
        if settings.use_mmap else 0
    host = HostMemory(weights=w_host, kv=kv_host, compute=host_compute, rs=rs_host, repack=repack)
    return Estimate(gpu, host, k, blocks, out_gpu, fa, n_kv, n_swa, sum(kv_layers),
                    sum(lay.layer_bytes) + lay.out_bytes,
                    {"stages": st, "compute_candidates": cands, "uses_cublas": uses_cublas})


def weights_offloadable(model: ModelInfo) -> int:
    """Bytes of every weight that can live on the GPU (all blocks and the output layer)."""
    lay = _layout(model)
    return sum(lay.layer_bytes) + lay.out_bytes


def cpu_buffers(model: ModelInfo, settings: LoadSettings) -> dict[str, int]:
    """The buffers llama.cpp logs for a CPU-only context: KV cache, compute buffer, output buffer.

    This is what ``benchmarks/crosscheck_cpu.py`` and ``tests/test_crosscheck_llamacpp.py`` compare
    with llama.cpp's own allocator. The CPU compute buffer is the full-offload graph peak of a GPU
    plus the input embedding rows (``n_embd x T`` f32), which on CUDA sit in the pinned host buffer.
    """
    n_kv, n_swa = kv_cells(model, settings)
    fa = resolve_flash_attn(model, settings, has_gpu=False)
    st = _stages(model, settings, fa, n_kv, n_swa)
    compute = max(st["output"], st["attention"], st["ffn"]) + model.n_embd * st["tokens"] * 4
    return {"kv": sum(layer_kv_bytes(model, settings, fa)), "rs": sum(layer_rs_bytes(model, settings)),
            "compute": compute, "output": model.n_vocab * 4, "weights": sum(t.n_bytes for t in model.tensors
                                                                        if t.layer is None or
                                                                        t.layer < arch_layout(model).n_layer_trunk)}
