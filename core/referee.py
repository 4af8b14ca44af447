"""llama.cpp as the referee: its own no-alloc pass checks the device-independent terms of a plan.

llama.cpp can build a model and a context without allocating or reading anything
(``llama_model_params.no_alloc`` with ``load_mode = none``; its ``--fit`` uses the same pass), and
still logs the KV cache and recurrent-state sizes; a plain mmap load (never evaluated) logs the
weights without reading them. That is exact for weights, KV and RS on any architecture llama.cpp
knows, including the ones LayerFit does not model. It runs in a child process (``python -m
core.referee``) so that an abort can't take the caller down, and takes about a second.

When the analytic plan and the referee disagree by more than 2 % on one of those terms, the plan
shows llama.cpp's figure (each device's share scaled to it) and says so; when they agree, the plan is
marked "checked by llama.cpp" and an unverified architecture's warning goes away. The slider stays
analytic and instant: results are cached per model file and cache-relevant settings.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from core.loadsettings import LoadSettings

if TYPE_CHECKING:
    from core.fit import Plan

MiB = 1024**2
TOLERANCE = 0.02
_TYPE_ID = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "iq4_nl": 20, "bf16": 30}
_KV_RE = re.compile(r"llama_kv_cache: size = +([\d.]+) MiB")
_RS_RE = re.compile(r"llama_memory_recurrent: size = +([\d.]+) MiB")


@dataclass(frozen=True)
class RefereeResult:
    """llama.cpp's own figures (bytes, CPU placement) for one model and cache settings."""

    ok: bool
    weights: int = 0
    kv: int = 0
    rs: int = 0
    error: str = ""


def cache_key(path: str, s: LoadSettings) -> tuple[Any, ...]:
    """What the checked terms depend on: the file (path, size, mtime) and the cache settings."""
    try:
        st = os.stat(path)
        stamp: tuple[int, float] = (st.st_size, st.st_mtime)
    except OSError:
        stamp = (0, 0.0)
    return (path, stamp, s.n_ctx, s.type_k, s.type_v, s.flash_attn == "on", s.swa_full,
            min(s.n_ubatch, s.n_batch))


_results: dict[tuple[Any, ...], RefereeResult] = {}


def remember(path: str, s: LoadSettings, result: RefereeResult) -> None:
    if len(_results) > 64:
        _results.clear()
    _results[cache_key(path, s)] = result


def lookup(path: str, s: LoadSettings) -> RefereeResult | None:
    return _results.get(cache_key(path, s))


def run_referee(path: str, settings: LoadSettings, timeout: float = 180.0) -> RefereeResult:
    """Run llama.cpp's no-alloc pass on ``path`` in a child process (CPU placement, nothing read)."""
    cfg = {"n_ctx": settings.n_ctx, "n_ubatch": min(settings.n_ubatch, settings.n_batch),
           "type_k": settings.type_k, "type_v": settings.type_v, "flash_attn": settings.flash_attn != "off",
           "swa_full": settings.swa_full}
    try:
        r = subprocess.run([sys.executable, "-m", "core.referee", path, json.dumps(cfg)], capture_output=True,
                           text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return RefereeResult(False, error=f"llama.cpp's check did not finish ({exc})")
    out = r.stdout.strip().splitlines()
    if r.returncode != 0 or not out:
        return RefereeResult(False, error=f"llama.cpp's check stopped (exit status {r.returncode})")
    try:
        d = json.loads(out[-1])
    except ValueError:
        return RefereeResult(False, error="llama.cpp's check printed no result")
    if not d.get("ok"):
        return RefereeResult(False, error=str(d.get("error", "llama.cpp could not load the model")))
    return RefereeResult(True, int(d["weights"]), int(d["kv"]), int(d["rs"]))


def _child(path: str, cfg: dict[str, Any]) -> dict[str, Any]:
    import llama_cpp as L

    lines: list[str] = []

    @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    def cb(level: int, text: bytes, ud: Any) -> None:
        lines.append(text.decode(errors="replace"))

    L.llama_log_set(cb, None)
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = 0
    mp.use_extra_bufts = False  # the mapped weights alone (CPU_REPACK is planned per CPU separately)
    model = L.llama_model_load_from_file(path.encode(), mp)  # mmap: nothing is read
    if not model:
        err = [ln for ln in "".join(lines).splitlines() if "error" in ln.lower()]
        return {"ok": False, "error": err[-1].strip() if err else "llama.cpp could not load the model"}
    from core.llama_log import parse_log

    weights = sum(b.mib for b in parse_log(["".join(lines)]).buffers if b.kind == "model")  # chunks: join first
    L.llama_model_free(model)
    lines.clear()
    mp.no_alloc = True
    mp.load_mode = 0  # LLAMA_LOAD_MODE_NONE
    model = L.llama_model_load_from_file(path.encode(), mp)
    if not model:
        return {"ok": False, "error": "llama.cpp's no-alloc load failed"}
    cp = L.llama_context_default_params()
    cp.n_ctx = int(cfg["n_ctx"])
    cp.n_batch = cp.n_ubatch = int(cfg["n_ubatch"])
    cp.flash_attn_type = 1 if cfg["flash_attn"] else 0
    cp.type_k = _TYPE_ID.get(cfg["type_k"], 1)
    cp.type_v = _TYPE_ID.get(cfg["type_v"], 1)
    cp.swa_full = bool(cfg["swa_full"])
    ctx = L.llama_init_from_model(model, cp)
    text = "".join(lines)
    if not ctx:
        return {"ok": False, "error": "llama.cpp could not create a context for these settings"}
    kv = sum(float(m[1]) for m in _KV_RE.finditer(text))
    rs = sum(float(m[1]) for m in _RS_RE.finditer(text))
    return {"ok": True, "weights": round(weights * MiB), "kv": round(kv * MiB), "rs": round(rs * MiB)}


def _scaled(total_new: int, parts: list[int]) -> list[int]:
    """``parts`` rescaled to sum to ``total_new`` (a term's split between devices is kept)."""
    old = sum(parts)
    if old <= 0:
        return [total_new] + [0] * (len(parts) - 1)
    return [round(p * total_new / old) for p in parts]


def apply(plan: Plan, result: RefereeResult | None) -> Plan:
    """The plan checked by llama.cpp: its figures where the analytic ones are more than 2 % off."""
    if result is None or not result.ok:
        return plan
    from core.memory import cpu_buffers

    ana = cpu_buffers(plan.model, plan.settings)
    g, h = plan.gpu, plan.host
    gpu_w, host_w = g.weights, h.weights
    gpu_kv, host_kv, gpu_rs, host_rs = g.kv, h.kv, g.rs, h.rs
    replaced = []

    def off(ref: int, mine: int) -> bool:
        return abs(ref - mine) > TOLERANCE * max(ref, 1) and abs(ref - mine) > MiB

    if off(result.weights, ana["weights"]):
        gpu_w, host_w = _scaled(result.weights, [gpu_w, host_w])
        replaced.append(f"weights {result.weights / MiB:,.0f} MiB (LayerFit: {ana['weights'] / MiB:,.0f})")
    if off(result.kv, ana["kv"]):
        gpu_kv, host_kv = _scaled(result.kv, [gpu_kv, host_kv])
        replaced.append(f"KV cache {result.kv / MiB:,.0f} MiB (LayerFit: {ana['kv'] / MiB:,.0f})")
    if off(result.rs, ana["rs"]):
        gpu_rs, host_rs = _scaled(result.rs, [gpu_rs, host_rs])
        replaced.append(f"recurrent state {result.rs / MiB:,.0f} MiB (LayerFit: {ana['rs'] / MiB:,.0f})")
    if replaced:
        note = ("Checked by llama.cpp: its no-alloc pass disagrees by more than 2 %, so the plan uses "
                "llama.cpp's " + "; ".join(replaced) + ".")
    else:
        note = "Checked by llama.cpp: weights, KV cache and recurrent state agree within 2 %."
    return replace(plan, gpu=replace(g, weights=gpu_w, kv=gpu_kv, rs=gpu_rs),
                   host=replace(h, weights=host_w, kv=host_kv, rs=host_rs), verified=True, warnings=(),
                   checked_by_llamacpp=True, reasons=tuple(r for r in plan.reasons if r not in plan.warnings)
                   + (note,))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m core.referee MODEL.gguf SETTINGS_JSON", file=sys.stderr)
        return 2
    res = _child(argv[0], json.loads(argv[1]))
    sys.stdout.flush()
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
