"""`layerfit plan MODEL [plan options] [--json]`: where every byte will live, and why."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import TextIO

from core import referee
from core.archs import arch_layout
from core.cli import plan_inputs
from core.fit import Plan, make_plan
from core.gguf_info import read_model_info
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


def run(args: argparse.Namespace) -> int:
    """Body of `layerfit plan`: read the header, fit, print. Bad files raise ModelFileError."""
    return write_plan(args, sys.stdout)


def write_plan(args: argparse.Namespace, out: TextIO) -> int:
    """`run` with the output stream as a parameter."""
    model = read_model_info(args.model)
    inputs = plan_inputs(args)
    plan = make_plan(model, inputs.settings, inputs.hardware, inputs.headroom)
    if getattr(args, "check", False):
        result = referee.run_referee(model.path, plan.settings)
        if result.ok:
            referee.remember(model.path, plan.settings, result)
            plan = referee.apply(plan, result)
        else:
            plan = replace(plan, reasons=plan.reasons + (f"llama.cpp's check did not run: {result.error}",))
    if args.json:
        out.write(json.dumps(plan.to_json(), ensure_ascii=False) + "\n")
    else:
        out.write(format_plan(plan) + "\n")
    return 0
