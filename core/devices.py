"""Plans over several devices: local CUDA GPUs, RPC workers and host RAM.

llama.cpp's rules, read from the vendored source (0.3.36) and checked against its buffer lines in
``tests/test_multi_device.py``:

* **Device order** (``src/llama.cpp`` ``llama_prepare_model_devices``): RPC devices first ("to
  minimize network transfers"), in the order the workers were registered, then the local GPUs in
  CUDA order. The CPU is never in this list: it holds what no device holds.
* ``split_mode`` NONE keeps only ``devices[main_gpu]``; LAYER (the default, and what LayerFit uses)
  splits whole layers; ``main_gpu`` is ignored in LAYER mode (``llama.cpp`` / ``llama.py``).
* **Layer assignment** (``src/llama-model.cpp`` ``load_tensors``): ``i_gpu_start = max(n_layer + 1 -
  n_gpu_layers, 0)``, ``act_gpu_layers = min(n_gpu_layers, n_layer + 1)``. The split points are the
  running sums of ``tensor_split`` (or, when it is all zero, of each device's *free* memory),
  normalized to 1. Layer ``il`` (the output layer is ``il = n_layer``) goes to the CPU when ``il <
  i_gpu_start``, else to device ``upper_bound(splits, (il - i_gpu_start) / act_gpu_layers)``. So the
  output layer goes to the last device that gets any layer; ``token_embd`` always stays on the CPU.
  :func:`assign_layers` is that code, in float32 like the C.
* A layer's KV cache lives on the layer's device (offload_kqv on), else in host RAM.

Per device the estimate gives weights (its blocks, plus the output layer on the last one), KV cache,
compute buffer, and for a local GPU the CUDA context (``core.memory.GpuOverhead``).

Compute buffers: ggml's scheduler gives each backend the graph pieces that run on it, plus copies
of the inputs it needs from other backends (the hidden state ``n_embd x T`` f32, the KQ mask,
positions). A device with blocks peaks at the attention or FFN stage of ``core.memory``; the device
with the output layer at the logits stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from core.gguf_info import ModelInfo
from core.hardware import GPU, Hardware
from core.loadsettings import LoadSettings
from core.memory import (
    DEFAULT_OVERHEAD,
    OP_OFFLOAD_MIN_BATCH,
    GpuOverhead,
    _layout,
    _stages,
    kv_cells,
    layer_kv_bytes,
    pad,
    resolve_flash_attn,
)
from core.rpc import WorkerInfo
from core.units import fmt_bytes

MiB = 1024**2
CPU = -1  # assign_layers' value for a layer that stays on the CPU


@dataclass(frozen=True)
class Device:
    """One device llama.cpp can put layers on. Sizes in bytes."""

    name: str  # for people: "GPU 0 (GeForce RTX 3090 24 GB)", "worker 10.0.0.5:50052"
    kind: str  # "cuda" | "rpc"
    free: int
    total: int
    headroom: int = 0  # memory to leave free on it
    llama_name: str = ""  # the name in llama.cpp's buffer lines: "CUDA0", "RPC0[10.0.0.5:50052]"
    endpoint: str | None = None  # an RPC worker's host:port
    what_if: bool = False

    @property
    def budget(self) -> int:
        return max(0, self.free - self.headroom)


@dataclass(frozen=True)
class DeviceLoad:
    """What one device (or the host) will hold."""

    name: str
    kind: str  # "cuda" | "rpc" | "host"
    layers: tuple[int, ...]  # block indices on it (the output layer is n_layer)
    weights: int = 0
    kv: int = 0
    compute: int = 0
    overhead: int = 0
    free: int = 0
    budget: int = 0
    llama_name: str = ""
    reason: str = ""

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute + self.overhead

    @property
    def fits(self) -> bool:
        return self.kind == "host" or self.total <= self.budget or not self.layers

    def layer_range(self, n_layer: int) -> str:
        """"blocks 0-11 + output", "blocks 12-29", "output", or "none"."""
        blocks = [i for i in self.layers if i < n_layer]
        parts = []
        if blocks:
            parts.append(f"blocks {blocks[0]}-{blocks[-1]}" if len(blocks) > 1 else f"block {blocks[0]}")
        if n_layer in self.layers:
            parts.append("output")
        if self.kind == "host":  # llama.cpp keeps the input layer (token_embd) on the CPU, always
            parts.insert(0, "token embeddings")
        return " + ".join(parts) or "none"

    def to_dict(self, n_layer: int) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "llama_name": self.llama_name,
                "layers": self.layer_range(n_layer), "n_layers": len(self.layers),
                "weights": self.weights, "kv": self.kv, "rs": 0, "compute": self.compute,
                "overhead": self.overhead, "total": self.total, "free": self.free, "fits": self.fits,
                "reason": self.reason}


@dataclass(frozen=True)
class DevicePlan:
    """The placement over every device, and the llama.cpp parameters that produce it."""

    model: ModelInfo
    settings: LoadSettings
    gpu_layers: int
    tensor_split: tuple[float, ...]  # one per device, in llama.cpp's device order
    devices: tuple[Device, ...]
    loads: tuple[DeviceLoad, ...]  # one per device, then the host last
    flash_attn: bool
    fits: bool
    reasons: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())  # workers left out, in words

    @property
    def host(self) -> DeviceLoad:
        return self.loads[-1]

    def to_json(self) -> list[dict[str, Any]]:
        return [ld.to_dict(self.model.n_layer) for ld in self.loads]


# --- the devices -------------------------------------------------------------------------------

def devices_for(hardware: Hardware, workers: Sequence[WorkerInfo] = (), headroom: int = 0) -> tuple[Device, ...]:
    """llama.cpp's device list: each worker's devices (RPC0, RPC1… in order), then the local GPUs.

    A worker that reports ``free == total`` is a CPU worker (llama.cpp's CPU device calls all RAM
    free) or one capped with ``--mem``: its figure is what its owner offers, so no headroom is kept.
    """
    out: list[Device] = []
    for w in workers:
        for d in w.devices:
            hr = 0 if d.free >= d.total else headroom
            label = f"worker {w.endpoint}" + (f" #{d.index}" if len(w.devices) > 1 else "")
            if w.what_if:  # planning only: nothing to connect to
                out.append(Device(f"{w.endpoint} worker", "rpc", d.free, d.total, hr, w.endpoint, None, True))
                continue
            # The buffer type name in llama.cpp's lines: "RPC<device on the worker>[host:port]".
            out.append(Device(label, "rpc", d.free, d.total, hr, f"RPC{d.index}[{w.endpoint}]", w.endpoint))
    for i, g in enumerate(hardware.gpus):
        out.append(_gpu_device(i, g, headroom))
    return tuple(out)


def _gpu_device(i: int, g: GPU, headroom: int) -> Device:
    return Device(f"GPU {i} ({g.name})", "cuda", g.free, g.total, headroom, f"CUDA{i}", what_if=g.what_if)


# --- llama.cpp's layer assignment ----------------------------------------------------------------

SPLIT_NONE, SPLIT_LAYER, SPLIT_ROW = 0, 1, 2  # llama_split_mode (include/llama.h)


def select_devices(devices: Sequence[Device], split_mode: int = SPLIT_LAYER, main_gpu: int = 0) -> tuple[Device, ...]:
    """The devices a model may use, as ``llama_prepare_model_devices`` (src/llama.cpp) keeps them.

    With ``split_mode`` NONE only ``devices[main_gpu]`` stays (a negative main_gpu keeps none: CPU
    only); an index past the list is llama.cpp's "invalid value for main_gpu" error. LAYER and ROW
    keep them all (main_gpu then only picks where ROW puts small tensors).
    """
    if split_mode != SPLIT_NONE or not devices:
        return tuple(devices)
    if main_gpu < 0:
        return ()
    if main_gpu >= len(devices):
        raise ValueError(f"main_gpu {main_gpu} is not one of the {len(devices)} device(s)")
    return (devices[main_gpu],)

def assign_layers(n_layer: int, n_gpu_layers: int, splits: Sequence[float]) -> list[int]:
    """Device index (or CPU = -1) of layers 0..n_layer (the last entry is the output layer).

    ``splits``: one weight per device (``tensor_split``, or free memory for llama.cpp's default).
    This is ``llama_model::load_tensors``' ``get_layer_buft_list``, in float32 like the C.
    """
    n_dev = len(splits)
    if n_dev == 0:
        return [CPU] * (n_layer + 1)
    cum = np.cumsum(np.asarray(splits, dtype=np.float32), dtype=np.float32)
    total = cum[-1]
    if total <= 0:
        raise ValueError("the split weights add up to zero")
    points = (cum / total).astype(np.float32)
    i_gpu_start = max(n_layer + 1 - n_gpu_layers, 0)
    act = min(n_gpu_layers, n_layer + 1)
    out = []
    for il in range(n_layer + 1):
        if il < i_gpu_start or (il - i_gpu_start) >= act:
            out.append(CPU)
            continue
        frac = np.float32(il - i_gpu_start) / np.float32(act)
        out.append(int(np.searchsorted(points, frac, side="right")))  # std::upper_bound
    return out


def counts_split(counts: Sequence[int]) -> tuple[float, ...]:
    """A tensor_split that gives each device exactly ``counts[d]`` of the offloaded layers.

    Device d gets layer j (0-based among the offloaded ones) when cum[d-1] <= j < cum[d]: the split
    points cum/total and j/total are the same float32 divisions, so there is no rounding edge.
    """
    return tuple(float(c) for c in counts)


# --- the estimate --------------------------------------------------------------------------------

def estimate_devices(model: ModelInfo, settings: LoadSettings, gpu_layers: int, devices: Sequence[Device],
                     tensor_split: Sequence[float] | None = None, *, flash_attn: bool | None = None,
                     overhead: GpuOverhead | None = None) -> tuple[tuple[DeviceLoad, ...], bool]:
    """Per-device loads (devices in order, then the host) and the resolved flash attention."""
    lay = _layout(model)
    n = model.n_layer
    has_cuda = any(d.kind == "cuda" for d in devices)
    fa = resolve_flash_attn(model, settings, has_cuda) if flash_attn is None else flash_attn
    split = list(tensor_split) if tensor_split and any(tensor_split) else [float(d.free) for d in devices]
    where = assign_layers(n, gpu_layers, split) if devices else [CPU] * (n + 1)
    kv_layers = layer_kv_bytes(model, settings)
    n_kv, n_swa = kv_cells(model, settings)
    st = _stages(model, settings, fa, n_kv, n_swa)
    T = st["tokens"]
    exps_cpu = settings.experts_on_cpu and model.n_expert > 0
    mask = n_kv * T * (2 if fa else 4)
    # What a backend that runs a slice of the layers copies in from the previous one (the hidden
    # state), plus its own copy of the KQ mask and the positions (ggml-backend.cpp, split inputs).
    inputs = model.n_embd * T * 4 + mask + T * 4
    # Pipeline parallelism (llama-context.cpp): with more than one device, every layer offloaded,
    # offload_kqv and no tensor overrides, the scheduler keeps GGML_SCHED_MAX_COPIES = 4 copies of
    # each input, never overwritten, so that consecutive micro-batches can overlap.
    # llama.cpp counts the model's devices (model.n_devices()), not the ones that got layers.
    pipeline = (len(devices) > 1 and gpu_layers > n and settings.offload_kqv and not exps_cpu)
    copies = 4 if pipeline else 1
    ov = overhead or DEFAULT_OVERHEAD
    op_offload_dev = next((i for i, d in enumerate(devices) if d.kind == "cuda"), None) \
        if T >= OP_OFFLOAD_MIN_BATCH else None

    loads: list[DeviceLoad] = []
    host_w = lay.embd_bytes + lay.other_bytes
    host_kv = 0
    host_layers: list[int] = []
    for il in range(n + 1):
        if where[il] == CPU:
            host_layers.append(il)
            if il < n:
                host_w += lay.layer_bytes[il]
                host_kv += kv_layers[il]
            else:
                host_w += lay.out_host_bytes
        elif il < n:
            if exps_cpu:
                host_w += lay.layer_exps[il]
            if not settings.offload_kqv:
                host_kv += kv_layers[il]

    for d_i, dev in enumerate(devices):
        mine = [il for il in range(n + 1) if where[il] == d_i]
        blocks = [il for il in mine if il < n]
        has_out = n in mine
        w = sum(lay.layer_bytes[il] for il in blocks) + (lay.out_bytes if has_out else 0)
        if exps_cpu:
            w -= sum(lay.layer_exps[il] for il in blocks)
        kv = sum(kv_layers[il] for il in blocks) if settings.offload_kqv else 0
        cands = []
        if has_out:
            cands.append(st["output"])
        if blocks:
            cands += [st["attention"] if settings.offload_kqv else 0, st["ffn"]]
        compute = (max(cands) + copies * inputs) if cands else 0
        if d_i == op_offload_dev:
            # ggml-backend.cpp: an op on weights in host memory goes to the first backend whose
            # offload_op accepts it (CUDA does for prompt-sized batches; RPC has none). The weight is
            # copied into that device's compute buffer while it runs (core.memory's candidates).
            compute = max(compute, *_op_offload(lay, st, kv_layers, host_blocks_of(where, n), where[n] == CPU,
                                                exps_cpu, blocks, settings.offload_kqv))
        ovh = 0
        if dev.kind == "cuda":
            g = ov.granularity
            w, kv, compute = (pad(x, g) if x else 0 for x in (w, kv, compute))
            ovh = ov.total(uses_cublas=not fa or lay.float_matmuls)
        reason = _device_reason(dev, blocks, has_out, w + kv + compute + ovh, n)
        loads.append(DeviceLoad(dev.name, dev.kind, tuple(mine), w, kv, compute, ovh, dev.free, dev.budget,
                                dev.llama_name, reason))

    # The host: token_embd's get_rows output, the stages of CPU layers, and the logits output buffer.
    host_blocks = [il for il in host_layers if il < n]
    # The graph's inputs (token ids, positions, mask) live here; under pipeline parallelism in 4 copies.
    hc = [0]
    if host_blocks:
        hc.append(max(st["attention"], st["ffn"]))
    if n in host_layers:
        hc.append(st["output"])
    if not settings.offload_kqv and any(where[il] != CPU for il in range(n)):
        hc.append(st["attention"])
    host_inputs = (copies * inputs) if any(w != CPU for w in where) else 0
    host_compute = max(hc) + model.n_embd * T * 4 + host_inputs + model.n_vocab * 4
    loads.append(DeviceLoad("RAM", "host", tuple(host_layers), host_w, host_kv, host_compute, 0, 0, 0, "CPU",
                            "token embeddings" + (f", {len(host_blocks)} block(s)" if host_blocks else "")
                            + (", output layer" if n in host_layers else "")))
    return tuple(loads), fa


def host_blocks_of(where: Sequence[int], n: int) -> list[int]:
    return [il for il in range(n) if where[il] == CPU]


def _op_offload(lay: Any, st: dict[str, int], kv_layers: Sequence[int], cpu_blocks: list[int], out_on_cpu: bool,
                exps_cpu: bool, dev_blocks: list[int], offload_kqv: bool) -> list[int]:
    """Compute-buffer peaks of the ops a CUDA device runs for weights kept in host memory (the same
    candidates as ``core.memory.estimate`` for one GPU, checked there against H100 buffer logs)."""
    out = [0]
    if offload_kqv and cpu_blocks:
        out.append(st["attention"] + max(kv_layers[i] for i in cpu_blocks))
    if out_on_cpu:
        out.append(lay.out_mm + st["output"])
    if cpu_blocks:
        out.append(max(lay.layer_max_mm[i] for i in cpu_blocks) + st["ffn"])
        out.append(max(lay.layer_max_exps[i] for i in cpu_blocks) + st["ffn"])
    if exps_cpu and dev_blocks:
        out.append(max(lay.layer_max_exps[i] for i in dev_blocks) + st["ffn"])
    return out


def _device_reason(dev: Device, blocks: list[int], has_out: bool, total: int, n: int) -> str:
    what = f"{len(blocks)} block(s)" + (" and the output layer" if has_out else "")
    if not blocks and not has_out:
        return f"{dev.name}: no layers"
    verdict = "fits" if total <= dev.budget else "does NOT fit"
    return (f"{dev.name}: {what}, {fmt_bytes(total)} of {fmt_bytes(dev.budget)} usable "
            f"({fmt_bytes(dev.free)} free - {fmt_bytes(dev.headroom)} headroom): {verdict}")


# --- the fitter ----------------------------------------------------------------------------------

def _proportional(n_units: int, budgets: Sequence[int]) -> list[int]:
    total = sum(budgets)
    if total <= 0:
        return [0] * len(budgets)
    raw = [n_units * b / total for b in budgets]
    counts = [int(x) for x in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)[: n_units - sum(counts)]:
        counts[i] += 1
    return counts


def _greedy(model: ModelInfo, settings: LoadSettings, k: int, devices: Sequence[Device], fa: bool,
            overhead: GpuOverhead | None) -> list[int]:
    """Fill devices in order, each with as many of the k offloaded layers as fit its budget."""
    counts = [0] * len(devices)
    left = k
    for d in range(len(devices)):
        if d == len(devices) - 1:
            counts[d] = left
            break
        def fits(c: int, d: int = d, left: int = left) -> bool:
            trial = counts[:d] + [c] + [0] * (len(devices) - d - 1)
            trial[-1] += left - c
            loads, _ = estimate_devices(model, settings, k, devices, counts_split(trial) if any(trial) else None,
                                        flash_attn=fa, overhead=overhead)
            return loads[d].fits

        lo, hi = 0, left  # the most layers device d takes and still fits (binary search)
        if fits(hi):
            lo = hi
        else:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if fits(mid):
                    lo = mid
                else:
                    hi = mid
        best = lo
        counts[d] = best
        left -= best
    return counts


def fit_devices(model: ModelInfo, settings: LoadSettings, devices: Sequence[Device], *, ram: int = 0,
                overhead: GpuOverhead | None = None, problems: Sequence[str] = ()) -> DevicePlan:
    """Choose n_gpu_layers and tensor_split for these devices, with the reason per device.

    ``settings.n_gpu_layers`` pins the layer count (None: the most that fit). Levers, in DESIGN.md's
    order, when not every layer fits: fewer layers; MoE experts in RAM; KV cache in RAM (a later lever
    is taken only when it gets every layer onto the devices). The context
    is never changed. The split starts proportional to each device's usable memory (llama.cpp's own
    default divides by free memory); when that overfills a device, devices are filled in order.
    """
    n = model.n_layer
    devs = tuple(devices)
    has_cuda = any(d.kind == "cuda" for d in devs)
    fa = resolve_flash_attn(model, settings, has_cuda)
    candidates = [settings]
    if model.n_expert and not settings.experts_on_cpu:
        candidates.append(settings.with_(experts_on_cpu=True))
    if settings.offload_kqv:
        candidates.append(candidates[-1].with_(offload_kqv=False))
    pinned = settings.n_gpu_layers
    best: DevicePlan | None = None
    for s in candidates:
        if pinned is not None or not devs:
            plan = _try(model, s, min(pinned or 0, n + 1) if devs else 0, devs, fa, overhead, ram)
        else:
            plan = _most_layers(model, s, devs, fa, overhead, ram)
        # A later lever (experts in RAM, KV in RAM) wins only when it gets every layer onto the
        # devices, or when nothing fitted before: each costs speed, so fewer layers is tried first.
        if best is None or (plan.fits and (not best.fits or plan.gpu_layers == n + 1 > best.gpu_layers)):
            best = plan
        if best is not None and best.fits and best.gpu_layers == n + 1:
            break
    assert best is not None
    return replace(best, reasons=_reasons(best, settings), problems=tuple(problems))


def _most_layers(model: ModelInfo, s: LoadSettings, devs: tuple[Device, ...], fa: bool,
                 overhead: GpuOverhead | None, ram: int) -> DevicePlan:
    """The plan with the most offloaded layers that fits (memory grows with the layer count, so a
    binary search; a live slider re-plans on every move)."""
    n = model.n_layer
    top = _try(model, s, n + 1, devs, fa, overhead, ram)
    if top.fits:
        return top
    lo, hi = 0, n + 1  # lo fits (or is 0), hi does not
    best = _try(model, s, 0, devs, fa, overhead, ram)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        p = _try(model, s, mid, devs, fa, overhead, ram)
        if p.fits:
            lo, best = mid, p
        else:
            hi = mid
    return best


def _try(model: ModelInfo, s: LoadSettings, k: int, devs: tuple[Device, ...], fa: bool,
         overhead: GpuOverhead | None, ram: int) -> DevicePlan:
    if not devs or k == 0:
        loads, _ = estimate_devices(model, s, 0, devs, None, flash_attn=fa, overhead=overhead)
        return DevicePlan(model, s, 0, tuple(0.0 for _ in devs), devs, loads, fa, _ram_ok(loads, ram))
    counts = _proportional(min(k, model.n_layer + 1), [d.budget for d in devs])
    if sum(counts) == 0:
        counts = [0] * (len(devs) - 1) + [min(k, model.n_layer + 1)]
    loads, _ = estimate_devices(model, s, k, devs, counts_split(counts), flash_attn=fa, overhead=overhead)
    if not all(ld.fits for ld in loads):
        counts = _greedy(model, s, min(k, model.n_layer + 1), devs, fa, overhead)
        loads, _ = estimate_devices(model, s, k, devs, counts_split(counts), flash_attn=fa, overhead=overhead)
    ok = all(ld.fits for ld in loads) and _ram_ok(loads, ram)
    return DevicePlan(model, s, k, counts_split(counts), devs, loads, fa, ok)


def _ram_ok(loads: Sequence[DeviceLoad], ram: int) -> bool:
    return ram <= 0 or loads[-1].total <= ram


def _reasons(p: DevicePlan, requested: LoadSettings) -> tuple[str, ...]:
    n = p.model.n_layer
    out = []
    if not p.devices:
        out.append("no GPU and no worker: everything runs on this machine's CPU")
    elif p.gpu_layers >= n + 1:
        out.append(f"all {n + 1} layers (blocks and output) are on the devices; token embeddings stay in RAM")
    else:
        out.append(f"{p.gpu_layers} of {n + 1} layers are on the devices: more would not fit "
                   f"(the first {n + 1 - p.gpu_layers} stay on this machine's CPU)")
    if p.settings.experts_on_cpu and not requested.experts_on_cpu:
        out.append("MoE expert tensors stay in RAM, so more layers fit on the devices")
    if not p.settings.offload_kqv and requested.offload_kqv:
        out.append("the KV cache stays in RAM, so more layers fit on the devices")
    out += [ld.reason for ld in p.loads[:-1]]
    if not p.fits:
        out.append("this placement does not fit: " + "; ".join(ld.name for ld in p.loads if not ld.fits)
                   or "not enough RAM")
    return tuple(out)


# --- engine glue ---------------------------------------------------------------------------------

def worker_endpoints(plan: DevicePlan) -> list[str]:
    """The plan's RPC workers, in registration order (one per worker, however many devices it has)."""
    out: list[str] = []
    for d in plan.devices:
        if d.endpoint and d.endpoint not in out:
            out.append(d.endpoint)
    return out


def device_spec(plan: DevicePlan, gpu_layers: int) -> dict[str, Any]:
    """The additions to the engine child's load spec: workers to register and the split."""
    split = list(plan.tensor_split) if any(plan.tensor_split) else []
    return {"workers": worker_endpoints(plan), "tensor_split": split, "n_gpu_layers": int(gpu_layers)}


def check_workers(plan: DevicePlan | None, timeout: float = 3.0) -> None:
    """Raise WorkerError, in words, when one of the plan's workers does not answer now."""
    from core.rpc import probe

    if plan is None:
        return
    for ep in worker_endpoints(plan):
        probe(ep, timeout)


def dead_workers(plan: DevicePlan | None, timeout: float = 2.0) -> str:
    """After the engine died: which of the plan's workers no longer answer, as a sentence ("" if none)."""
    from core.rpc import WorkerError, probe

    if plan is None:
        return ""
    gone = []
    for ep in worker_endpoints(plan):
        try:
            probe(ep, timeout)
        except WorkerError:
            gone.append(ep)
    if not gone:
        return ""
    names = ", ".join(gone)
    return (f"Worker {names} stopped answering, so the model's layers on it were lost. Load the model "
            f"again without {'it' if len(gone) == 1 else 'them'} (or restart the worker).")


def measure_devices(lines: Sequence[str], plan: DevicePlan | None,
                    workers: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Measured bytes per device from llama.cpp's buffer lines (``RPC0 model buffer size = …``).

    One entry per planned device (matched by llama.cpp's device name), then the host (every
    ``CPU*`` buffer), each with the planned numbers next to the measured ones.
    """
    from core.llama_log import is_gpu_device, parse_log

    facts = parse_log(lines)
    slot = {"model": "weights", "KV": "kv", "RS": "rs", "compute": "compute", "output": "compute"}
    per: dict[str, dict[str, int]] = {}
    for b in facts.buffers:
        key = b.device if is_gpu_device(b.device) else "CPU"
        d = per.setdefault(key, {"weights": 0, "kv": 0, "rs": 0, "compute": 0})
        # CPU_REPACK is a second, reordered copy of some CPU weights (the mapped file range still
        # spans them): reported apart as "repack", not planned here.
        kind = "repack" if b.device == "CPU_REPACK" and b.kind == "model" else slot[b.kind]
        d[kind] = d.get(kind, 0) + b.bytes
    out: list[dict[str, Any]] = []
    loads = plan.loads if plan is not None else ()
    names = {ld.llama_name for ld in loads}
    for ld in loads:
        m = per.get(ld.llama_name if ld.kind != "host" else "CPU", {"weights": 0, "kv": 0, "rs": 0, "compute": 0})
        out.append({"name": ld.name, "kind": ld.kind, "llama_name": ld.llama_name,
                    "layers": ld.layer_range(plan.model.n_layer) if plan is not None else "",
                    **m, "overhead": 0, "total": sum(m.values()), "free": ld.free,
                    "planned": {"weights": ld.weights, "kv": ld.kv, "compute": ld.compute, "total": ld.total}})
    for key, m in per.items():  # a device the plan did not expect (it should not happen)
        if key not in names and key != "CPU":
            out.append({"name": key, "kind": "other", "llama_name": key, "layers": "?", **m, "overhead": 0,
                        "total": sum(m.values()), "free": 0})
    for entry in out:  # "RPC<i>[host:port]": the worker, and its free memory as the child read it
        name = str(entry["llama_name"])
        if name.startswith("RPC") and name.endswith("]") and "[" in name:
            idx, ep = name[3:-1].split("[", 1)
            entry["endpoint"] = ep
            w = (workers or {}).get(ep)
            if w and idx.isdigit() and int(idx) < len(w.get("memory", [])):
                entry["free"] = int(w["memory"][int(idx)][0])
    return out


# --- one entry point for the CLI and the app --------------------------------------------------------

def is_multi(hardware: Hardware, workers: Sequence[str]) -> bool:
    """True when the plan needs the device list: workers, or more than one GPU."""
    return bool(workers) or len(hardware.gpus) > 1


def multi_plan(model: ModelInfo, settings: LoadSettings, hardware: Hardware, headroom: int,
               workers: Sequence[str] = (), *, infos: Sequence[WorkerInfo] | None = None,
               timeout: float = 3.0) -> tuple[Any, DevicePlan]:
    """The fitter's :class:`~core.fit.Plan` and the :class:`DevicePlan` over every device.

    Workers are probed (``infos`` skips that); one that can't be used becomes a sentence in the
    plan's reasons and the plan goes on without it. The Plan's ``gpu`` block is the sum over the
    devices and its ``host`` block is host RAM, so the single-GPU fields stay meaningful.
    """
    from core.fit import make_plan
    from core.placement import DeviceMemory, HostMemory, processor_line
    from core.rpc import probe_all

    if infos is None:
        found, problems = probe_all(workers, timeout)
    else:
        found, problems = list(infos), []
    devs = devices_for(hardware, found, headroom)
    dp = fit_devices(model, settings, devs, ram=hardware.ram_available, problems=problems)
    base = make_plan(model, dp.settings, hardware, headroom, suggest=False)
    on_dev = dp.loads[:-1]
    gpu = DeviceMemory(sum(d.weights for d in on_dev), sum(d.kv for d in on_dev), sum(d.compute for d in on_dev),
                       sum(d.overhead for d in on_dev))
    h = dp.host
    host = HostMemory(h.weights, h.kv, h.compute)
    # As the single-GPU fitter counts it: token embeddings always stay in RAM and don't make a split.
    embd = _layout(model).embd_bytes
    all_on = dp.gpu_layers >= model.n_layer + 1 and dp.settings.offload_kqv and not dp.settings.experts_on_cpu
    proc = ("100% CPU" if not dp.gpu_layers or not devs else "100% GPU" if all_on
            else processor_line(gpu.weights + gpu.kv, max(0, host.weights - embd) + host.kv))
    plan = replace(base, settings=dp.settings.with_(n_gpu_layers=settings.n_gpu_layers), gpu_layers=dp.gpu_layers,
                   gpu=gpu, host=host, processor=proc, fits_gpu=dp.gpu_layers >= model.n_layer + 1,
                   fits=dp.fits, reasons=tuple(problems) + dp.reasons, suggestions=(), flash_attn=dp.flash_attn,
                   use_gpu=True, usable_vram=sum(d.budget for d in devs))
    return plan, dp


def single_device_json(plan: Any) -> list[dict[str, Any]]:
    """``devices`` for a plan with one GPU (or none): the GPU entry, then host RAM."""
    n = plan.model.n_layer
    out = []
    gpu = plan.hardware.gpu if plan.hardware is not None else None
    k = plan.gpu_layers
    if gpu is not None and plan.use_gpu:
        blocks = max(0, min(k - 1, n))
        layers = (f"blocks {n - blocks}-{n - 1} + output" if blocks else "output") if k > 0 else "none"
        out.append({"name": f"GPU 0 ({gpu.name})", "kind": "cuda", "llama_name": "CUDA0", "layers": layers,
                    "n_layers": k, **plan.gpu.to_dict(), "rs": 0, "free": gpu.free})
    host_layers = (n + 1 - k) if k > 0 else n + 1
    out.append({"name": "RAM", "kind": "host", "llama_name": "CPU", "layers": f"{host_layers} layer(s)",
                "n_layers": host_layers, **plan.host.to_dict(), "rs": 0, "overhead": 0,
                "free": plan.hardware.ram_available if plan.hardware is not None else 0})
    return out
