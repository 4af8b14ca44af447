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

from core.cli_options import CliError, plan_inputs, sampling_from_args
from core.commands.model_ref import ModelRef, resolve
from core.devices import DevicePlan, is_multi, multi_plan
from core.engine import Engine
from core.fit import Plan
from core.placement import Placement


def _model_ref(args: argparse.Namespace) -> ModelRef:
    if args.model:
        return resolve(args.model)  # a .gguf path or an Ollama name (loaded from its blob, in place)
    from core.demo import DemoModelMissing, demo_model_path

    try:
        return ModelRef(demo_model_path())
    except DemoModelMissing as exc:
        raise CliError(str(exc)) from exc


def _model_path(args: argparse.Namespace) -> Path:
    return _model_ref(args).path


def make_run_plan(path: Path | ModelRef, args: argparse.Namespace) -> Plan:
    """The fitter's plan for ``path`` with the command-line plan options (over an Ollama model's params)."""
    return make_run_plans(path, args)[0]


def make_run_plans(path: Path | ModelRef, args: argparse.Namespace) -> tuple[Plan, DevicePlan | None]:
    """The plan, and the split over several devices when there are workers or several GPUs."""
    from core.fit import make_plan

    ref = path if isinstance(path, ModelRef) else ModelRef(path)
    inputs = plan_inputs(args, base=ref.load_settings())
    info = ref.read_info()
    workers = list(getattr(args, "worker", None) or [])
    if is_multi(inputs.hardware, workers):
        return multi_plan(info, inputs.settings, inputs.hardware, inputs.headroom, workers)
    return make_plan(info, inputs.settings, inputs.hardware, inputs.headroom, suggest=False), None


def _single_devices(pl: Placement) -> list[dict[str, object]]:
    """``placement.devices`` for a load on one GPU (or none): the GPU when it holds layers, then RAM."""
    out: list[dict[str, object]] = []
    if pl.gpu_layers > 0 and pl.gpu.total > 0:
        out.append({"name": f"GPU 0 ({pl.gpu_name})" if pl.gpu_name else "GPU 0", "kind": "cuda",
                    "layers": f"{pl.gpu_layers} layer(s)", **pl.gpu.to_dict(), "rs": 0, "free": 0})
    out.append({"name": "RAM", "kind": "host", "layers": f"{pl.n_layer + 1 - pl.gpu_layers} layer(s)",
                **pl.host.to_dict(), "rs": 0, "overhead": 0, "free": 0})
    return out


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
    ref = _model_ref(args)
    path = ref.path
    sampling = sampling_from_args(args, base=ref.sampling())
    plan, devices = make_run_plans(ref, args)
    if devices is not None and any(d.what_if for d in devices.devices):
        raise CliError("a what-if worker or card (--worker SIZE, --card) is for `layerfit plan` only: "
                       "`run` loads on real devices; give workers as HOST:PORT", 2)
    if devices is not None:
        for problem in devices.problems:
            print(f"warning: {problem}", file=err)
    progress = _Progress(ref.label, err)
    engine = Engine()
    try:
        try:
            result = engine.load(plan, progress=progress,
                                 status=lambda text: print(f"fallback: {text}", file=err), devices=devices)
        finally:
            progress.done()
        pl = result.placement
        print(f"loaded {ref.label}: {pl.processor}, {pl.gpu_layers}/{pl.n_layer + 1} layers on the GPU "
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
                "placement": {**pl.to_dict(), "devices": list(result.devices) or _single_devices(pl)},
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
