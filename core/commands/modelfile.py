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
    from core.commands.model_ref import resolve

    ref = resolve(args.model)  # a .gguf path, or an Ollama name (its params and system prompt are the defaults)
    if args.create and ref.ollama is None:
        raise CliError("--create needs an Ollama model as MODEL (the new model is made FROM it); for a "
                       "GGUF file, run `ollama create NAME -f` on the saved Modelfile", 2)
    model = ref.path
    inputs = plan_inputs(args, base=ref.load_settings())
    info = ref.read_info()  # a bad GGUF raises ModelFileError: one plain line from core.cli.main
    plan = make_plan(info, inputs.settings, inputs.hardware, inputs.headroom, suggest=False)
    # A pinned --gpu-layers is the user's word (the plan may clamp it to this machine's GPU, or lack of one).
    pinned = inputs.settings.n_gpu_layers
    layers = None if args.auto_gpu else (pinned if pinned is not None else plan.gpu_layers)
    spec = spec_from(model.resolve(), inputs.settings, layers,
                     sampling_from_args(args, base=ref.sampling()), headroom=inputs.headroom,
                     notes=plan_notes(plan, args.auto_gpu))
    try:
        text = export_modelfile(spec)
    except ModelfileError as exc:
        raise CliError(str(exc), 2) from exc

    if args.output == "-":
        sys.stdout.write(text)
    else:
        from core.atomic import write_text_atomic

        out = Path(args.output).expanduser()
        write_text_atomic(out, text)
        print(f"wrote {out}; create the Ollama model with: ollama create NAME -f {out}")
    if args.create and ref.ollama is not None:
        create_in_ollama(args.create, ref.ollama.name, text, quiet_stdout=args.output == "-")
    return 0


def create_in_ollama(name: str, source: str, modelfile_text: str, *, quiet_stdout: bool = False) -> None:
    """Create ``name`` FROM ``source`` in the running Ollama with the Modelfile's parameters and system
    prompt, and confirm it is listed. Failure is one line (the Modelfile is already saved)."""
    from core.ollama_client import OllamaError, OllamaServer, OllamaUnavailable, create_fields

    params, system = create_fields(modelfile_text)
    server = OllamaServer()
    try:
        server.create(name, source, params, system)
    except (OllamaUnavailable, OllamaError) as exc:
        raise CliError(f"{exc} (the Modelfile is saved: `ollama create {name} -f FILE` works later)") from None
    print(f"created {name} in Ollama at {server.host} from {source} "
          f"({', '.join(f'{k} {v}' for k, v in params.items() if k in ('num_ctx', 'num_gpu'))}); "
          "it is listed by the server", file=sys.stderr if quiet_stdout else sys.stdout)
