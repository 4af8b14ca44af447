"""The fitter: turn a model, load settings and hardware into a Plan, with reasons and suggestions.

Lever order (DESIGN.md "Fitting and fallback"): all layers on the GPU → fewer layers → MoE expert
weights in RAM → KV cache in RAM → CPU only. For each lever the fitter finds the most GPU layers that
fit free VRAM minus the headroom, then keeps the candidate with the best predicted decode speed
(``core.speed``); on a near tie the earlier lever wins. A user pin (fixed layers, experts in RAM, KV
in RAM) is honoured and the other levers work around it. The context the user asked for is never
changed: smaller contexts, a quantized KV cache or flash attention are *suggested*, each with its
effect computed by re-running the fit.

Note on layers: llama.cpp's ``n_gpu_layers = k`` offloads the output layer first and then the last
k-1 blocks (its ``i_gpu_start = n_layer + 1 - k``), as the H100 buffer logs confirm; ``gpu_layers``
here is exactly that number (0…n_layer+1).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core import referee
from core.archs import arch_layout, warning_text
from core.calibration import overhead_correction
from core.gguf_info import ModelInfo
from core.hardware import Hardware
from core.loadsettings import KV_TYPES, Lever, LoadSettings, kv_type_allowed
from core.memory import DEFAULT_OVERHEAD, Estimate, GpuOverhead, _layout, estimate, resolve_flash_attn
from core.mmproj import Projector, projector_for
from core.placement import DeviceMemory, HostMemory, processor_line
from core.speed import SpeedModel, predict_tps
from core.units import fmt_bytes

DEFAULT_HEADROOM = 768 * 1024**2
_NEAR_TIE = 0.03  # a later lever must be >3 % faster to win over an earlier one


@dataclass(frozen=True)
class Suggestion:
    """A what-if with its computed effect, ready to apply (``settings`` are complete settings)."""

    text: str  # "num_ctx 32768 → 100% GPU"
    settings: LoadSettings
    gpu_layers: int
    processor: str
    saves: int = 0  # bytes of GPU memory saved vs the current plan (may be 0)
    #: Exactly the settings the suggestion names (field, value): applying it changes these and nothing
    #: else, so Auto stays Auto. ``settings`` is the resolved result, for showing the effect.
    changes: tuple[tuple[str, Any], ...] = ()
    predicted_tps: float = 0.0  # decode tokens/s with the suggestion applied (core.speed)
    current_tps: float = 0.0  # decode tokens/s of the plan it improves on

    def apply_to(self, settings: LoadSettings) -> LoadSettings:
        """``settings`` with exactly the named changes applied."""
        return settings.with_(**dict(self.changes))

    def speed_effect(self) -> str:
        """"~4 → ~38 tok/s", or "" when a speed is unknown."""
        if self.predicted_tps <= 0 or self.current_tps <= 0:
            return ""

        def f(v: float) -> str:
            return f"{v:.1f}" if v < 10 else f"{v:.0f}"

        return f"~{f(self.current_tps)} → ~{f(self.predicted_tps)} tok/s"

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "settings": self.settings.to_dict(), "gpu_layers": self.gpu_layers,
                "processor": self.processor, "saves": self.saves, "changes": dict(self.changes),
                "predicted_tps": round(self.predicted_tps, 2)}


@dataclass(frozen=True)
class Plan:
    """Where every byte will live, and why. ``settings`` are resolved (auto → concrete)."""

    model: ModelInfo
    settings: LoadSettings
    hardware: Hardware
    headroom: int
    gpu_layers: int  # 0..n_layer+1 (the output layer counts as one)
    gpu: DeviceMemory
    host: HostMemory
    processor: str
    fits_gpu: bool  # everything offloadable is on the GPU
    fits: bool  # the plan fits VRAM (minus headroom) and RAM
    reasons: tuple[str, ...] = ()
    suggestions: tuple[Suggestion, ...] = ()
    flash_attn: bool = True  # resolved
    request_id: int = field(default=0, compare=False)
    predicted_tps: float = 0.0  # decode tokens/s (core.speed)
    use_gpu: bool = True  # False: load with no GPU at all (even the CUDA context would not fit)
    usable_vram: int = 0  # free VRAM minus headroom
    kv_total: int = 0  # KV cache of all layers, wherever it lives
    levers: tuple[str, ...] = ()  # core.loadsettings.Lever values, in the order they were pulled
    verified: bool = True  # core.archs has checked this architecture against llama.cpp (or the referee has)
    warnings: tuple[str, ...] = ()  # "not verified for <arch>: numbers may be off", shown in GUI, CLI, JSON
    checked_by_llamacpp: bool = False  # llama.cpp's no-alloc pass checked weights/KV/RS (core.referee)
    projector: Projector | None = None  # an mmproj next to the model (core.mmproj), not in the totals

    @property
    def n_layers_total(self) -> int:
        """Layer units as ``gpu_layers`` counts them: blocks plus the output layer."""
        return self.model.n_layer + 1

    def to_json(self) -> dict[str, Any]:
        """The object printed by ``layerfit plan --json`` (DESIGN.md contract)."""
        return {
            "model": {**self.model.to_json(), **_cache_facts(self.model), "verified": self.verified},
            "settings": self.settings.to_dict(),
            "gpu_layers": self.gpu_layers,
            "gpu": self.gpu.to_dict(),
            "host": self.host.to_dict(),
            "processor": self.processor,
            "fits_gpu": self.fits_gpu,
            "fits": self.fits,
            "reasons": list(self.reasons),
            "suggestions": [s.to_dict() for s in self.suggestions],
            "predicted_tps": round(self.predicted_tps, 2),
            "use_gpu": self.use_gpu,
            "usable_vram": self.usable_vram,
            "warnings": list(self.warnings),
            "checked_by_llamacpp": self.checked_by_llamacpp,
            **({"projector": self.projector.to_json(self.use_gpu and self.hardware.vram_free > 0)}
               if self.projector else {}),
        }


def _cache_facts(model: ModelInfo) -> dict[str, Any]:
    """llama.cpp's effective cache layout (core.archs): built-in and chunked windows, KV and state layers."""
    lay = arch_layout(model)
    out: dict[str, Any] = {"n_kv_layers": sum(lay.has_kv), "n_recurrent_layers": sum(1 for x in lay.rs_elems if x)}
    if lay.has_swa:
        out.update(sliding_window=lay.n_swa, n_swa_layers=sum(s and k for s, k in zip(lay.swa, lay.has_kv,
                                                                                      strict=True)),
                   chunked_attention=lay.chunked)
    return out


# --- context ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Ctx:
    model: ModelInfo
    hardware: Hardware
    headroom: int
    has_gpu: bool
    budget: int
    ram: int  # 0 = unknown
    overhead: GpuOverhead
    speed: SpeedModel


def gpu_overhead_for(hardware: Hardware) -> GpuOverhead:
    """The overhead model for the planned GPU: the learned correction applies only to a probed GPU."""
    g = hardware.gpu
    if g is None or g.what_if:
        return DEFAULT_OVERHEAD
    return replace(DEFAULT_OVERHEAD, correction=overhead_correction(g.key))  # a damaged store reads as empty


def _context(model: ModelInfo, hardware: Hardware, headroom: int) -> _Ctx:
    has_gpu = hardware.gpu is not None and hardware.vram_free > 0
    budget = max(0, hardware.vram_free - headroom) if has_gpu else 0
    return _Ctx(model, hardware, headroom, has_gpu, budget, hardware.ram_available,
                gpu_overhead_for(hardware) if has_gpu else DEFAULT_OVERHEAD, SpeedModel.for_hardware(hardware))


def _resolve(ctx: _Ctx, s: LoadSettings) -> tuple[LoadSettings, bool]:
    fa = resolve_flash_attn(ctx.model, s, ctx.has_gpu)
    s = s.with_(flash_attn="on" if fa else "off")
    if s.n_ubatch > s.n_batch:
        s = s.with_(n_ubatch=s.n_batch)
    if not ctx.model.n_expert and s.experts_on_cpu:
        s = s.with_(experts_on_cpu=False)
    return s, fa


def _est(ctx: _Ctx, s: LoadSettings, k: int, fa: bool, use_gpu: bool = True) -> Estimate:
    return estimate(ctx.model, s, k, flash_attn=fa, has_gpu=ctx.has_gpu and use_gpu, overhead=ctx.overhead)


def _gpu_ok(ctx: _Ctx, e: Estimate) -> bool:
    return e.gpu.total <= ctx.budget


def _max_layers(ctx: _Ctx, s: LoadSettings, fa: bool) -> tuple[int, Estimate] | None:
    """The most layers (1…n_layer+1) that fit, by binary search (memory grows with layers)."""
    n1 = ctx.model.n_layer + 1
    top = _est(ctx, s, n1, fa)
    if _gpu_ok(ctx, top):
        return n1, top
    lo_e = _est(ctx, s, 1, fa)
    if not _gpu_ok(ctx, lo_e):
        return None
    lo, hi = 1, n1  # lo fits, hi does not
    best = lo_e
    while hi - lo > 1:
        mid = (lo + hi) // 2
        e = _est(ctx, s, mid, fa)
        if _gpu_ok(ctx, e):
            lo, best = mid, e
        else:
            hi = mid
    return lo, best


def _processor(e: Estimate, fits_gpu: bool, lay_embd: int) -> str:
    if e.gpu_layers == 0 or e.gpu.weights == 0:
        return "100% CPU"
    if fits_gpu:
        return "100% GPU"
    host = max(0, e.host.weights - lay_embd) + e.host.kv
    return processor_line(e.gpu.weights + e.gpu.kv, host)


def _fits_gpu(ctx: _Ctx, s: LoadSettings, e: Estimate, use_gpu: bool) -> bool:
    return (use_gpu and ctx.has_gpu and e.gpu_layers == ctx.model.n_layer + 1 and s.offload_kqv
            and not (s.experts_on_cpu and ctx.model.n_expert))


def _ram_ok(ctx: _Ctx, e: Estimate) -> bool:
    return ctx.ram <= 0 or e.host.total <= ctx.ram


def _assemble(ctx: _Ctx, s: LoadSettings, fa: bool, e: Estimate, use_gpu: bool, levers: tuple[str, ...],
              reasons: tuple[str, ...] = (), suggestions: tuple[Suggestion, ...] = ()) -> Plan:
    fits_gpu = _fits_gpu(ctx, s, e, use_gpu)
    fits = (_gpu_ok(ctx, e) or not (use_gpu and ctx.has_gpu)) and _ram_ok(ctx, e)
    lay = _layout(ctx.model)
    tps = predict_tps(ctx.model, s, e.gpu_layers if use_gpu and ctx.has_gpu else 0, ctx.speed)
    warning = warning_text(ctx.model)
    return Plan(model=ctx.model, settings=s.with_(n_gpu_layers=e.gpu_layers), hardware=ctx.hardware,
                headroom=ctx.headroom, gpu_layers=e.gpu_layers, gpu=e.gpu, host=e.host,
                processor=_processor(e, fits_gpu, lay.embd_bytes), fits_gpu=fits_gpu, fits=fits,
                reasons=reasons, suggestions=suggestions, flash_attn=fa, predicted_tps=tps, use_gpu=use_gpu,
                usable_vram=ctx.budget, kv_total=e.kv_total, levers=levers, verified=warning is None,
                warnings=(warning,) if warning else ())


def _choose(ctx: _Ctx, settings: LoadSettings) -> Plan:
    """The placement without reasons or suggestions."""
    s, fa = _resolve(ctx, settings)
    m = ctx.model
    if not ctx.has_gpu:
        return _assemble(ctx, s, fa, _est(ctx, s, 0, fa, use_gpu=False), False, (Lever.CPU_ONLY,))

    # Ladder candidates, in lever order. Choices the user made (experts in RAM, KV in RAM) stay.
    # KV in RAM is a last resort: it moves attention to the CPU, which makes prompt processing and
    # long-context decoding slow, so it is only taken when no layer fits otherwise (and suggested).
    cands: list[tuple[LoadSettings, tuple[str, ...]]] = [(s, ())]
    if m.n_expert and not s.experts_on_cpu:
        cands.append((s.with_(experts_on_cpu=True), (Lever.EXPERTS_IN_RAM,)))
    late: list[tuple[LoadSettings, tuple[str, ...]]] = []
    if s.offload_kqv:
        late.append((s.with_(offload_kqv=False), (Lever.KV_IN_RAM,)))
        if m.n_expert and not s.experts_on_cpu:
            late.append((s.with_(experts_on_cpu=True, offload_kqv=False), (Lever.EXPERTS_IN_RAM, Lever.KV_IN_RAM)))

    pin = settings.n_gpu_layers
    if pin is not None:
        k = min(pin, m.n_layer + 1)
        for cs, lev in cands + late:
            e = _est(ctx, cs, k, fa)
            if _gpu_ok(ctx, e):
                return _assemble(ctx, cs, fa, e, True, lev)
        return _assemble(ctx, s, fa, _est(ctx, s, k, fa), True, ())

    first = _est(ctx, s, m.n_layer + 1, fa)
    if _gpu_ok(ctx, first):
        return _assemble(ctx, s, fa, first, True, ())
    for group in (cands, late):
        best: tuple[tuple[bool, float], Plan] | None = None
        for cs, lev in group:
            r = _max_layers(ctx, cs, fa)
            if r is None:
                continue
            k, e = r
            levers = ((Lever.FEWER_LAYERS,) if k < m.n_layer + 1 else ()) + lev
            p = _assemble(ctx, cs, fa, e, True, levers)
            score = (_ram_ok(ctx, e), p.predicted_tps)
            if best is None or (score[0] and not best[0][0]) or (
                    score[0] == best[0][0] and score[1] > best[0][1] * (1 + _NEAR_TIE)):
                best = (score, p)
        if best is not None:
            return best[1]
    e0 = _est(ctx, s, 0, fa)
    if _gpu_ok(ctx, e0):  # llama.cpp still uses the GPU for the CUDA context and big prompt matmuls
        return _assemble(ctx, s, fa, e0, True, (Lever.CPU_ONLY,))
    return _assemble(ctx, s, fa, _est(ctx, s, 0, fa, use_gpu=False), False, (Lever.CPU_ONLY, Lever.GPU_UNUSED))


# --- words -------------------------------------------------------------------------------------

def _g(n: int) -> str:
    return fmt_bytes(n)


def _reasons(ctx: _Ctx, requested: LoadSettings, p: Plan) -> tuple[str, ...]:
    m, s, hw = ctx.model, p.settings, ctx.hardware
    n1 = m.n_layer + 1
    out: list[str] = []
    if not ctx.has_gpu:
        why = hw.gpu_problem or "no GPU memory to plan for"
        out.append(f"No NVIDIA GPU: {why}. Everything runs on the CPU.")
    else:
        gpu = hw.gpu
        name = gpu.name if gpu is not None else "GPU"
        out.append(f"{_g(ctx.budget)} of GPU memory is usable on the {name} "
                   f"({_g(hw.vram_free)} free minus {_g(ctx.headroom)} headroom).")
        full = _est(ctx, s.with_(experts_on_cpu=requested.experts_on_cpu and bool(m.n_expert),
                                 offload_kqv=requested.offload_kqv), n1, p.flash_attn)
        weights = full.weights_gpu_max
        if p.fits_gpu:
            out.append(f"All {n1} layers fit on the GPU: {_g(p.gpu.total)} needed (weights {_g(p.gpu.weights)}, "
                       f"KV cache {_g(p.gpu.kv)}, compute {_g(p.gpu.compute)}, CUDA overhead {_g(p.gpu.overhead)}).")
        else:
            if requested.n_gpu_layers is not None:
                out.append(f"GPU layers are pinned to {requested.n_gpu_layers} of {n1}.")
            out.append(f"Everything on the GPU would need {_g(full.gpu.total)}; "
                       f"{p.gpu_layers} of {n1} layers are on the GPU ({_g(p.gpu.total)}).")
            if weights + full.gpu.overhead > ctx.budget:
                out.append(f"This model can't be 100% GPU on this card at any context: weights alone are "
                           f"{_g(weights)} and {_g(ctx.budget)} is usable.")
            elif full.kv_total > 0.25 * full.gpu.total:
                out.append(f"The KV cache for {s.n_ctx} tokens is {_g(full.kv_total)} ({s.type_k} K, {s.type_v} V).")
            if not p.flash_attn and full.gpu.compute > 1024**3:
                out.append(f"Flash attention is off, so the compute buffer holds the whole attention matrix: "
                           f"{_g(full.gpu.compute)}.")
        if Lever.EXPERTS_IN_RAM in p.levers:
            out.append("MoE expert weights stay in RAM (the rest of each layer is on the GPU): fewer GPU layers "
                       "would be slower.")
        if Lever.KV_IN_RAM in p.levers:
            out.append(f"The KV cache ({_g(p.kv_total)}) stays in RAM so more layers fit on the GPU.")
        if not p.use_gpu:
            out.append("Not even the CUDA context and compute buffer fit, so the GPU is left unused.")
        elif p.gpu_layers == 0:
            out.append("No layer fits on the GPU: it only runs big prompt matmuls "
                       f"({_g(p.gpu.total)} for the CUDA context and compute buffer).")
        if requested.n_gpu_layers is not None and not p.fits:
            out.append(f"The pinned {requested.n_gpu_layers} layers need {_g(p.gpu.total)}, more than is usable: "
                       "loading would likely run out of GPU memory.")
    if ctx.ram > 0 and not _ram_ok(ctx, _est(ctx, s, p.gpu_layers, p.flash_attn, p.use_gpu)):
        out.append(f"Not enough RAM: the CPU side needs {_g(p.host.total)} but {_g(ctx.ram)} is available.")
    elif not p.fits_gpu:
        out.append(f"The CPU side uses {_g(p.host.total)} of RAM ({_g(ctx.ram)} available)."
                   if ctx.ram > 0 else f"The CPU side uses {_g(p.host.total)} of RAM.")
    if m.n_ctx_train and s.n_ctx > m.n_ctx_train:
        out.append(f"num_ctx {s.n_ctx} is beyond what the model was trained for ({m.n_ctx_train}).")
    out.extend(p.warnings)  # "not verified for <arch>: numbers may be off" (core.archs)
    return tuple(out)


def _effect(p: Plan) -> str:
    where = "100% GPU" if p.fits_gpu else f"{p.gpu_layers} of {p.n_layers_total} layers on the GPU ({p.processor})"
    if not p.fits:
        return where + ", but it still does not fit (" + ("RAM is short)" if p.gpu.total <= p.usable_vram
                                                          else "GPU memory is short)")
    return where


def _better(a: Plan, b: Plan) -> bool:
    """Is ``a`` an improvement over ``b``?"""
    if a.fits_gpu != b.fits_gpu:
        return a.fits_gpu
    if a.fits != b.fits:
        return a.fits
    return a.gpu_layers > b.gpu_layers or (a.gpu_layers == b.gpu_layers and a.predicted_tps > b.predicted_tps * 1.05)


def _suggestions(ctx: _Ctx, requested: LoadSettings, p: Plan) -> tuple[Suggestion, ...]:
    if not ctx.has_gpu or (p.fits_gpu and p.fits):
        return ()
    m = ctx.model
    out: list[Suggestion] = []

    def sug(text: str, q: Plan, changes: dict[str, Any], saves: int | None = None) -> Suggestion:
        if saves is None:
            saves = max(0, p.gpu.total - q.gpu.total) if q.gpu_layers == p.gpu_layers else 0
        return Suggestion(text, q.settings, q.gpu_layers, q.processor, saves, tuple(changes.items()),
                          q.predicted_tps, p.predicted_tps)

    def trial(**changes: Any) -> tuple[Plan, dict[str, Any]]:
        return _choose(ctx, requested.with_(**changes)), changes

    # 1. The largest power-of-two context that gives 100 % GPU (never applied silently).
    powers = [c for c in (2**i for i in range(9, 21)) if c < requested.n_ctx]
    lo, hi, found = 0, len(powers) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        q = _choose(ctx, requested.with_(n_ctx=powers[mid]))
        if q.fits_gpu and q.fits:
            found, lo = q, mid + 1
        else:
            hi = mid - 1
    if found is not None:
        out.append(sug(f"num_ctx {found.settings.n_ctx} → 100% GPU", found, {"n_ctx": found.settings.n_ctx}))
    else:
        # No context gives 100 % GPU (the weights alone are too big): a shorter context still frees
        # VRAM for more layers, which is the trade-off users weigh (long context vs speed).
        for c in (32768, 8192):
            if c < requested.n_ctx:
                q, ch = trial(n_ctx=c)
                if q.gpu_layers > p.gpu_layers and _better(q, p):
                    out.append(sug(f"num_ctx {c} → {_effect(q)}", q, ch))
                break

    # 2. A quantized KV cache (needs flash attention: Auto turns it on by itself, Off must become On).
    cur = KV_TYPES.index(requested.type_k) if requested.type_k in KV_TYPES else 0
    fa_ok = resolve_flash_attn(m, requested.with_(flash_attn="auto"), True) or requested.flash_attn == "on"
    for kv in KV_TYPES[cur + 1:]:
        if not fa_ok:
            break
        kv_changes: dict[str, Any] = {"type_k": kv, "type_v": kv}
        if not kv_type_allowed(kv, requested.flash_attn):
            kv_changes["flash_attn"] = "on"
        q, ch = trial(**kv_changes)
        if _better(q, p):
            out.append(sug(f"KV cache {kv} (needs flash attention) → {_effect(q)}", q, ch))
            if q.fits_gpu:
                break

    # 3. Flash attention, when it is off.
    if not p.flash_attn and fa_ok:
        q, ch = trial(flash_attn="on")
        same = _est(ctx, p.settings.with_(flash_attn="on"), p.gpu_layers, True, p.use_gpu)
        saves = max(0, p.gpu.total - same.gpu.total)
        if saves > 64 * 1024**2 or _better(q, p):
            out.append(sug(f"flash attention on → saves {_g(saves)} ({_effect(q)})", q, ch, saves))

    # 4. Sliding-window layers with a full-size cache.
    if requested.swa_full and arch_layout(m).has_swa:
        q, ch = trial(swa_full=False)
        if _better(q, p):
            out.append(sug(f"swa_full off (window-sized cache for sliding-window layers) → {_effect(q)}", q, ch))

    # 5. The KV cache in RAM (attention on the CPU): all layers' weights can then go to the GPU.
    if requested.offload_kqv and p.settings.offload_kqv:
        q, ch = trial(offload_kqv=False)
        if _better(q, p):
            out.append(sug(f"KV cache in RAM (attention on the CPU, slower prompts) → {_effect(q)}", q, ch))

    # 6. MoE experts in RAM, when the fitter did not already pick it.
    if m.n_expert and not p.settings.experts_on_cpu:
        q, ch = trial(experts_on_cpu=True)
        if q.settings.experts_on_cpu and _better(q, p):
            out.append(sug(f"MoE expert weights in RAM → {_effect(q)}", q, ch))
    return tuple(out)


# --- public API --------------------------------------------------------------------------------

def make_plan(model: ModelInfo, settings: LoadSettings, hardware: Hardware,
              headroom: int = DEFAULT_HEADROOM, *, suggest: bool = True) -> Plan:
    """Fit ``model`` to ``hardware``: choose GPU layers (unless pinned) and levers, explain, suggest."""
    ctx = _context(model, hardware, headroom)
    p = _choose(ctx, settings)
    reasons = _reasons(ctx, settings, p)
    sugg = _suggestions(ctx, settings, p) if suggest else ()
    proj = projector_for(model.path)
    if proj is not None:
        where = "the GPU" if p.use_gpu and hardware.vram_free > 0 else "RAM"
        reasons += (f"Vision projector {Path(proj.path).name}: {fmt_bytes(proj.weights)} more in {where} when a "
                    "multimodal runner (LM Studio, llama.cpp's mtmd, Ollama) loads it, plus its image compute "
                    "buffer; LayerFit's own chat loads the text model only, so it is not in these totals.",)
    p = replace(p, reasons=reasons, suggestions=sugg, projector=proj)
    return referee.apply(p, referee.lookup(model.path, p.settings))  # llama.cpp's check, when one ran


def plan_for_layers(model: ModelInfo, settings: LoadSettings, hardware: Hardware, gpu_layers: int,
                    headroom: int = DEFAULT_HEADROOM) -> Plan:
    """The plan for a fixed layer count (a slider position), with reasons but no suggestions."""
    return make_plan(model, settings.with_(n_gpu_layers=gpu_layers), hardware, headroom, suggest=False)


def ladder_steps(plan: Plan, backoff: float = 0.1) -> list[Plan]:
    """Fallback plans after ``plan`` failed to load (out of GPU memory), each using less GPU memory.

    Each step refits with the usable VRAM shrunk by another ``backoff`` share of what ``plan`` used
    (so an under-estimate is absorbed), in lever order: fewer layers, experts in RAM, KV in RAM; the
    last step is CPU only with the GPU unused. User pins on layers are dropped: the pin just failed.
    """
    m, hw = plan.model, plan.hardware
    base = plan.settings.with_(n_gpu_layers=None)
    steps: list[Plan] = []
    seen = {(plan.gpu_layers, plan.settings.experts_on_cpu, plan.settings.offload_kqv, plan.use_gpu)}
    last_total = plan.gpu.total
    if plan.use_gpu and hw.gpu is not None and plan.gpu.total > plan.usable_vram > 0:
        # The failed plan asked for more than the card has (a pinned layer count): the first rung is
        # what the fitter picks for the free VRAM; shrinking the failed plan 10% at a time from far
        # above the card would only reach CPU-only.
        q = make_plan(m, base, hw, plan.headroom, suggest=False)
        key = (q.gpu_layers, q.settings.experts_on_cpu, q.settings.offload_kqv, q.use_gpu)
        if q.use_gpu and q.gpu_layers > 0 and key not in seen:
            seen.add(key)
            steps.append(replace(q, reasons=(f"Fallback step 1: {q.gpu_layers} of {m.n_layer + 1} layers on "
                                             f"the GPU, as the fitter places them in the free GPU memory.",)
                                 + q.reasons[1:]))
            last_total = q.gpu.total
        else:
            last_total = plan.usable_vram
    if plan.use_gpu and hw.gpu is not None and plan.gpu.total > 0:
        for i in range(1, 10):
            cap = int(last_total * (1 - backoff))
            if cap <= 0:
                break
            hw_i = hw.with_vram(cap + plan.headroom)
            q = make_plan(m, base, hw_i, plan.headroom, suggest=False)
            key = (q.gpu_layers, q.settings.experts_on_cpu, q.settings.offload_kqv, q.use_gpu)
            if key in seen or not q.use_gpu or q.gpu.total >= last_total or q.gpu_layers == 0:
                last_total = cap
                if i > 1 and q.gpu_layers == 0:
                    break
                continue
            seen.add(key)
            q = replace(q, hardware=hw, usable_vram=plan.usable_vram,
                        reasons=(f"Fallback step {len(steps) + 1}: {q.gpu_layers} of {m.n_layer + 1} layers "
                                 f"on the GPU ({', '.join(q.levers) or 'fewer layers'}), "
                                 f"{fmt_bytes(q.gpu.total)} planned.",) + q.reasons[1:])
            steps.append(q)
            last_total = q.gpu.total
    steps.append(cpu_only_plan(plan, "not used: the GPU ran out of memory",
                               "Last fallback: CPU only, the GPU is left unused."))
    return steps


def cpu_only_plan(plan: Plan, gpu_problem: str, reason: str) -> Plan:
    """``plan`` re-planned for the CPU alone (the GPU unused), with its own numbers, not the GPU plan's."""
    cpu_hw = replace(plan.hardware, gpus=(), gpu_problem=gpu_problem)
    cpu = make_plan(plan.model, plan.settings.with_(n_gpu_layers=0), cpu_hw, plan.headroom, suggest=False)
    return replace(cpu, hardware=plan.hardware, use_gpu=False, levers=(Lever.CPU_ONLY, Lever.GPU_UNUSED),
                   reasons=(reason,) + cpu.reasons[1:])


def sweep_context(model: ModelInfo, settings: LoadSettings, hardware: Hardware, headroom: int,
                  ctx_values: list[int] | tuple[int, ...]) -> list[Plan]:
    """One plan per context size (for a chart): cheap, no suggestions."""
    return [make_plan(model, settings.with_(n_ctx=c), hardware, headroom, suggest=False) for c in ctx_values]
