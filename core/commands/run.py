"""`layerfit run [MODEL] --prompt TEXT [plan options] [sampling options] [--json]`.

Plans the load (the same fitter as `layerfit plan`), loads the model through the engine's child
process, and streams the reply to stdout as it comes. Everything else (load progress, fallback steps,
speed, where the model went) goes to stderr, so stdout holds only the reply: with ``--json`` its last
line is exactly one JSON object::

    {"text", "tokens_per_second", "time_to_first_token", "tokens", "finish_reason", "context_full",
     "placement": {"measured": true, "processor", "gpu_layers", "gpu": {…}, "host": {…}, …},
     "planned": {"processor", "gpu_layers", "gpu", "host"}, "fallbacks": [...], "settings": {…}, "model"}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from core.cli import CliError, plan_inputs, sampling_from_args
from core.engine import Engine
from core.fit import Plan
from core.library import path_problem


def _model_path(args: argparse.Namespace) -> Path:
    if args.model:
        p = Path(args.model).expanduser()
        if not p.is_file():
            raise CliError(path_problem(args.model))
        return p.resolve()
    from core.demo import DemoModelMissing, demo_model_path

    try:
        return demo_model_path()
    except DemoModelMissing as exc:
        raise CliError(str(exc)) from exc


def make_run_plan(path: Path, args: argparse.Namespace) -> Plan:
    """The fitter's plan for ``path`` with the command-line plan options."""
    from core.fit import make_plan
    from core.gguf_info import read_model_info

    inputs = plan_inputs(args)
    info = read_model_info(path)
    return make_plan(info, inputs.settings, inputs.hardware, inputs.headroom, suggest=False)


class _Progress:
    """Load progress on stderr: a single rewritten line on a terminal, nothing when piped."""

    def __init__(self, name: str, stream: TextIO) -> None:
        self.name = name
        self.stream = stream
        self.tty = stream.isatty()
        self.shown = False

    def __call__(self, fraction: float) -> None:
        if self.tty:
            self.stream.write(f"\rloading {self.name} {fraction * 100:5.1f}%")
            self.stream.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


def run(args: argparse.Namespace) -> int:
    """Load, answer ``--prompt``, print. Exit status 0 on success."""
    out, err = sys.stdout, sys.stderr
    path = _model_path(args)
    sampling = sampling_from_args(args)
    plan = make_run_plan(path, args)
    progress = _Progress(path.name, err)
    engine = Engine()
    try:
        try:
            result = engine.load(plan, progress=progress,
                                 status=lambda text: print(f"fallback: {text}", file=err))
        finally:
            progress.done()
        pl = result.placement
        print(f"loaded {path.name}: {pl.processor}, {pl.gpu_layers}/{pl.n_layer + 1} layers on the GPU "
              f"(measured), n_ctx {result.n_ctx}, {result.load_seconds:.1f} s", file=err)
        done = None
        wrote_newline = True
        for ev in engine.chat([{"role": "user", "content": args.prompt}], sampling):
            if ev.kind == "token":
                out.write(ev.text)
                out.flush()
                wrote_newline = ev.text.endswith("\n")
            elif ev.kind == "context_full":
                print(f"warning: {ev.text}", file=err)
            elif ev.kind == "done":
                done = ev
        if not wrote_newline:
            out.write("\n")
        if done is None:  # pragma: no cover - chat() always ends with "done" or raises
            raise CliError("the engine ended the reply without a result")
        print(f"{done.tokens} tokens, {done.tokens_per_second:.1f} tokens/s, first token after "
              f"{done.time_to_first_token:.2f} s", file=err)
        if args.json:
            obj = {
                "text": done.text,
                "tokens_per_second": round(done.tokens_per_second, 2),
                "time_to_first_token": round(done.time_to_first_token, 4),
                "tokens": done.tokens,
                "finish_reason": done.finish_reason,
                "context_full": bool(done.extra.get("context_full")),
                "placement": pl.to_dict(),
                "planned": {"processor": plan.processor, "gpu_layers": plan.gpu_layers,
                            "gpu": plan.gpu.to_dict(), "host": plan.host.to_dict()},
                "fallbacks": [f.to_dict() for f in result.fallbacks],
                "settings": result.settings.to_dict(),
                "n_ctx": result.n_ctx,
                "model": str(path),
            }
            out.write(json.dumps(obj) + "\n")
            out.flush()
        return 0
    except KeyboardInterrupt:
        engine.stop()
        raise
    finally:
        engine.close()
