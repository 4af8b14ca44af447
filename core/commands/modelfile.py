"""`layerfit modelfile MODEL [plan options] [sampling options] -o FILE`: an Ollama Modelfile for a plan.

What is written is decided by ``core.export.spec_for_plan``, shared with the GUI's export dialog:
``num_gpu`` is the layer count the fitter chose for this hardware, or the user's ``--gpu-layers`` pin
(``--auto-gpu`` leaves it out so Ollama decides; so does a plan made without a GPU). The file is
written atomically; ``-o -`` prints it instead.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from core.cli_options import CliError, plan_inputs, sampling_from_args
from core.export import spec_for_plan
from core.fit import make_plan
from core.modelfile import ModelfileError, export_modelfile


def run(args: argparse.Namespace) -> int:
    from core.commands.model_ref import resolve

    ref = resolve(args.model)  # a .gguf path, or an Ollama name (its params and system prompt are the defaults)
    if args.create and ref.ollama is None:
        raise CliError("--create needs an Ollama model as MODEL (the new model is made FROM it); for a "
                       "GGUF file, run `ollama create NAME -f` on the saved Modelfile", 2)
    model = ref.path
    inputs = plan_inputs(args, base=ref.load_settings())
    info = ref.read_info()  # a bad GGUF raises ModelFileError: one plain line from the CLI's main
    plan = make_plan(info, inputs.settings, inputs.hardware, inputs.headroom, suggest=False)
    # The same rules as the GUI's export (core.export): a pinned --gpu-layers is the user's word, no
    # num_gpu 0 only because this machine has no GPU, a warning when the plan does not fit.
    plan = replace(plan, model=replace(info, path=str(model.resolve())))
    made = spec_for_plan(plan, sampling_from_args(args, base=ref.sampling()), requested=inputs.settings,
                        let_ollama_decide=args.auto_gpu, num_predict_set=True if args.num_predict is not None else None)
    try:
        text = export_modelfile(made.spec)
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
