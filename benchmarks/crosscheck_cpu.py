"""Cross-check core.memory against llama.cpp's own allocator, on CPU, with sparse full-size models.

llama.cpp reports its buffer sizes in the log. With ``no_alloc`` (model params) and
``load_mode = none`` it builds the model and context without allocating or reading anything, and
still prints the KV cache size (``llama_kv_cache: size = …``; two caches for sliding-window models)
and the compute buffer the scheduler reserves for the worst-case graph (``CPU compute buffer size``).
That takes well under a second even for a 128K context of a 30B model, so the estimator's
mechanisms (KV cells and rows, SWA cache sizes, the graph's peak per architecture, flash attention
versus the f32 KQ matrix, MoE routing) can be compared with llama.cpp itself on a machine with no GPU.

Each probe runs in a child process (``--probe``) so that a llama.cpp abort can't take the caller down.

Run: ``.venv/bin/python benchmarks/crosscheck_cpu.py [--quick] [--markdown]``: it writes the sparse
models into a temporary folder (a few MB on disk), sweeps shape x context x FA x KV type x swa_full x
ubatch, and prints measured versus predicted MiB for the KV cache and the compute buffer.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024**2
#: ggml type ids of the KV cache types LayerFit offers.
GGML_TYPE_ID = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8}

_KV_RE = re.compile(r"llama_kv_cache: size = +([\d.]+) MiB \( *(\d+) cells, +(\d+) layers")
_COMPUTE_RE = re.compile(r"(\S+) compute buffer size = +([\d.]+) MiB")
_OUTPUT_RE = re.compile(r"(\S+) +output buffer size = +([\d.]+) MiB")
_MODEL_RE = re.compile(r"(\S+) model buffer size = +([\d.]+) MiB")
_RS_RE = re.compile(r"llama_memory_recurrent: size = +([\d.]+) MiB \( *(\d+) cells, +(\d+) layers")


@dataclass(frozen=True)
class Probe:
    """One llama.cpp context configuration."""

    n_ctx: int
    flash_attn: bool
    type_kv: str = "f16"
    n_ubatch: int = 512
    swa_full: bool = False


def _child(path: str, p: Probe, real_load: bool, repack: bool = False) -> dict[str, Any]:
    """Runs in the child: load with no_alloc (or a real mmap load), create the context, parse the log."""
    import llama_cpp as L

    lines: list[str] = []

    @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    def cb(level: int, text: bytes, ud: Any) -> None:
        lines.append(text.decode(errors="replace"))

    L.llama_log_set(cb, None)
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = 0
    mp.use_extra_bufts = repack  # without it no CPU_REPACK copy: weights stay in the mapped file
    if not real_load:
        mp.no_alloc = True
        mp.load_mode = 0  # LLAMA_LOAD_MODE_NONE: mmap can't be combined with no_alloc
    model = L.llama_model_load_from_file(path.encode(), mp)
    if not model:
        return {"ok": False, "error": "load failed", "log": "".join(lines)[-3000:]}
    cp = L.llama_context_default_params()
    cp.n_ctx = p.n_ctx
    cp.n_batch = p.n_ubatch
    cp.n_ubatch = p.n_ubatch
    cp.flash_attn_type = 1 if p.flash_attn else 0
    cp.type_k = GGML_TYPE_ID[p.type_kv]
    cp.type_v = GGML_TYPE_ID[p.type_kv]
    cp.swa_full = p.swa_full
    ctx = L.llama_init_from_model(model, cp)
    text = "".join(lines)
    if not ctx:
        return {"ok": False, "error": "context failed", "log": text[-3000:]}
    kv = [{"mib": float(m[1]), "cells": int(m[2]), "layers": int(m[3])} for m in _KV_RE.finditer(text)]
    compute = {m[1]: float(m[2]) for m in _COMPUTE_RE.finditer(text)}
    output = {m[1]: float(m[2]) for m in _OUTPUT_RE.finditer(text)}
    weights = {m[1]: float(m[2]) for m in _MODEL_RE.finditer(text)}
    rs = [{"mib": float(m[1]), "cells": int(m[2]), "layers": int(m[3])} for m in _RS_RE.finditer(text)]
    fa = "flash_attn            = enabled" in text
    return {"ok": True, "kv": kv, "compute": compute, "output": output, "weights": weights, "fa": fa, "rs": rs}


def _child_many(path: str, probes: list[Probe]) -> dict[str, Any]:
    """Runs in the child: one real mmap load for the weights (never evaluated: a sparse file costs
    nothing), then one no_alloc load and a context per probe. One process per model keeps a sweep
    over many architectures affordable."""
    import llama_cpp as L

    lines: list[str] = []

    @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    def cb(level: int, text: bytes, ud: Any) -> None:
        lines.append(text.decode(errors="replace"))

    L.llama_log_set(cb, None)
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = 0
    mp.use_extra_bufts = False
    model = L.llama_model_load_from_file(path.encode(), mp)
    if not model:
        return {"ok": False, "error": "load failed", "log": "".join(lines)[-3000:]}
    weights = {m[1]: float(m[2]) for m in _MODEL_RE.finditer("".join(lines))}
    L.llama_model_free(model)
    lines.clear()
    mp.no_alloc = True
    mp.load_mode = 0
    model = L.llama_model_load_from_file(path.encode(), mp)
    if not model:
        return {"ok": False, "error": "no_alloc load failed", "log": "".join(lines)[-3000:]}
    results = []
    for p in probes:
        lines.clear()
        cp = L.llama_context_default_params()
        cp.n_ctx = p.n_ctx
        cp.n_batch = p.n_ubatch
        cp.n_ubatch = p.n_ubatch
        cp.flash_attn_type = 1 if p.flash_attn else 0
        cp.type_k = GGML_TYPE_ID[p.type_kv]
        cp.type_v = GGML_TYPE_ID[p.type_kv]
        cp.swa_full = p.swa_full
        ctx = L.llama_init_from_model(model, cp)
        text = "".join(lines)
        if not ctx:
            results.append({"ok": False, "error": "context failed", "log": text[-3000:]})
            continue
        results.append({
            "ok": True,
            "kv": [{"mib": float(m[1]), "cells": int(m[2]), "layers": int(m[3])} for m in _KV_RE.finditer(text)],
            "rs": [{"mib": float(m[1]), "cells": int(m[2]), "layers": int(m[3])} for m in _RS_RE.finditer(text)],
            "compute": {m[1]: float(m[2]) for m in _COMPUTE_RE.finditer(text)},
            "output": {m[1]: float(m[2]) for m in _OUTPUT_RE.finditer(text)},
            "fa": "flash_attn            = enabled" in text})
        L.llama_free(ctx)
    return {"ok": True, "weights": weights, "probes": results}


def probe_many(path: str | Path, probes: list[Probe], timeout: float = 300.0) -> dict[str, Any]:
    """Weights (real mmap load) and the buffers of every probe, from one child process."""
    args = [sys.executable, str(Path(__file__).resolve()), "--probe-many", str(path),
            json.dumps([p.__dict__ for p in probes])]
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    out = r.stdout.strip().splitlines()
    if r.returncode != 0 or not out:
        return {"ok": False, "error": f"llama.cpp exited with {r.returncode}", "log": r.stderr[-3000:]}
    result: dict[str, Any] = json.loads(out[-1])
    return result


def probe(path: str | Path, p: Probe, real_load: bool = False, timeout: float = 120.0,
          repack: bool = False) -> dict[str, Any]:
    """llama.cpp's buffer sizes for ``p`` (MiB, as logged), from a child process. ``repack`` (with
    ``real_load``) lets llama.cpp make its CPU_REPACK copies, as llama-cpp-python does by default."""
    args = [sys.executable, str(Path(__file__).resolve()), "--probe", str(path), json.dumps(p.__dict__)]
    if real_load:
        args.append("--real")
    if repack:
        args.append("--repack")
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    out = r.stdout.strip().splitlines()
    if r.returncode != 0 or not out:
        return {"ok": False, "error": f"llama.cpp exited with {r.returncode}", "log": r.stderr[-3000:]}
    result: dict[str, Any] = json.loads(out[-1])
    return result


# --- the sweep ---------------------------------------------------------------------------------

def predicted(path: str | Path, p: Probe) -> dict[str, float]:
    """core.memory's numbers for the same pieces, in MiB."""
    sys.path.insert(0, str(ROOT))
    from core.gguf_info import read_model_info
    from core.loadsettings import LoadSettings
    from core.memory import cpu_buffers

    model = read_model_info(path)
    s = LoadSettings(n_ctx=p.n_ctx, n_batch=p.n_ubatch, n_ubatch=p.n_ubatch, type_k=p.type_kv, type_v=p.type_kv,
                     flash_attn="on" if p.flash_attn else "off", swa_full=p.swa_full)
    b = cpu_buffers(model, s)
    return {k: v / MiB for k, v in b.items()}


def _shapes() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    import gguf_factory as gf

    return {"llama3-8b Q4_K": gf.LLAMA3_8B, "qwen2.5-7b Q4_K": gf.QWEN25_7B, "qwen2.5-7b Q8_0": gf.QWEN25_7B_Q8,
            "mixtral-8x7b Q4_K": gf.MIXTRAL_8X7B, "qwen3-30b-a3b Q4_K": gf.QWEN3_30B_A3B,
            "gemma2-9b Q4_K": gf.GEMMA2_9B, "gemma3-12b Q4_K": gf.GEMMA3_12B, "gemma3-27b Q4_K": gf.GEMMA3_27B,
            "gpt-oss-20b MXFP4": gf.GPT_OSS_20B}


def sweep(quick: bool) -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT / "tests"))
    import gguf_factory as gf

    ctxs = [2048, 32768] if quick else [2048, 8192, 32768, 131072]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, shape in _shapes().items():
            path = Path(tmp) / (shape.name + ".gguf")
            gf.write_sparse_model(path, shape)
            swa = bool(shape.sliding_window)
            for n_ctx in ctxs:
                for fa in (True, False):
                    for kv in (("f16", "q8_0", "q4_0") if fa else ("f16",)):
                        for swa_full in ((False, True) if swa else (False,)):
                            for ub in ((512, 2048) if kv == "f16" and not quick else (512,)):
                                p = Probe(n_ctx, fa, kv, ub, swa_full)
                                m = probe(path, p)
                                if not m["ok"]:
                                    rows.append({"shape": name, "probe": p, "error": m["error"]})
                                    continue
                                pr = predicted(path, p)
                                rows.append({"shape": name, "probe": p,
                                             "kv": (sum(c["mib"] for c in m["kv"]), pr["kv"]),
                                             "compute": (m["compute"].get("CPU", 0.0), pr["compute"]),
                                             "output": (m["output"].get("CPU", 0.0), pr["output"])})
    return rows


def _err(pair: tuple[float, float]) -> float:
    meas, pred = pair
    return (pred - meas) / meas * 100 if meas else 0.0


def report(rows: list[dict[str, Any]], markdown: bool) -> str:
    out = []
    if markdown:
        out.append("| model | ctx | FA | KV | swa_full | ubatch | KV MiB llama.cpp / est | compute MiB llama.cpp / est |")
        out.append("|---|---|---|---|---|---|---|---|")
    for r in rows:
        p = r["probe"]
        head = [r["shape"], str(p.n_ctx), "on" if p.flash_attn else "off", p.type_kv,
                "on" if p.swa_full else "off", str(p.n_ubatch)]
        if "error" in r:
            cells = head + [r["error"], ""]
        else:
            cells = head + [f"{r['kv'][0]:.2f} / {r['kv'][1]:.2f} ({_err(r['kv']):+.2f}%)",
                            f"{r['compute'][0]:.2f} / {r['compute'][1]:.2f} ({_err(r['compute']):+.2f}%)"]
        out.append(("| " + " | ".join(cells) + " |") if markdown else "  ".join(cells))
    out.append("")
    if markdown:
        out.append("| model | configs | KV max / median abs error | compute max / median abs error |")
        out.append("|---|---|---|---|")
    for name in dict.fromkeys(r["shape"] for r in rows):
        ok = [r for r in rows if r["shape"] == name and "error" not in r]
        if not ok:
            continue
        kv = [abs(_err(r["kv"])) for r in ok]
        co = [abs(_err(r["compute"])) for r in ok]
        cells = [name, str(len(ok)), f"{max(kv):.2f}% / {statistics.median(kv):.2f}%",
                 f"{max(co):.2f}% / {statistics.median(co):.2f}%"]
        out.append(("| " + " | ".join(cells) + " |") if markdown else "  ".join(cells))
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--probe", nargs=2, metavar=("GGUF", "JSON"), help=argparse.SUPPRESS)
    ap.add_argument("--real", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--repack", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--probe-many", nargs=2, metavar=("GGUF", "JSON"), help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="2 contexts, ubatch 512 only")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    a = ap.parse_args()
    if a.probe_many:
        res = _child_many(a.probe_many[0], [Probe(**d) for d in json.loads(a.probe_many[1])])
        sys.stdout.flush()
        print(json.dumps(res))
        return
    if a.probe:
        res = _child(a.probe[0], Probe(**json.loads(a.probe[1])), a.real, a.repack)
        sys.stdout.flush()
        print(json.dumps(res))
        return
    print(report(sweep(a.quick), a.markdown))


if __name__ == "__main__":
    main()
