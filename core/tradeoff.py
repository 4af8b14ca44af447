"""The context-size trade-off: for each context size, what 100 % GPU would need and what the fitter does.

Pure computation (no Qt): the GUI's chart draws a ``TradeoffData``. Both series come from the fitter
(``core.fit.make_plan``), so the chart uses exactly the layer and expert placement the meter shows:

- *need*: every layer **and every expert tensor** on the GPU, with the KV cache there too. It is planned
  against an unlimited card, so no lever (fewer layers, experts in RAM, KV in RAM) can kick in and
  quietly shrink the line below the weights.
- *planned*: what the fitter picks on the chosen hardware, and where it puts the spill: ``Where``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from core.fit import Plan, make_plan
from core.gguf_info import ModelInfo
from core.hardware import Hardware
from core.loadsettings import LoadSettings

MIN_CTX = 512
_UNLIMITED = 1024**4  # 1 TiB: a card on which everything fits


class Where(StrEnum):
    """Where the fitter's plan for one context size puts what does not fit."""

    GPU = "gpu"  # everything on the GPU
    EXPERTS = "experts"  # every layer on the GPU, the MoE expert weights in RAM
    LAYERS = "layers"  # some layers on the CPU
    CPU = "cpu"  # nothing on the GPU


@dataclass(frozen=True)
class TradeoffPoint:
    ctx: int
    need_gpu: int  # bytes on the GPU with every layer and expert there
    planned_gpu: int  # bytes on the GPU with the fitter's choice
    gpu_layers: int  # the fitter's choice
    n_layers: int
    tok_s: float | None  # predicted generation speed with the fitter's choice
    where: Where = Where.GPU


@dataclass(frozen=True)
class TradeoffData:
    points: tuple[TradeoffPoint, ...]
    usable: int  # GPU bytes the plan may use
    card: str
    current_ctx: int


def context_stops(n_ctx_train: int) -> list[int]:
    """Context positions: powers of two from 512 up to the trained context (which is always the last)."""
    top = max(n_ctx_train, MIN_CTX)
    stops = []
    v = MIN_CTX
    while v < top:
        stops.append(v)
        v *= 2
    stops.append(top)
    return stops


def predicted_tok_s(plan: Plan) -> float | None:
    """Predicted decode speed for ``plan`` (core.speed, through the fitter), or None when unknown."""
    return plan.predicted_tps if plan.predicted_tps > 0 else None


def sweep_values(n_ctx_train: int, current: int) -> list[int]:
    """Context sizes to chart: the context stops up to the trained context, plus the current value."""
    vals = context_stops(max(n_ctx_train, 1024))
    if current not in vals and vals[0] <= current <= vals[-1]:
        vals.append(current)
    return sorted(vals)


def where(plan: Plan) -> Where:
    """Which lever ``plan`` pulled, in the chart's words."""
    if plan.fits_gpu:
        return Where.GPU
    if plan.gpu_layers <= 0 or not plan.use_gpu:
        return Where.CPU
    if plan.settings.experts_on_cpu and plan.gpu_layers >= plan.n_layers_total:
        return Where.EXPERTS
    return Where.LAYERS


def need_plan(model: ModelInfo, settings: LoadSettings, hardware: Hardware, headroom: int) -> Plan:
    """The plan with everything on the GPU (all layers, experts and KV cache), whatever the card."""
    everything = settings.with_(n_gpu_layers=model.n_layer + 1, experts_on_cpu=False, offload_kqv=True)
    big = hardware.with_vram(_UNLIMITED, name="any card")
    return make_plan(model, everything, big, headroom, suggest=False)


def sweep(model: ModelInfo, settings: LoadSettings, hardware: Hardware, headroom: int) -> TradeoffData:
    """Plan each context size twice: everything on the GPU (the need) and auto (what happens)."""
    points = []
    for c in sweep_values(model.n_ctx_train, settings.n_ctx):
        s = settings.with_(n_ctx=c)
        full = need_plan(model, s, hardware, headroom)
        auto = make_plan(model, s.with_(n_gpu_layers=None), hardware, headroom, suggest=False)
        points.append(TradeoffPoint(c, full.gpu.total, auto.gpu.total, auto.gpu_layers, auto.n_layers_total,
                                    predicted_tok_s(auto), where(auto)))
    gpu = hardware.gpu
    usable = max(0, (gpu.free if gpu else 0) - headroom)
    return TradeoffData(tuple(points), usable, gpu.name if gpu else "no GPU", settings.n_ctx)


def spill_point(points: Sequence[TradeoffPoint]) -> TradeoffPoint | None:
    """The first charted context where the plan is no longer 100 % GPU."""
    return next((p for p in points if p.where is not Where.GPU), None)


def spill_context(points: Sequence[TradeoffPoint]) -> int | None:
    """The context of ``spill_point``."""
    p = spill_point(points)
    return p.ctx if p is not None else None


def spill_words(p: TradeoffPoint) -> str:
    """What happens from ``p`` on, for a label: "layers spill to the CPU", "experts move to RAM"."""
    return {Where.EXPERTS: "MoE experts move to RAM", Where.CPU: "everything runs on the CPU"}.get(
        p.where, "layers spill to the CPU")
