"""What a Modelfile export says, decided once for the CLI and the GUI: ``spec_for_plan`` and Ollama naming.

The rules (issue #13):
- ``num_gpu`` is the plan's layer count, unless the user lets Ollama decide (then it is left out).
- ``num_gpu 0`` is never written just because the machine that made the plan has no GPU: that would
  force the CPU on the user's real GPU box. With no GPU, ``num_gpu`` is left out and a note says why.
- A plan that does not fit gets a warning line.
- ``num_predict`` is written only when the user changed the reply length (Ollama leaves replies uncapped).
Every decision is also returned in words (``ExportSpec.notes``) so the dialog can say what it wrote.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from core.fit import Plan
from core.loadsettings import LoadSettings
from core.modelfile import ModelfileSpec, spec_from
from core.sampling import SamplingSettings
from core.units import fmt_bytes

#: What ``ollama create`` accepts as a model name: [namespace/]name[:tag], letters, digits, . _ -
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?(:[A-Za-z0-9][A-Za-z0-9._-]*)?$")
NAME_RULE = "Use letters, digits, “.”, “_” or “-” (and an optional “:tag”)."


def default_name(model_name: str) -> str:
    """A valid Ollama model name made from the model's name: "SmolLM2 135M Instruct" → "smollm2-135m-instruct"."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", model_name.lower()).strip("-._")
    return slug or "my-model"


def ollama_default_name(source: str) -> str:
    """A name for the tuned copy of an Ollama model: "deepseek-r1:32b" → "deepseek-r1:32b-layerfit"."""
    from core.ollama import parse_name

    n = parse_name(source)
    base = n.display if n is not None else source
    return f"{base}-layerfit" if ":" in base else f"{base}:layerfit"


def valid_name(name: str) -> bool:
    """Would ``ollama create`` accept ``name``?"""
    return bool(_NAME_RE.match(name))


@dataclass(frozen=True)
class ExportSpec:
    """The spec to write, and what was decided, in words (also written as header comments)."""

    spec: ModelfileSpec
    notes: tuple[str, ...]
    num_gpu: int | None  # what was written; None = left out (Ollama decides)
    fits: bool


def spec_for_plan(plan: Plan, sampling: SamplingSettings, *, requested: LoadSettings | None = None,
                  let_ollama_decide: bool = False, messages: Iterable[tuple[str, str]] = (),
                  num_predict_set: bool | None = None, extra_notes: Iterable[str] = ()) -> ExportSpec:
    """The Modelfile spec for ``plan`` (the selected model's plan for the user's machine).

    ``requested`` are the settings the user asked for (``n_gpu_layers`` None = Auto); a pinned layer
    count is the user's word and is written even when the plan clamped it. ``num_predict_set`` says
    whether the user chose the reply length; None reads it from ``sampling`` (set = not the default).
    """
    total = plan.n_layers_total
    gpu = plan.hardware.gpu
    where = f"{gpu.name} with {fmt_bytes(gpu.free)} free" if gpu is not None else "a machine with no GPU"
    notes = [f"LayerFit plan for {where}: {plan.gpu_layers} of {total} layers on the GPU ({plan.processor}), "
             f"num_ctx {plan.settings.n_ctx}."]
    pinned = requested.n_gpu_layers if requested is not None else None
    num_gpu: int | None
    if let_ollama_decide:
        num_gpu = None
        notes.append("num_gpu is left out on purpose: Ollama decides how many layers go to the GPU.")
    elif gpu is None or not plan.use_gpu:
        num_gpu = None
        notes.append("num_gpu is left out, not written as 0: this plan was made without a usable GPU, and "
                     "num_gpu 0 would force the CPU on a machine that has one. Ollama decides.")
    else:
        num_gpu = pinned if pinned is not None else plan.gpu_layers
        notes.append(f"num_gpu {num_gpu}: " + ("your fixed GPU layer count." if pinned is not None else
                                               "the layers LayerFit fits on this GPU."))
    if not plan.fits:
        notes.append("Warning: LayerFit predicts this plan does not fit this machine "
                     + ("(GPU memory is short)." if plan.gpu.total > plan.usable_vram and plan.use_gpu
                        else "(RAM is short)."))
    if num_predict_set is None:
        num_predict_set = sampling.max_tokens != SamplingSettings().max_tokens
    omit_predict = not num_predict_set
    if omit_predict:
        notes.append("num_predict is left out: Ollama does not cap the reply length unless you set it.")
    notes += list(extra_notes)
    spec = spec_from(plan.model.path, plan.settings, num_gpu, sampling, messages=messages,
                     headroom=plan.headroom, notes=notes)
    return ExportSpec(replace(spec, omit_num_predict=omit_predict), tuple(notes), num_gpu, plan.fits)
