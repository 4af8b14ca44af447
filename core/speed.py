"""Decode-speed prediction for partial offload: tokens per second for 0…all GPU layers.

Decoding one token reads every active weight once, plus the KV cache filled so far. Each device
reads its share at its own bandwidth, and the two run one after the other, so

    t = bytes_cpu / bw_cpu + bytes_gpu / bw_gpu + per-layer launch cost + CPU<->GPU hand-over

Only ``n_expert_used / n_expert`` of an MoE layer's expert weights are read per token. Small CPU
shares run from the CPU's last-level cache, which is why one CPU layer costs far less than its
size suggests. Defaults are calibrated on an H100 box with 16 cores (8B Q4_K, 4K context): 6.9,
15.2, 29.4, 238, 255 tok/s at 0, 16, 24, 32, 33 layers; see docs/benchmarks.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from core.calibration import cpu_timings
from core.gguf_info import ModelInfo
from core.hardware import Hardware, cpu_key
from core.loadsettings import LoadSettings
from core.memory import _layout, layer_kv_bytes
from core.speed_fit import fit

#: Effective decode bandwidth of GPUs by name fragment (bytes/s): about 60 % of the datasheet figure,
#: the share llama.cpp's matrix-vector kernels reach (an H100 reached 2.0 TB/s on a Q4_K 8B model).
GPU_BANDWIDTH: tuple[tuple[str, float], ...] = (
    ("h200", 2.9e12), ("h100", 2.0e12), ("a100", 1.2e12), ("l40", 0.54e12), ("4090", 0.6e12),
    ("3090", 0.56e12), ("4080", 0.43e12), ("3080", 0.46e12), ("4070", 0.3e12), ("3070", 0.27e12),
    ("3060", 0.22e12), ("t4", 0.19e12), ("v100", 0.54e12), ("a10", 0.37e12), ("l4", 0.18e12),
)
DEFAULT_GPU_BANDWIDTH = 0.3e12


@dataclass(frozen=True)
class SpeedModel:
    """Bandwidths and fixed costs. Every field is an input; ``for_hardware`` fills defaults."""

    cpu_bandwidth: float = 30e9  # bytes/s from DRAM (16 cores of a server CPU)
    gpu_bandwidth: float = 2.0e12
    cpu_cache: float = 128 * 1024**2  # last-level cache that holds a small CPU share
    cpu_cache_bandwidth: float = 400e9
    gpu_layer_cost: float = 55e-6  # s per GPU block per token (kernel launches, syncs)
    cpu_layer_cost: float = 20e-6  # s per CPU block per token (thread barriers)
    handover_cost: float = 100e-6  # s per token when CPU and GPU both work (copies, syncs)
    cpu_time_scale: float = 1.0  # learned on this machine: scale of the CPU's bytes-over-bandwidth term
    cpu_fixed_cost: float = 0.0  # learned: s per token that don't shrink with the model (sampling, wake-ups)

    @classmethod
    def for_hardware(cls, hardware: Hardware, *, learned: bool = True) -> SpeedModel:
        """Defaults from the CPU core count (about 2 GB/s per core, 8–80 GB/s) and the GPU's name.

        With ``learned``, the CPU side follows what CPU-only chats on this machine measured
        (core.calibration): a per-token fixed cost and a bandwidth scale fitted across models of
        different sizes (core.speed_fit), never one ratio, so a tiny model's overhead can't slow big ones.
        """
        cores = hardware.cpu_threads or os.cpu_count() or 4
        cpu_bw = min(max(2.0e9 * cores, 8e9), 80e9)
        gpu_bw = DEFAULT_GPU_BANDWIDTH
        g = hardware.gpu
        if g is not None:
            name = g.name.lower()
            for frag, bw in GPU_BANDWIDTH:
                if frag in name:
                    gpu_bw = bw
                    break
        fixed, scale = fit(cpu_timings(cpu_key())) if learned else (0.0, 1.0)
        return cls(cpu_bandwidth=cpu_bw, gpu_bandwidth=gpu_bw, cpu_time_scale=scale, cpu_fixed_cost=fixed)


def _cpu_time(m: SpeedModel, nbytes: float) -> float:
    cached = min(nbytes, m.cpu_cache)
    return cached / m.cpu_cache_bandwidth + (nbytes - cached) / m.cpu_bandwidth


def predict_tps(model: ModelInfo, settings: LoadSettings, gpu_layers: int, speed: SpeedModel | None = None,
                *, kv_fill: int | None = None) -> float:
    """Decode tokens/s with ``gpu_layers`` on the GPU (llama.cpp's n_gpu_layers semantics).

    ``kv_fill`` is how many context tokens are already in the cache (default: half of n_ctx, at most
    4096: a typical chat turn).
    """
    m = speed or SpeedModel()
    lay = _layout(model)
    n = model.n_layer
    k = max(0, min(gpu_layers, n + 1))
    blocks = min(max(k - 1, 0), n)
    first_gpu = n - blocks
    frac = (model.n_expert_used / model.n_expert) if model.n_expert else 1.0

    def active(i: int) -> float:
        return lay.layer_bytes[i] - lay.layer_exps[i] * (1.0 - frac)

    fill = kv_fill if kv_fill is not None else min(settings.n_ctx // 2, 4096)
    kv = layer_kv_bytes(model, settings)
    cells = max(settings.n_ctx, 1)
    kv_read = [b * min(fill, cells) / cells for b in kv]

    cpu = gpu = 0.0
    for i in range(n):
        on_gpu = i >= first_gpu
        w = active(i)
        if on_gpu and settings.experts_on_cpu and model.n_expert:
            e = lay.layer_exps[i] * frac
            cpu += e
            w -= e
        if on_gpu:
            gpu += w
        else:
            cpu += w
        if on_gpu and settings.offload_kqv:
            gpu += kv_read[i]
        else:
            cpu += kv_read[i]
    out = lay.out_bytes
    if k >= 1:
        gpu += out
    else:
        cpu += out
    t = m.cpu_time_scale * (_cpu_time(m, cpu) + (n - blocks) * m.cpu_layer_cost)
    if k <= n:  # the CPU works on every token: its learned per-token fixed cost applies once
        t += m.cpu_fixed_cost
    t += gpu / m.gpu_bandwidth + blocks * m.gpu_layer_cost
    if k >= 1 and (blocks < n or not settings.offload_kqv or (settings.experts_on_cpu and model.n_expert)):
        t += m.handover_cost
    return 1.0 / t if t > 0 else 0.0


def tps_curve(model: ModelInfo, settings: LoadSettings, speed: SpeedModel | None = None) -> list[float]:
    """Predicted tok/s for every layer count 0…n_layer+1 (index = gpu_layers)."""
    return [predict_tps(model, settings, k, speed) for k in range(model.n_layer + 2)]
