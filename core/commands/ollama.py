"""`layerfit ollama ps [--json] [plan options]`: where a running Ollama put each loaded model, beside
LayerFit's plan for the same settings, with the gap explained (core.ollama_compare).

The host comes from ``OLLAMA_HOST``. An Ollama that can't be reached is one line and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys

from core.cli_options import CliError, plan_inputs
from core.ollama import read_store
from core.ollama_client import OllamaError, OllamaServer, OllamaUnavailable
from core.ollama_compare import compare, hardware_for_ps
from core.units import fmt_bytes


def run(args: argparse.Namespace) -> int:
    if args.ollama_command != "ps":  # pragma: no cover - argparse allows only ps
        raise CliError("usage: layerfit ollama ps", 2)
    server = OllamaServer(timeout=args.timeout)
    try:
        running = server.ps()
    except (OllamaUnavailable, OllamaError) as exc:
        raise CliError(str(exc)) from None
    inputs = plan_inputs(args)
    hardware = inputs.hardware if args.vram is not None else hardware_for_ps(inputs.hardware, running)
    results = compare(running, read_store(), hardware, inputs.headroom)
    if args.json:
        print(json.dumps({"host": server.host, "models": [c.to_json() for c in results]}, ensure_ascii=False))
        return 0
    if not results:
        print(f"Ollama at {server.host} has no model loaded (run one, then `layerfit ollama ps` again).")
        return 0
    for c in results:
        r = c.running
        ctx = f"ctx {r.context_length}" if r.context_length else "ctx ?"
        print(f"{r.name}  {fmt_bytes(r.size)}  {r.processor}  {ctx}")
        if c.plan is not None:
            p = c.plan
            print(f"  LayerFit: {p.gpu_layers}/{p.n_layers_total} layers on the GPU, {p.processor}, "
                  f"GPU {fmt_bytes(p.gpu.total)} + RAM {fmt_bytes(p.host.total)}")
        print(f"  {c.text}", file=sys.stdout if c.problem is None else sys.stderr)
    return 0
