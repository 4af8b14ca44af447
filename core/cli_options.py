"""The options every ``layerfit`` subcommand shares, parsed once: plan options (model settings and the
hardware to plan for), sampling options, and ``CliError`` (one plain line, an exit status).

Below both ``core.cli`` (the parser and dispatcher) and ``core.commands`` (the subcommands' bodies), so
neither imports the other's module to get them (the import-linter layers in pyproject.toml).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from core.hardware import Hardware, find_preset, probe, what_if
from core.loadsettings import LoadSettings, requested_flash_attn
from core.sampling import SamplingSettings
from core.units import SizeError, parse_size


class CliError(Exception):
    """An error to print as one line, exit status 2 (bad usage) or 1 (failure)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PlanInputs:
    settings: LoadSettings
    hardware: Hardware
    headroom: int


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except SizeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _gpu_layers(text: str) -> int | None:
    if text.strip().lower() in ("auto", "-1"):
        return None
    try:
        n = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--gpu-layers takes a number or 'auto', not {text!r}") from exc
    if n < 0:
        raise argparse.ArgumentTypeError("--gpu-layers must be 0 or more, or 'auto'")
    return n


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from exc
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {n}")
    return n


def _onoff(text: str) -> bool:
    t = text.strip().lower()
    if t in ("on", "true", "1", "yes"):
        return True
    if t in ("off", "false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, not {text!r}")


def add_plan_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("plan options")
    g.add_argument("--ctx", type=_positive, default=None, help="context size in tokens (num_ctx; default 4096)")
    g.add_argument("--gpu-layers", type=_gpu_layers, default=None, metavar="N|auto",
                   help="layers on the GPU (the output layer counts as one); default auto")
    g.add_argument("--kv-type", choices=("f16", "q8_0", "q4_0"), default=None,
                   help="KV cache type for K and V (q8_0/q4_0 need flash attention)")
    g.add_argument("--flash-attn", choices=("on", "off", "auto"), default=None, help="flash attention")
    g.add_argument("--swa-full", type=_onoff, default=None, metavar="on|off",
                   help="full-size cache for sliding-window layers (default off)")
    g.add_argument("--batch", type=_positive, default=None, help="logical batch size (default 512)")
    g.add_argument("--ubatch", type=_positive, default=None, help="physical batch size (default 512)")
    g.add_argument("--vram", type=_size, default=None, metavar="SIZE",
                   help="free GPU memory to plan for, like 16GiB (default: probed; 0 without an NVIDIA GPU)")
    g.add_argument("--card", action="append", default=None, metavar="PRESET",
                   help="plan for a what-if card: t4, rtx3060, rtx3090, rtx4090, a100-40, a100-80, h100 "
                        "(repeat for several GPUs: --card 3090 --card 3090)")
    g.add_argument("--worker", action="append", default=None, metavar="HOST:PORT",
                   help="an RPC worker (`layerfit worker` on that machine) to split the model onto (repeatable); "
                        "in `plan`, a size like 24GiB is a what-if machine offering that much")
    g.add_argument("--ram", type=_size, default=None, metavar="SIZE", help="available RAM (default: probed)")
    g.add_argument("--headroom", type=_size, default=None, metavar="SIZE",
                   help="GPU memory to keep free (default 768MiB)")


def plan_inputs(args: argparse.Namespace, base: LoadSettings | None = None) -> PlanInputs:
    """LoadSettings, Hardware and headroom from the plan options (probing what wasn't given)."""
    from core.fit import DEFAULT_HEADROOM

    s = base or LoadSettings()
    changes: dict[str, object] = {}
    if args.ctx is not None:
        changes["n_ctx"] = args.ctx
    if args.gpu_layers is not None:
        changes["n_gpu_layers"] = args.gpu_layers
    if args.kv_type is not None:
        changes["type_k"] = changes["type_v"] = args.kv_type
    if args.flash_attn is not None:
        changes["flash_attn"] = args.flash_attn
    if args.swa_full is not None:
        changes["swa_full"] = args.swa_full
    if args.batch is not None:
        changes["n_batch"] = args.batch
    if args.ubatch is not None:
        changes["n_ubatch"] = args.ubatch
    s = s.with_(**changes)
    if s.n_ubatch > s.n_batch:
        s = s.with_(n_ubatch=s.n_batch)
    s = s.with_(flash_attn=requested_flash_attn(s.type_v, s.flash_attn))  # auto → on for a quantized V cache
    try:
        s.validate()
    except ValueError as exc:
        raise CliError(str(exc), 2) from exc

    cards = [args.card] if isinstance(args.card, str) else list(args.card or [])
    if cards:
        for card in cards:
            if find_preset(card) is None:
                try:
                    parse_size(card)
                except SizeError as exc:
                    raise CliError(f"unknown card {card!r}: use a preset (t4, rtx3060, rtx3090, rtx4090, "
                                   "a100-40, a100-80, h100) or a size like 16GiB", 2) from exc
        hw = what_if(cards[0])
        if len(cards) > 1:  # several what-if GPUs, indexed in the order given
            from dataclasses import replace

            gpus = [replace(what_if(c, hw).gpus[0], index=i) for i, c in enumerate(cards)]
            hw = replace(hw, gpus=tuple(gpus))
    else:
        hw = probe()
    if args.vram is not None:
        hw = hw.with_vram(args.vram)
    if args.ram is not None:
        hw = hw.with_ram(args.ram)
    headroom = args.headroom if args.headroom is not None else DEFAULT_HEADROOM
    return PlanInputs(s, hw, headroom)


def add_sampling_options(p: argparse.ArgumentParser, *, modelfile: bool = False) -> None:
    g = p.add_argument_group("sampling options")
    g.add_argument("--temperature", type=float, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--min-p", type=float, default=None)
    g.add_argument("--repeat-penalty", type=float, default=None)
    g.add_argument("--seed", type=int, default=None)
    if modelfile:
        g.add_argument("--num-predict", type=int, default=None, help="max tokens to generate")
        g.add_argument("--repeat-last-n", type=int, default=None)
    else:
        g.add_argument("--max-tokens", type=int, default=None, help="max tokens to generate (default 512)")
    g.add_argument("--system", default=None, metavar="TEXT", help="system prompt")
    g.add_argument("--stop", action="append", default=None, metavar="S", help="stop string (repeatable)")


def sampling_from_args(args: argparse.Namespace, base: SamplingSettings | None = None) -> SamplingSettings:
    """SamplingSettings from the sampling options (``run`` and ``modelfile``); unset ones keep ``base``
    (default: LayerFit's defaults; an Ollama model's params and system prompt when MODEL is one)."""
    changes: dict[str, object] = {}
    for option, name in (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k"),
                         ("min_p", "min_p"), ("repeat_penalty", "repeat_penalty"), ("seed", "seed"),
                         ("max_tokens", "max_tokens"), ("num_predict", "max_tokens"),
                         ("repeat_last_n", "repeat_last_n"), ("system", "system")):
        value = getattr(args, option, None)
        if value is not None:
            changes[name] = value
    if getattr(args, "stop", None):
        changes["stop"] = tuple(args.stop)
    max_tokens = changes.get("max_tokens", 1)
    if isinstance(max_tokens, int) and max_tokens < 1:
        raise CliError("the number of tokens to generate must be at least 1", 2)
    return (base or SamplingSettings()).with_(**changes)
