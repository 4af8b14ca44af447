"""The `layerfit` subcommands, as DESIGN.md's contract gives them (gui/launch.py opens the app when there
are none).

The parser and the dispatcher live here; the options every subcommand shares are parsed once in
``core/cli_options.py``, and each subcommand's body lives in ``core/commands/<name>.py``. Errors end as one plain line on stderr and a
non-zero exit status, never a traceback (set ``LAYERFIT_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from core import __version__
from core.cli_options import (  # noqa: F401 - re-exported: the names callers know core.cli by
    CliError,
    PlanInputs,
    _positive,
    _size,
    add_plan_options,
    add_sampling_options,
    plan_inputs,
    sampling_from_args,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerfit",
        description="See where every byte of a GGUF model will live (GPU or RAM), load it, chat, export a "
                    "Modelfile. With no command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"layerfit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plan", help="predict GPU/RAM use and the best placement for a model")
    p.add_argument("model", metavar="MODEL", help="path to a .gguf file, or an Ollama model name")
    add_plan_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--check", action="store_true",
                   help="also run llama.cpp's no-alloc pass (about a second) to check weights, KV and state")

    p = sub.add_parser("run", help="load a model (default: the demo model) and answer a prompt")
    p.add_argument("model", metavar="MODEL", nargs="?", default=None, help="path to a .gguf or an Ollama name (default: demo)")
    p.add_argument("--prompt", required=True, metavar="TEXT")
    add_plan_options(p)
    add_sampling_options(p)
    p.add_argument("--json", action="store_true", help="end with one JSON line: text, speed, placement")

    p = sub.add_parser("modelfile", help="write an Ollama Modelfile for a model and settings")
    p.add_argument("model", metavar="MODEL")
    add_plan_options(p)
    add_sampling_options(p, modelfile=True)
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write (- for stdout)")
    p.add_argument("--auto-gpu", action="store_true",
                   help="leave num_gpu out so Ollama decides (default: write the fitted layer count)")
    p.add_argument("--create", default=None, metavar="NAME",
                   help="also create NAME in the running Ollama (MODEL must be an Ollama model; host from "
                        "OLLAMA_HOST); the Modelfile is written either way")

    p = sub.add_parser("models", help="list the GGUF files in the configured folders, the demo model and "
                                      "the Ollama models (OLLAMA_MODELS or the default store)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--folder", action="append", default=None, metavar="DIR",
                   help="scan this folder too (repeatable; not saved)")

    p = sub.add_parser("ollama", help="compare a running Ollama's placements with LayerFit's plans")
    osub = p.add_subparsers(dest="ollama_command", metavar="ps", required=True)
    q = osub.add_parser("ps", help="where Ollama put each loaded model, beside LayerFit's plan (OLLAMA_HOST)")
    add_plan_options(q)
    q.add_argument("--timeout", type=float, default=5.0, metavar="S", help="seconds to wait for Ollama")
    q.add_argument("--json", action="store_true")

    p = sub.add_parser("doctor", help="what this machine can do: Python, llama.cpp build, GPUs, RAM")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("worker", help="serve this machine's GPUs (or CPU) to other machines over llama.cpp's RPC")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; anything else is insecure)")
    p.add_argument("--port", type=int, default=50052, help="TCP port (default 50052)")
    p.add_argument("--mem", type=_size, default=None, metavar="SIZE",
                   help="memory to offer per device, like 8GiB (default: what the device reports)")
    p.add_argument("--threads", type=_positive, default=None, help="CPU threads (default: half the cores)")

    sub.add_parser("gui", help="open the app (the same as no command)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in (None, "gui"):
        # The app itself starts from the `layerfit` launcher (gui/launch.py): core never imports the GUI.
        parser.print_help(sys.stderr)
        print("\nTo open the app, run `layerfit` (or `python -m gui`) with no command.", file=sys.stderr)
        return 0 if args.command is None else 2
    try:
        if args.command == "plan":
            from core.commands.plan import run as cmd
        elif args.command == "run":
            from core.commands.run import run as cmd
        elif args.command == "modelfile":
            from core.commands.modelfile import run as cmd
        elif args.command == "models":
            from core.commands.models import run as cmd
        elif args.command == "doctor":
            from core.commands.doctor import run as cmd
        elif args.command == "ollama":
            from core.commands.ollama import run as cmd
        elif args.command == "worker":
            from core.commands.worker import run as cmd
        else:  # pragma: no cover - argparse rejects unknown commands first
            parser.error(f"unknown command {args.command}")
        return int(cmd(args) or 0)
    except CliError as exc:
        print(f"layerfit {args.command}: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("LAYERFIT_DEBUG"):
            raise
        from core.errors import describe

        print(f"layerfit {args.command}: {describe(exc)}", file=sys.stderr)
        return 1

