"""`layerfit plan MODEL [plan options] [--json]`: where every byte will live, and why."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import TextIO

from core import referee
from core.archs import arch_layout
from core.cli_options import plan_inputs
from core.devices import DevicePlan, is_multi, multi_plan, single_device_json
from core.fit import Plan, make_plan
from core.ollama import OllamaModel
from core.units import fmt_bytes


def _row(label: str, values: list[str]) -> str:
    return f"  {label:<6}" + "".join(f"{v:>12}" for v in values)


def format_plan(p: Plan) -> str:
    """The plan as a readable table with reasons and suggestions."""
    m, s = p.model, p.settings
    lines = [
        f"{m.name}  ({m.arch}, {m.n_layer} layers, {m.file_type}, {fmt_bytes(m.file_size)})",
        f"context {s.n_ctx}  KV {s.type_k}/{s.type_v}  flash attention {s.flash_attn}  "
        f"batch {s.n_batch}/{s.n_ubatch}" + (f"  swa_full {'on' if s.swa_full else 'off'}" if arch_layout(m).has_swa
                                             else ""),
        "",
        _row("", ["weights", "KV cache", "compute", "overhead", "total"]),
        _row("GPU", [fmt_bytes(x) for x in (p.gpu.weights, p.gpu.kv, p.gpu.compute, p.gpu.overhead, p.gpu.total)]),
        _row("RAM", [fmt_bytes(x) for x in (p.host.weights, p.host.kv, p.host.compute)] + ["", fmt_bytes(p.host.total)]),
    ]
    if p.gpu.rs or p.host.rs:  # recurrent state (Mamba / delta-net layers), included in the totals
        lines.append(f"  recurrent state  GPU {fmt_bytes(p.gpu.rs)}  RAM {fmt_bytes(p.host.rs)}")
    if p.host.repack:  # llama.cpp's CPU_REPACK copy of repackable host weights, included in the RAM total
        lines.append(f"  CPU repack copy  RAM {fmt_bytes(p.host.repack)} (on top of the mapped file)")
    lines += [
        "",
        f"  layers on GPU  {p.gpu_layers}/{m.n_layer + 1}    processor  {p.processor}    "
        f"fits GPU  {'yes' if p.fits_gpu else 'no'}    fits  {'yes' if p.fits else 'no'}    "
        f"~{p.predicted_tps:.1f} tok/s",
    ]
    for w in p.warnings:
        lines.insert(0, f"WARNING: {w}")
    if p.reasons:
        lines += ["", "Why:"] + [f"  - {r}" for r in p.reasons]
    if p.suggestions:
        lines += ["", "Suggestions:"] + [f"  - {x.text}" for x in p.suggestions]
    return "\n".join(lines)


def format_devices(dp: DevicePlan) -> str:
    """One row per device: its layers and bytes, and the split llama.cpp will be given."""
    n = dp.model.n_layer
    lines = ["Per device (llama.cpp's order):",
             f"  {'device':<34}{'layers':>24}{'weights':>11}{'KV':>11}{'compute':>11}{'total':>11}{'free':>11}"]
    for ld in dp.loads:
        lines.append(f"  {ld.name[:33]:<34}{ld.layer_range(n):>24}{fmt_bytes(ld.weights):>11}{fmt_bytes(ld.kv):>11}"
                     f"{fmt_bytes(ld.compute + ld.overhead):>11}{fmt_bytes(ld.total):>11}"
                     f"{fmt_bytes(ld.free) if ld.kind != 'host' else '':>11}")
    if dp.devices:
        lines.append(f"  n_gpu_layers {dp.gpu_layers}, tensor_split "
                     + ",".join(f"{x:g}" for x in dp.tensor_split))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Body of `layerfit plan`: read the header, fit, print. Bad files raise ModelFileError."""
    return write_plan(args, sys.stdout)


def write_plan(args: argparse.Namespace, out: TextIO) -> int:
    """`run` with the output stream as a parameter."""
    from core.commands.model_ref import resolve

    ref = resolve(args.model)  # a .gguf path or an Ollama name (its params give the defaults)
    model = ref.read_info()
    inputs = plan_inputs(args, base=ref.load_settings())
    workers = list(getattr(args, "worker", None) or [])
    dp: DevicePlan | None = None
    if is_multi(inputs.hardware, workers):
        plan, dp = multi_plan(model, inputs.settings, inputs.hardware, inputs.headroom, workers)
    else:
        plan = make_plan(model, inputs.settings, inputs.hardware, inputs.headroom)
    if getattr(args, "check", False):
        result = referee.run_referee(model.path, plan.settings)
        if result.ok:
            referee.remember(model.path, plan.settings, result)
            plan = referee.apply(plan, result)
        else:
            plan = replace(plan, reasons=plan.reasons + (f"llama.cpp's check did not run: {result.error}",))
    if args.json:
        obj = {**plan.to_json(), "devices": dp.to_json() if dp is not None else single_device_json(plan)}
        if ref.ollama is not None:
            obj["ollama"] = ollama_json(ref.ollama)
        out.write(json.dumps(obj, ensure_ascii=False) + "\n")
    else:
        out.write(format_plan(plan) + ("\n\n" + format_devices(dp) if dp is not None else "") + "\n")
        if ref.ollama is not None:
            out.write(format_ollama_note(ref.ollama) + "\n")
    return 0


def ollama_json(m: OllamaModel) -> dict[str, object]:
    """What the plan started from when MODEL was an Ollama name."""
    return {"name": m.name, "params": dict(m.params), "system": m.system, "digest": m.digest,
            "projector_size": m.projector_size, "shared_with": list(m.shared_with)}


def format_ollama_note(m: OllamaModel) -> str:
    lines = [f"\nOllama model {m.name}: settings start from its params ("
             + (", ".join(f"{k} {v}" for k, v in m.params.items() if k != "stop") or "none set") + ")"]
    if m.projector_size:
        lines.append(f"  + a vision projector of {fmt_bytes(m.projector_size)}: Ollama loads it with the model; "
                     "LayerFit's engine loads text only, so it is not in the table above")
    if m.shared_with:
        lines.append(f"  same GGUF blob as {', '.join(m.shared_with)}")
    return "\n".join(lines)
