"""Reading llama.cpp's buffer log into a measured Placement (pure functions, no llama.cpp needed)."""

from __future__ import annotations

import pytest

from core.llama_log import (
    LEVEL_CONT,
    LEVEL_DEBUG,
    LEVEL_INFO,
    LogCapture,
    is_gpu_device,
    parse_log,
    placement_from_log,
)

MiB = 1024 * 1024

# Captured from the demo model (SmolLM2-135M Q4_1) on this CPU-only build, n_ctx 4096, flash attention on.
DEMO_CPU_LOG = """\
print_info: n_layer               = 30
done_getting_tensors: tensor 'token_embd.weight' (q8_0) (and 272 others) cannot be used with preferred buffer type CPU_REPACK, using CPU instead
load_tensors:   CPU_Mapped model buffer size =    92.10 MiB
llama_context: constructing llama_context
llama_context: n_ctx                 = 4096
llama_context: n_ctx_seq             = 4096
llama_context:        CPU  output buffer size =     0.19 MiB
llama_kv_cache:        CPU KV buffer size =    90.00 MiB
llama_kv_cache: size =   90.00 MiB (  4096 cells,  30 layers,  1/1 seqs), K (f16):   45.00 MiB, V (f16):   45.00 MiB
sched_reserve:        CPU compute buffer size =    98.25 MiB
sched_reserve: graph: nodes = 936, splits = 1, input objects = 4, input tensors = 6
""".splitlines()

# Lines in llama.cpp's format with the sizes measured on an H100 (shared/data/h100_llama8b.jsonl,
# Llama-3-8B shape, ngl 16, ctx 8192, flash attention): a partial offload.
H100_PARTIAL_LOG = """\
print_info: n_layer               = 32
load_tensors: offloading 16 repeating layers to GPU
load_tensors: offloaded 16/33 layers to GPU
load_tensors:   CPU_Mapped model buffer size =  2271.34 MiB
load_tensors:        CUDA0 model buffer size =  2166.46 MiB
llama_context:  CUDA_Host  output buffer size =     0.49 MiB
llama_kv_cache:        CPU KV buffer size =   544.00 MiB
llama_kv_cache:      CUDA0 KV buffer size =   480.00 MiB
sched_reserve:      CUDA0 compute buffer size =   258.50 MiB
sched_reserve:  CUDA_Host compute buffer size =    24.01 MiB
""".splitlines()


def test_demo_cpu_log_is_all_host_memory() -> None:
    p = placement_from_log(DEMO_CPU_LOG)
    assert p.measured is True
    assert p.processor == "100% CPU"
    assert p.gpu_layers == 0
    assert p.n_layer == 30
    assert p.gpu.total == 0
    assert p.host.weights == round(92.10 * MiB)
    assert p.host.kv == round(90.00 * MiB)
    assert p.host.compute == round(98.25 * MiB) + round(0.19 * MiB)
    assert p.nvml_delta is None


def test_demo_log_facts() -> None:
    facts = parse_log(DEMO_CPU_LOG)
    assert facts.n_ctx == 4096
    assert facts.offloaded is None  # a CPU build logs no "offloaded" line
    assert facts.buffer_dict() == {"CPU_Mapped.model": 92.10, "CPU.output": 0.19, "CPU.KV": 90.0,
                                   "CPU.compute": 98.25}
    assert facts.oom_lines == ()


def test_partial_cuda_offload_split_by_device() -> None:
    p = placement_from_log(H100_PARTIAL_LOG)
    assert p.gpu_layers == 16
    assert p.n_layer == 32
    assert p.gpu.weights == round(2166.46 * MiB)
    assert p.gpu.kv == round(480.00 * MiB)
    assert p.gpu.compute == round(258.50 * MiB)
    assert p.gpu.overhead == 0  # unknown without NVML
    assert p.host.weights == round(2271.34 * MiB)
    assert p.host.kv == round(544.00 * MiB)
    assert p.host.compute == round(24.01 * MiB) + round(0.49 * MiB)  # pinned CUDA_Host buffers are RAM
    # weights + KV: host 2815.34 MiB, GPU 2646.46 MiB → 51.55 % CPU → "52%/48% CPU/GPU"
    assert p.processor == "52%/48% CPU/GPU"


def test_nvml_delta_beyond_buffers_is_overhead() -> None:
    # NVML rose by 3436.8125 MiB for this load on the H100; the GPU buffers add up to 2904.96 MiB.
    delta = round(3436.8125 * MiB)
    p = placement_from_log(H100_PARTIAL_LOG, nvml_delta=delta, gpu_name="NVIDIA H100 80GB HBM3")
    buffers = round(2166.46 * MiB) + round(480.00 * MiB) + round(258.50 * MiB)
    assert p.gpu.overhead == delta - buffers
    assert p.gpu.total == delta
    assert p.nvml_delta == delta
    assert p.gpu_name == "NVIDIA H100 80GB HBM3"


def test_full_offload_is_100_percent_gpu_when_host_holds_no_weights_or_kv() -> None:
    lines = ["load_tensors: offloaded 33/33 layers to GPU",
             "load_tensors:        CUDA0 model buffer size =  4155.99 MiB",
             "llama_kv_cache:      CUDA0 KV buffer size =  1024.00 MiB",
             "sched_reserve:  CUDA_Host compute buffer size =    24.01 MiB"]
    p = placement_from_log(lines, n_layer=32)
    assert p.processor == "100% GPU"
    assert p.n_layer == 32  # from the argument: no print_info line here


def test_zero_layers_on_a_cuda_build_is_cpu_despite_a_gpu_compute_buffer() -> None:
    # A CUDA build reserves a GPU compute buffer even with ngl 0 (shared/data: 669.48 MiB); the model runs on CPU.
    lines = ["load_tensors: offloaded 0/33 layers to GPU",
             "load_tensors:   CPU_Mapped model buffer size =  4437.80 MiB",
             "sched_reserve:      CUDA0 compute buffer size =   669.48 MiB"]
    p = placement_from_log(lines)
    assert p.processor == "100% CPU"
    assert p.gpu.compute == round(669.48 * MiB)


@pytest.mark.parametrize(("dev", "gpu"), [("CUDA0", True), ("Vulkan1", True), ("CPU", False),
                                          ("CPU_Mapped", False), ("CPU_REPACK", False), ("CUDA_Host", False),
                                          ("BLAS", False)])
def test_device_names(dev: str, gpu: bool) -> None:
    assert is_gpu_device(dev) is gpu


def test_oom_lines_are_found() -> None:
    facts = parse_log(["ggml_backend_cuda_buffer_type_alloc_buffer: allocating 8484.01 MiB on device 0: "
                       "cudaMalloc failed: out of memory",
                       "llama_init_from_model: failed to initialize the context: failed to allocate compute buffers"])
    assert len(facts.oom_lines) == 2


def test_capture_joins_continuations_and_drops_debug() -> None:
    cap = LogCapture()
    cap.feed(LEVEL_DEBUG, "create_tensor: loading tensor blk.0.attn_q.weight\n")
    cap.feed(LEVEL_INFO, "load_tensors: loading")
    cap.feed(LEVEL_CONT, " done\n")
    cap.feed(LEVEL_INFO, "llama_kv_cache:        CPU KV buffer size =    90.00 MiB\n")
    mark = cap.mark()
    cap.feed(LEVEL_INFO, "sched_reserve:        CPU compute buffer size =    98.25 MiB\n")
    assert cap.lines_since() == ["load_tensors: loading done",
                                 "llama_kv_cache:        CPU KV buffer size =    90.00 MiB",
                                 "sched_reserve:        CPU compute buffer size =    98.25 MiB"]
    assert cap.lines_since(mark) == ["sched_reserve:        CPU compute buffer size =    98.25 MiB"]


def test_capture_drops_debug_continuations_too() -> None:
    cap = LogCapture()
    cap.feed(LEVEL_DEBUG, "llama_model_loader: - kv   0:")
    cap.feed(LEVEL_CONT, " general.architecture str = llama\n")
    cap.feed(LEVEL_INFO, "print_info: n_layer               = 30\n")
    assert cap.lines_since() == ["print_info: n_layer               = 30"]
