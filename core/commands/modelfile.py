"""`layerfit modelfile MODEL [plan options] [sampling options] -o FILE`: an Ollama Modelfile for a plan.

``num_gpu`` is the layer count the fitter chose for this hardware, or the user's ``--gpu-layers`` pin
(``--auto-gpu`` leaves it out so Ollama decides). The file is written atomically; ``-o -`` prints it instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cli import CliError, plan_inputs, sampling_from_args
from core.fit import Plan, make_plan
from core.gguf_info import read_model_info
from core.library import path_problem
from core.modelfile import ModelfileError, export_modelfile, spec_from
from core.units import fmt_bytes


def plan_notes(plan: Plan, auto_gpu: bool) -> list[str]:
    """Header comment lines: what the plan was and for which hardware."""
    total = plan.model.n_layer + 1
    gpu = plan.hardware.gpu
    where = f"{gpu.name} with {fmt_bytes(gpu.free)} free" if gpu is not None else "no GPU"
    notes = [f"LayerFit plan for {where}: {plan.gpu_layers} of {total} layers on the GPU ({plan.processor}), "
             f"num_ctx {plan.settings.n_ctx}."]
    if auto_gpu:
        notes.append("num_gpu is left out on purpose: Ollama decides how many layers go to the GPU.")
    if not plan.fits:
        notes.append("Warning: LayerFit predicts this plan does not fit this machine.")
    return notes


def run(args: argparse.Namespace) -> int:
    model = Path(args.model).expanduser()
    if model.is_dir():
        raise CliError(f"{args.model} is a folder; give the path of a .gguf file")
    if not model.is_file():
        raise CliError(path_problem(args.model))
    inputs = plan_inputs(args)
    info = read_model_info(model)  # a bad GGUF raises ModelFileError: one plain line from core.cli.main
    plan = make_plan(info, inputs.settings, inputs.hardware, inputs.headroom, suggest=False)
    # A pinned --gpu-layers is the user's word (the plan may clamp it to this machine's GPU, or lack of one).
    pinned = inputs.settings.n_gpu_layers
    layers = None if args.auto_gpu else (pinned if pinned is not None else plan.gpu_layers)
    spec = spec_from(model.resolve(), inputs.settings, layers,
                     sampling_from_args(args), headroom=inputs.headroom,
                     notes=plan_notes(plan, args.auto_gpu))
    try:
        text = export_modelfile(spec)
    except ModelfileError as exc:
        raise CliError(str(exc), 2) from exc

    if args.output == "-":
        sys.stdout.write(text)
        return 0
    from core.atomic import write_text_atomic

    out = Path(args.output).expanduser()
    write_text_atomic(out, text)
    print(f"wrote {out}; create the Ollama model with: ollama create NAME -f {out}")
    return 0
