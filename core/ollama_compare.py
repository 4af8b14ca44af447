"""Where Ollama really put a loaded model, beside LayerFit's plan for the same settings, and why they differ.

``/api/ps`` gives ``size`` (bytes in memory) and ``size_vram`` (of which on GPUs) and, in newer Ollama,
the ``context_length`` it allocated. It does not give a layer count, so LayerFit estimates one: the
layer count whose planned GPU total is nearest ``size_vram`` (exact at the two ends, 0 bytes = 0 layers
and everything = all layers). LayerFit's own plan for the same context then says how many layers fit,
and the fitter's context suggestion says what a shorter context buys, e.g.:
"Ollama put 0 of 65 layers on the GPU; 18 fit with 16.0 GiB free; set num_gpu 18, or num_ctx 32768 for
34 layers."

While Ollama holds a model, the GPU memory it uses is not free to NVML; the comparison plans with that
memory given back (probed free VRAM plus every loaded model's ``size_vram``), unless the caller gives
the free VRAM itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core.fit import Plan, make_plan, plan_for_layers
from core.gguf_info import ModelFileError, read_model_info
from core.hardware import Hardware
from core.ollama import OllamaModel, OllamaStore
from core.ollama_client import RunningModel
from core.units import fmt_bytes


@dataclass(frozen=True)
class Comparison:
    running: RunningModel
    model: OllamaModel | None
    plan: Plan | None  # LayerFit's plan for Ollama's context, on the same hardware
    ollama_layers: int | None  # estimated from size_vram (None when the model could not be planned)
    exact: bool  # the layer count is exact (nothing, or everything, on the GPU)
    text: str  # the gap explained in one or two sentences
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ollama": self.running.to_json(), "ollama_layers": self.ollama_layers,
                             "ollama_layers_exact": self.exact, "explanation": self.text}
        if self.model is not None:
            d["model"] = {"name": self.model.name, "path": self.model.path, "params": dict(self.model.params)}
        if self.plan is not None:
            p = self.plan
            d["layerfit"] = {"gpu_layers": p.gpu_layers, "n_layers_total": p.n_layers_total,
                             "processor": p.processor, "gpu": p.gpu.to_dict(), "host": p.host.to_dict(),
                             "settings": p.settings.to_dict(), "fits": p.fits,
                             "suggestions": [s.to_dict() for s in p.suggestions]}
        if self.problem:
            d["error"] = self.problem
        return d


def hardware_for_ps(hardware: Hardware, running: Iterable[RunningModel]) -> Hardware:
    """``hardware`` with the VRAM Ollama's loaded models hold counted as free again."""
    held = sum(r.size_vram for r in running)
    if hardware.gpu is None or held <= 0:
        return hardware
    return hardware.with_vram(min(hardware.gpu.total, hardware.gpu.free + held))


def estimate_layers(plan: Plan, size_vram: int, projector: int = 0) -> tuple[int, bool]:
    """Ollama's GPU layer count, from ``size_vram``: (layers, exact). ``projector`` is the size of a
    vision projector, which Ollama loads on the GPU with the model, so it counts in ``size_vram``."""
    total = plan.n_layers_total
    if size_vram <= 0:
        return 0, True
    m, s, hw = plan.model, plan.settings, plan.hardware
    best, best_gap = 0, None
    for k in range(total + 1):
        q = plan_for_layers(m, s.with_(n_gpu_layers=None), hw, k, plan.headroom)
        gap = abs(q.gpu.total + (projector if k else 0) - size_vram)
        if best_gap is None or gap < best_gap:
            best, best_gap = k, gap
    return best, best == total


def explain(r: RunningModel, plan: Plan, layers: int, exact: bool, projector: int = 0) -> str:
    total = plan.n_layers_total
    about = "" if exact else "about "
    gpu = plan.hardware.gpu
    free = f"{fmt_bytes(gpu.free)} free" if gpu is not None else "no GPU"
    head = (f"Ollama put {about}{layers} of {total} layers on the GPU ({r.processor}, "
            f"{fmt_bytes(r.size_vram)} of {fmt_bytes(r.size)} in VRAM) at num_ctx {plan.settings.n_ctx}")
    if projector:
        head += f" (with a {fmt_bytes(projector)} vision projector, which LayerFit's plan leaves out)"
    ctx_sugg = next((x for x in plan.suggestions if x.text.startswith("num_ctx")
                     and x.gpu_layers > plan.gpu_layers), None)
    ctx_text = (f"num_ctx {ctx_sugg.settings.n_ctx} for {ctx_sugg.gpu_layers} layers"
                + (" (100% GPU)" if ctx_sugg.gpu_layers >= total else "")) if ctx_sugg else None
    if plan.gpu_layers > layers:
        fix = f"set num_gpu {plan.gpu_layers}" + (f", or {ctx_text}" if ctx_text else "")
        return f"{head}; {plan.gpu_layers} fit with {free}; {fix}."
    if plan.gpu_layers < layers:
        return (f"{head}; LayerFit plans only {plan.gpu_layers} with {free} (it keeps "
                f"{fmt_bytes(plan.headroom)} headroom and counts the compute buffers; Ollama may be "
                f"cutting it close)" + (f"; {ctx_text} would make room" if ctx_text else "") + ".")
    same = f"{head}; LayerFit's plan agrees ({plan.gpu_layers} with {free})"
    return same + (f"; {ctx_text} would put more on the GPU." if ctx_text and layers < total else ".")


def compare(running: Iterable[RunningModel], store: OllamaStore, hardware: Hardware,
            headroom: int) -> list[Comparison]:
    """One Comparison per loaded model; a model LayerFit can't plan gets a ``problem`` line instead."""
    out: list[Comparison] = []
    for r in running:
        m = store.find(r.name)
        if m is None or not m.path:
            why = (m.problem if m is not None and m.problem else
                   f"{r.name} is not in the Ollama store LayerFit reads ({', '.join(store.dirs)})")
            out.append(Comparison(r, m, None, None, False, why, why))
            continue
        try:
            from dataclasses import replace

            info = replace(read_model_info(m.path), name=m.name)
        except ModelFileError as exc:
            out.append(Comparison(r, m, None, None, False, exc.problem, exc.problem))
            continue
        settings = m.load_settings().with_(n_gpu_layers=None)
        if r.context_length:
            settings = settings.with_(n_ctx=r.context_length)
        plan = make_plan(info, settings, hardware, headroom)
        layers, exact = estimate_layers(plan, r.size_vram, m.projector_size)
        out.append(Comparison(r, m, plan, layers, exact, explain(r, plan, layers, exact, m.projector_size)))
    return out
