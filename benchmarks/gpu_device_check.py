#!/usr/bin/env python3
"""All GPU checks of issues #3 and #4 in one run on a lent device, with results as JSON.

Issue #3 (estimator): for a list of configurations (dense llama and qwen2, MoE, sliding-window, Q4_K
and Q8_0; flash attention on and off; KV f16/q8_0/q4_0; full and partial offload; 2K-128K context) it
plans with ``core.fit.make_plan`` on the probed GPU, loads the plan through ``core.engine.Engine``
(one child process per load), chats a few tokens, and compares the plan's ``gpu.total`` with the rise
of NVML "used" after that first prompt (DESIGN.md's definition of ``gpu.total``).

Issue #4 (engine): the seed's case (a 32B shape at 128K on a card held down to 16 GiB free by a torch
filler process) loads what the fitter picked, then a plan forced to all layers walks the fallback
ladder; tokens/s at several offload levels of the 8B shape.

Models are synthetic GGUFs from ``tests/gguf_factory.py``: real tensor shapes, zero weights. They are
written sparse (header, then ``truncate()`` to full size): a hole reads as zeros, so llama.cpp's mmap
and its uploads to the GPU see a full-size file of zero weights while the disk holds a few MB.

Every result is written as soon as it exists, to ``$OUT/gpu_check.json`` (``OUT`` defaults to
``./gpu_check_out``), plus ``gpu_check.jsonl`` rows in the format of ``tests/data/h100_llama8b.jsonl``,
so a run cut off by the device's time limit still returns what it measured. ``--budget-s`` (and
``--deadline-unix``, for a deadline shared with the build that runs before) bounds the whole run: a
step that no longer fits is skipped and listed under ``skipped``.

Each load plans against a fresh, empty calibration store (``LAYERFIT_DATA_DIR``), so every planned
number is the raw estimator's, never one corrected by an earlier load of this run.

On the device (see benchmarks/gpu_device_check.md)::

    python3 benchmarks/gpu_device_check.py --deadline-unix $((T0 + 560))

Here, on a CPU-only machine, the same flow with a tiny model (no NVML: measured fields are null)::

    .venv/bin/python benchmarks/gpu_device_check.py --cpu-smoke
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT / "tests"), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)


def _ensure_platformdirs() -> None:
    """Stand in for platformdirs when it is missing (the device has no package index).

    ``core.settings`` imports it for the default folders only; this run always sets
    ``LAYERFIT_CONFIG_DIR``/``LAYERFIT_DATA_DIR``, so the stand-in's answers are never used for real.
    The spawned engine children import this module too (as ``__mp_main__``), so they get it as well.
    """
    try:
        import platformdirs  # noqa: F401
    except ImportError:
        shim = types.ModuleType("platformdirs")
        base = Path(tempfile.gettempdir()) / "layerfit-platformdirs"

        def _dir(kind: str) -> Callable[..., str]:
            return lambda appname=None, *args, **kwargs: str(base / kind / (appname or "app"))

        shim.user_config_dir = _dir("config")  # type: ignore[attr-defined]
        shim.user_data_dir = _dir("data")  # type: ignore[attr-defined]
        shim.user_cache_dir = _dir("cache")  # type: ignore[attr-defined]
        sys.modules["platformdirs"] = shim


_ensure_platformdirs()

from gguf_factory import (  # noqa: E402
    GEMMA2_9B,
    LLAMA3_8B,
    MIXTRAL_8X7B,
    QWEN25_7B,
    QWEN25_7B_Q8,
    QWEN25_32B,
    Shape,
    write_sparse_model,
)

from core.atomic import write_json_atomic, write_text_atomic  # noqa: E402
from core.engine import Engine, EngineError, LoadResult  # noqa: E402
from core.fit import Plan, make_plan  # noqa: E402
from core.gguf_info import ModelInfo, read_model_info  # noqa: E402
from core.hardware import Hardware, nvml_used, probe, what_if  # noqa: E402
from core.loadsettings import LoadSettings  # noqa: E402
from core.sampling import SamplingSettings  # noqa: E402

MiB = 1024**2
GiB = 1024**3

#: A zero-weight stand-in small enough for CPU: real Q4_K/Q6_K blocks (rows of 256), 2 layers.
TINY = Shape(arch="llama", n_layer=2, n_embd=256, n_head=4, n_head_kv=2, n_ff=512, n_vocab=512, n_ctx_train=4096,
             weight_type="Q4_K", output_type="Q6_K", name="tiny-zero-Q4_K")

SHAPES: dict[str, Shape] = {
    "llama8b": LLAMA3_8B,
    "qwen7b": QWEN25_7B,
    "qwen7b_q8": QWEN25_7B_Q8,
    "qwen32b": QWEN25_32B,
    "gemma2_9b": GEMMA2_9B,
    "mixtral": MIXTRAL_8X7B,
    "tiny": TINY,
}

#: About 24 prompt tokens through the fallback chat format (byte tokens), like the reference data's eval.
PROMPT = [{"role": "user", "content": "Name three colours."}]

#: Issue #3's tolerance: every configuration within max(5 %, 256 MiB).
TOLERANCE_PCT = 5.0
TOLERANCE_MIB = 256.0

#: Issue #3's reference decode speeds on an H100 box (8B Q4_K, 4K context), for the report.
REFERENCE_TPS = {0: 6.9, 16: 15.2, 24: 29.4, 32: 238.0, 33: 255.0}

PHASES = ("seed", "ladder", "core", "speed", "extra")


@dataclass(frozen=True)
class Config:
    """One load to measure: a model shape and the settings to plan with (``ngl`` None = fitter's choice)."""

    name: str
    model: str
    n_ctx: int
    ngl: int | None = None
    fa: str = "on"
    kv: str = "f16"
    swa_full: bool = False
    experts_on_cpu: bool = False
    n_batch: int = 512
    n_ubatch: int = 512

    def settings(self, threads: int | None) -> LoadSettings:
        return LoadSettings(n_ctx=self.n_ctx, n_gpu_layers=self.ngl, type_k=self.kv, type_v=self.kv,
                            flash_attn=self.fa, swa_full=self.swa_full, experts_on_cpu=self.experts_on_cpu,
                            n_batch=self.n_batch, n_ubatch=self.n_ubatch, n_threads=threads)


def _full(name: str, model: str, n_ctx: int, **kw: Any) -> Config:
    """All layers on the GPU (the output layer counts as one), pinned so the fitter can't pick fewer."""
    n1 = SHAPES[model].n_layer + 1
    return Config(name, model, n_ctx, ngl=kw.pop("ngl", n1), **kw)


#: Tier 1: a spread over the five architecture families, cheapest loads first within each.
CORE_CONFIGS: tuple[Config, ...] = (
    _full("llama8b 4K FA f16 full", "llama8b", 4096),
    _full("qwen7b 4K FA f16 full", "qwen7b", 4096),
    _full("gemma2 8K FA f16 full", "gemma2_9b", 8192),
    _full("mixtral 4K FA f16 full", "mixtral", 4096),
    _full("qwen7b-q8 8K FA f16 full", "qwen7b_q8", 8192),
    _full("llama8b 128K FA q4_0 full", "llama8b", 131072, kv="q4_0"),
    _full("qwen7b 32K noFA f16 full", "qwen7b", 32768, fa="off"),
    _full("gemma2 8K noFA f16 full", "gemma2_9b", 8192, fa="off"),
    _full("gemma2 8K FA f16 full swa_full", "gemma2_9b", 8192, swa_full=True),
    _full("qwen7b 128K FA q8_0 full", "qwen7b", 131072, kv="q8_0"),
    Config("llama8b 32K noFA f16 ngl20", "llama8b", 32768, ngl=20, fa="off"),
    Config("qwen7b 16K FA f16 ngl14", "qwen7b", 16384, ngl=14),
    Config("mixtral 16K noFA f16 ngl16", "mixtral", 16384, ngl=16, fa="off"),
    _full("qwen32b 32K FA q8_0 full", "qwen32b", 32768, kv="q8_0"),
)

#: Tier 2: more of each, run when time is left after the seed, speed and ladder checks.
EXTRA_CONFIGS: tuple[Config, ...] = (
    _full("llama8b 2K noFA f16 full", "llama8b", 2048, fa="off"),
    _full("llama8b 32K FA q8_0 full", "llama8b", 32768, kv="q8_0"),
    _full("qwen7b 2K noFA f16 full", "qwen7b", 2048, fa="off"),
    _full("qwen7b 64K FA q4_0 full", "qwen7b", 65536, kv="q4_0"),
    _full("qwen7b-q8 32K noFA f16 full", "qwen7b_q8", 32768, fa="off"),
    _full("qwen7b-q8 128K FA q4_0 full", "qwen7b_q8", 131072, kv="q4_0"),
    Config("gemma2 4K FA q8_0 ngl20", "gemma2_9b", 4096, ngl=20, kv="q8_0"),
    Config("gemma2 8K noFA f16 ngl30", "gemma2_9b", 8192, ngl=30, fa="off"),
    _full("mixtral 32K FA q8_0 full", "mixtral", 32768, kv="q8_0"),
    _full("mixtral 8K FA f16 full experts-in-RAM", "mixtral", 8192, experts_on_cpu=True),
    _full("mixtral 4K noFA f16 full", "mixtral", 4096, fa="off"),
    Config("llama8b 8K FA f16 ngl0", "llama8b", 8192, ngl=0),
    _full("llama8b 128K noFA f16 full", "llama8b", 131072, fa="off"),
    _full("qwen32b 8K noFA f16 full", "qwen32b", 8192, fa="off"),
    Config("qwen32b 128K FA q4_0 ngl40", "qwen32b", 131072, ngl=40, kv="q4_0"),
    _full("qwen32b 128K FA f16 full", "qwen32b", 131072),
)

SMOKE_CONFIGS: tuple[Config, ...] = (
    Config("tiny 512 FA f16", "tiny", 512),
    Config("tiny 1K noFA f16", "tiny", 1024, fa="off"),
)


# --- plumbing --------------------------------------------------------------------------------------

class Deadline:
    """The wall-clock budget of the whole run, on the monotonic clock."""

    def __init__(self, budget_s: float, deadline_unix: float | None = None) -> None:
        end = time.monotonic() + budget_s
        if deadline_unix is not None:
            end = min(end, time.monotonic() + (deadline_unix - time.time()))
        self.end = end

    def remaining(self) -> float:
        return self.end - time.monotonic()


def _mib(n: int | float | None) -> float | None:
    return None if n is None else round(n / MiB, 1)


def _sub(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a - b


class Results:
    """The JSON document, written to disk after every change (a cut-off run still returns data)."""

    def __init__(self, out_dir: Path, head: dict[str, Any]) -> None:
        self.dir = out_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data: dict[str, Any] = {**head, "phases": {}, "models": {}, "seed": None, "ladder": None,
                                     "speed": [], "configs": [], "skipped": [], "summary": None}
        self.t0 = time.monotonic()
        self.save()

    def save(self) -> None:
        self.data["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        write_json_atomic(self.dir / "gpu_check.json", self.data)
        rows = [json.dumps(_jsonl_row(r)) for r in _load_records(self.data) if r.get("nvml_mib")]
        write_text_atomic(self.dir / "gpu_check.jsonl", "".join(row + "\n" for row in rows))

    def skip(self, what: str, why: str) -> None:
        print(f"  skipped {what}: {why}", flush=True)
        self.data["skipped"].append({"what": what, "why": why})
        self.save()


def _load_records(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measured load of the run: the seed fit, the speed sweep, the configurations."""
    seed = data.get("seed") or {}
    out = [seed["fit"]] if seed.get("fit") else []
    return out + list(data.get("speed") or []) + list(data.get("configs") or [])


def _jsonl_row(r: dict[str, Any]) -> dict[str, Any]:
    """One load in the shape of ``tests/data/h100_llama8b.jsonl`` (MiB above the pre-load baseline)."""
    s, nv = r["settings"], r["nvml_mib"]
    base = nv.get("base")
    loaded = r.get("loaded") or {}
    return {
        "cfg": {"model": r["model"], "ngl": (loaded.get("gpu_layers_planned", r["planned"]["gpu_layers"])),
                "ctx": s["n_ctx"], "fa": s["flash_attn"] == "on", "kv": s["type_k"], "nb": s["n_batch"],
                "nub": s["n_ubatch"], "swa_full": s["swa_full"], "experts_on_cpu": s["experts_on_cpu"],
                "offload_kqv": s["offload_kqv"], "name": r["name"]},
        "err": r.get("error"),
        "oom": bool(r.get("error")) and "memory" in str(r.get("error")).lower(),
        "t_load": loaded.get("load_s"),
        "vram_base_mib": base,
        "vram_load_mib": None if base is None or nv.get("after_load") is None else round(nv["after_load"] - base, 4),
        "vram_eval_mib": None if base is None or nv.get("after_eval") is None else round(nv["after_eval"] - base, 4),
        "bufs": loaded.get("buffers_mib", {}),
        "planned_mib": r.get("planned_mib"),
        "tps": (r.get("chat") or {}).get("tokens_per_second"),
    }


class Filler:
    """A torch process that holds GPU memory until only ``keep_free`` bytes are free (a smaller card)."""

    CODE = r"""
import sys, time
import pynvml, torch
target, hold_s = int(sys.argv[1]), float(sys.argv[2])
torch.empty(1, device="cuda")  # create the context first: its memory counts too
pynvml.nvmlInit(); h = pynvml.nvmlDeviceGetHandleByIndex(0)
held = []
while True:
    extra = pynvml.nvmlDeviceGetMemoryInfo(h).free - target
    if extra < 64 * 2**20:
        break
    try:
        held.append(torch.empty(min(extra, 4 * 2**30), dtype=torch.uint8, device="cuda"))
    except RuntimeError:
        break
print("READY", pynvml.nvmlDeviceGetMemoryInfo(h).free, flush=True)
time.sleep(hold_s)
"""

    def __init__(self, keep_free: int, hold_s: float) -> None:
        self.keep_free = keep_free
        self.hold_s = hold_s
        self.proc: subprocess.Popen[str] | None = None
        self.free_after: int | None = None

    def start(self, timeout: float = 90.0) -> int:
        """Start it and wait until it holds its memory; returns NVML's free bytes then."""
        self.proc = subprocess.Popen([sys.executable, "-c", self.CODE, str(self.keep_free), str(self.hold_s)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("READY"):
                    self.free_after = int(line.split()[1])
                    return self.free_after
                if not line:
                    break
        self.stop()
        raise RuntimeError("the torch filler process did not get ready")

    def stop(self) -> None:
        """End the process we started (by its own handle) and wait for the memory to come back."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None
        time.sleep(1.0)  # let the driver release it before the next baseline


# --- one measured load ----------------------------------------------------------------------------

class Run:
    """Everything one run shares: options, models, the deadline, the results document."""

    def __init__(self, args: argparse.Namespace, results: Results, deadline: Deadline, model_dir: Path,
                 scratch: Path) -> None:
        self.args = args
        self.results = results
        self.deadline = deadline
        self.model_dir = model_dir
        self.smoke: bool = bool(args.cpu_smoke)
        self.threads: int | None = args.threads
        self.store_root = scratch / "calibration"
        self.n_store = 0
        self.infos: dict[str, ModelInfo] = {}
        self.filler: Filler | None = None

    # models

    def model(self, key: str) -> ModelInfo:
        """Write (once) the sparse zero-weight GGUF for ``key`` and read its header."""
        if key not in self.infos:
            shape = SHAPES[key]
            path = self.model_dir / f"{key}.gguf"
            t0 = time.perf_counter()
            if not path.exists():
                write_sparse_model(path, shape)
            info = read_model_info(path)
            self.infos[key] = info
            self.results.data["models"][key] = {
                "name": shape.name, "arch": info.arch, "n_layer": info.n_layer, "file_mib": _mib(info.file_size),
                "weights_mib": _mib(info.weights_bytes), "write_s": round(time.perf_counter() - t0, 2)}
            self.results.save()
        return self.infos[key]

    def cost_guess(self, key: str) -> float:
        """Seconds one load-chat-unload of ``key`` likely takes (spawn, upload, a few tokens, teardown)."""
        return 6.0 + self.model(key).file_size / 2.5e9

    def hold_free(self, keep_free: int) -> int:
        """Start the filler (once) so the card has ``keep_free`` bytes free; returns NVML's free bytes."""
        if self.filler is None:
            self.filler = Filler(keep_free, hold_s=max(60.0, self.deadline.remaining() + 60.0))
            self.filler.start()
        return int(self.filler.free_after or 0)

    def release_filler(self) -> None:
        if self.filler is not None:
            self.filler.stop()
            self.filler = None

    def fresh_store(self) -> None:
        """An empty calibration store, so the next plan is the raw estimator's."""
        self.n_store += 1
        d = self.store_root / f"{self.n_store:03d}"
        d.mkdir(parents=True, exist_ok=True)
        os.environ["LAYERFIT_DATA_DIR"] = str(d)

    def hardware(self) -> Hardware:
        return probe()

    # the measurement

    def measure(self, name: str, key: str, plan: Plan, *, max_tokens: int, cap_s: float | None = None,
                faults: dict[str, Any] | None = None) -> dict[str, Any]:
        """Load ``plan`` through the Engine, chat once, unload; NVML around each step.

        ``cap_s`` bounds this load (the ladder can take many rungs); the run's deadline always does.
        A cancelled or failed load is recorded with its error, never raised.
        """
        rec: dict[str, Any] = {"name": name, "model": SHAPES[key].name, "arch": plan.model.arch,
                               "settings": plan.settings.to_dict(), "planned": _plan_dict(plan),
                               "planned_mib": _mib(plan.gpu.total), "loaded": None, "fallbacks": [],
                               "ladder_status": [], "chat": None, "error": None}
        limit = self.deadline.remaining() - 2.0
        if cap_s is not None:
            limit = min(limit, cap_s)
        engine = Engine(faults=faults)
        cancel = threading.Event()

        def on_timeout() -> None:
            rec["timed_out"] = True
            cancel.set()
            engine.stop()

        watchdog = threading.Timer(max(1.0, limit), on_timeout)
        watchdog.daemon = True
        status: list[str] = rec["ladder_status"]
        t0 = time.perf_counter()
        base = nvml_used(0)
        after_load = after_eval = engine_delta = freed = None
        watchdog.start()
        try:
            res = engine.load(plan, cancel=cancel, status=status.append)
            after_load = nvml_used(0)
            engine_delta = res.placement.nvml_delta
            rec["loaded"] = _loaded_dict(res)
            rec["fallbacks"] = [f.to_dict() for f in res.fallbacks]
            loaded_plan = res.plan or plan
            rec["planned_mib"] = _mib(loaded_plan.gpu.total)  # what finally loaded (after any fallback)
            rec["requested_planned_mib"] = _mib(plan.gpu.total)
            rec["chat"] = self._chat(engine, max_tokens)
            after_eval = nvml_used(0)
        except EngineError as exc:  # EngineCrashed, LoadCancelled, out of memory even on the CPU, …
            rec["error"] = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug here must not end the run: record it and go on
            rec["error"] = f"unexpected {type(exc).__name__}: {exc}"
        finally:
            watchdog.cancel()
            with contextlib.suppress(Exception):
                freed = engine.unload()
            engine.close()
        after_unload = nvml_used(0)
        rec["elapsed_s"] = round(time.perf_counter() - t0, 2)
        rec["calibration_recorded"] = _read_store()
        if base is not None:
            rec["nvml_mib"] = {"base": _mib(base), "after_load": _mib(after_load), "after_eval": _mib(after_eval),
                               "after_unload": _mib(after_unload), "engine_delta": _mib(engine_delta),
                               "unload_freed": _mib(freed), "residual": _mib(_sub(after_unload, base))}
        else:
            rec["nvml_mib"] = None
        measured = _sub(after_eval, base)
        rec["measured_mib"] = _mib(measured)
        rec["error_mib"] = rec["error_pct"] = rec["within_tolerance"] = None
        if measured is not None and measured > 0 and rec["loaded"] is not None:
            planned = rec["planned_mib"] * MiB
            diff = planned - measured
            rec["error_mib"] = _mib(diff)
            rec["error_pct"] = round(100.0 * diff / measured, 3)
            rec["within_tolerance"] = abs(diff) <= max(TOLERANCE_PCT / 100 * measured, TOLERANCE_MIB * MiB)
        _print_row(rec)
        return rec

    def _chat(self, engine: Engine, max_tokens: int) -> dict[str, Any] | None:
        sampling = SamplingSettings(temperature=0.0, top_k=1, repeat_penalty=1.0, seed=0, max_tokens=max_tokens)
        for ev in engine.chat(PROMPT, sampling):
            if ev.kind == "done":
                return {"tokens": ev.tokens, "prompt_tokens": ev.extra.get("prompt_tokens"),
                        "tokens_per_second": round(ev.tokens_per_second, 2),
                        "ttft_s": round(ev.time_to_first_token, 3),
                        "child_ttft_s": round(float(ev.extra.get("child_ttft", 0.0)), 3),
                        "finish_reason": ev.finish_reason}
        return None

    def config(self, cfg: Config, hw: Hardware | None = None, *, max_tokens: int = 8) -> dict[str, Any]:
        """Plan ``cfg`` on ``hw`` (probed when None) against an empty store, then measure it."""
        info = self.model(cfg.model)
        self.fresh_store()
        plan = make_plan(info, cfg.settings(self.threads), hw or self.hardware(), suggest=False)
        return self.measure(cfg.name, cfg.model, plan, max_tokens=max_tokens)


def _read_store() -> dict[str, Any] | None:
    """What the engine taught the calibration store during this load (``core.calibration``'s file)."""
    path = Path(os.environ.get("LAYERFIT_DATA_DIR", "")) / "calibration.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _plan_dict(p: Plan) -> dict[str, Any]:
    return {"gpu_layers": p.gpu_layers, "processor": p.processor, "gpu": p.gpu.to_dict(), "host": p.host.to_dict(),
            "fits": p.fits, "fits_gpu": p.fits_gpu, "use_gpu": p.use_gpu, "levers": list(p.levers),
            "flash_attn": p.flash_attn, "predicted_tps": round(p.predicted_tps, 2), "usable_vram": p.usable_vram,
            "kv_total": p.kv_total}


def _loaded_dict(res: LoadResult) -> dict[str, Any]:
    d = res.to_dict()
    d["gpu_layers_planned"] = res.plan.gpu_layers if res.plan is not None else None
    d["load_s"] = round(res.load_seconds, 2)
    return d


def _print_row(r: dict[str, Any]) -> None:
    chat = r.get("chat") or {}
    err = f"  ERROR {r['error']}" if r.get("error") else ""
    print(f"  {r['name']:<40} ngl {r['planned']['gpu_layers']:>3}  planned {r['planned_mib']!s:>9} MiB  "
          f"measured {r.get('measured_mib')!s:>9} MiB  err {r.get('error_pct')!s:>7} %  "
          f"tok/s {chat.get('tokens_per_second')!s:>7}  {r['elapsed_s']} s{err}", flush=True)


# --- phases ----------------------------------------------------------------------------------------

def phase_seed(run: Run) -> None:
    """Issue #4's seed case: the 32B shape at 128K on a card with 16 GiB free; load what the fitter picks."""
    key, n_ctx = ("tiny", 2048) if run.smoke else ("qwen32b", 131072)
    info = run.model(key)
    out: dict[str, Any] = {"model": SHAPES[key].name, "n_ctx": n_ctx, "filler": None}
    run.results.data["seed"] = out
    if not run.smoke:
        free = run.hold_free(int(run.args.seed_free_gib * GiB))
        out["filler"] = {"keep_free_mib": _mib(run.args.seed_free_gib * GiB), "free_after_mib": _mib(free)}
    run.fresh_store()
    hw = run.hardware()
    plan = make_plan(info, LoadSettings(n_ctx=n_ctx, n_threads=run.threads), hw)
    out["hardware_free_mib"] = _mib(hw.vram_free)
    out["reasons"] = list(plan.reasons)
    out["suggestions"] = [s.text for s in plan.suggestions]
    rec = run.measure("seed: fitter's plan", key, plan, max_tokens=8)
    free_now = None if run.smoke else probe().vram_free  # after unload: the filler's level again
    rec["free_after_unload_mib"] = _mib(free_now)
    if rec.get("measured_mib") is not None and out["filler"] is not None:
        # VRAM left unused while the model ran: what was free before the load minus the rise.
        rec["unused_mib"] = round(out["filler"]["free_after_mib"] - rec["measured_mib"], 1)
    rec["no_oom"] = rec["error"] is None and not rec["fallbacks"]
    out["fit"] = rec
    run.results.save()


def phase_ladder(run: Run) -> None:
    """A plan forced to all layers on the held-down card: the engine's ladder must recover, no crash."""
    key = "tiny" if run.smoke else "qwen32b"
    n_ctx = 2048 if run.smoke else run.args.ladder_ctx
    info = run.model(key)
    faults: dict[str, Any] | None = None
    if run.smoke:  # no GPU here: a what-if card, a build that pretends offload, injected OOM above 0 layers
        hw = what_if("1GiB")
        faults = {"pretend_gpu": True, "oom_above_gpu_layers": 0}
    else:
        run.hold_free(int(run.args.seed_free_gib * GiB))
        hw = run.hardware()
    run.fresh_store()
    settings = LoadSettings(n_ctx=n_ctx, n_gpu_layers=info.n_layer + 1, n_threads=run.threads)
    plan = make_plan(info, settings, hw, suggest=False)
    cap = min(run.args.ladder_cap_s, run.deadline.remaining() - 5.0)
    rec = run.measure(f"ladder: forced {info.n_layer + 1} layers", key, plan, max_tokens=4, cap_s=cap, faults=faults)
    crashed = "EngineCrashed" in str(rec.get("error"))
    rec["recovered"] = rec["error"] is None
    rec["no_crash"] = not crashed
    rec["steps"] = len(rec["ladder_status"])
    rec["free_mib_planned_for"] = _mib(hw.vram_free)
    run.results.data["ladder"] = rec
    run.results.save()


def phase_speed(run: Run) -> None:
    """Decode tokens/s at several offload levels (issue #3's reference points), 8B shape at 4K."""
    run.release_filler()
    key, levels, n_ctx, max_tokens = (("tiny", (0,), 512, 8) if run.smoke
                                      else ("llama8b", run.args.speed_levels, 4096, run.args.speed_tokens))
    for ngl in levels:
        need = run.cost_guess(key) + (12.0 if ngl < 24 and not run.smoke else 0.0)
        if run.deadline.remaining() < need:
            run.results.skip(f"speed ngl {ngl}", f"{run.deadline.remaining():.0f} s left, needs ~{need:.0f} s")
            continue
        cfg = Config(f"speed {key} 4K FA ngl{ngl}" if not run.smoke else f"speed tiny ngl{ngl}", key, n_ctx, ngl=ngl)
        rec = run.config(cfg, max_tokens=max_tokens)
        rec["reference_tps"] = REFERENCE_TPS.get(ngl) if not run.smoke else None
        run.results.data["speed"].append(rec)
        run.results.save()


def _phase_configs(run: Run, configs: Iterable[Config]) -> None:
    run.release_filler()
    for cfg in configs:
        need = run.cost_guess(cfg.model)
        if run.deadline.remaining() < need:
            run.results.skip(cfg.name, f"{run.deadline.remaining():.0f} s left, needs ~{need:.0f} s")
            continue
        rec = run.config(cfg)
        run.results.data["configs"].append(rec)
        run.results.save()


def phase_core(run: Run) -> None:
    _phase_configs(run, SMOKE_CONFIGS if run.smoke else CORE_CONFIGS)


def phase_extra(run: Run) -> None:
    _phase_configs(run, () if run.smoke else EXTRA_CONFIGS)


PHASE_FUNCS: dict[str, Callable[[Run], None]] = {
    "seed": phase_seed, "core": phase_core, "speed": phase_speed, "ladder": phase_ladder, "extra": phase_extra}

#: Rough minimum seconds for a phase to be worth starting.
PHASE_MIN_S = {"seed": 30.0, "ladder": 25.0, "core": 8.0, "speed": 8.0, "extra": 8.0}


# --- summary ---------------------------------------------------------------------------------------

def summarize(data: dict[str, Any]) -> dict[str, Any]:
    """Plan-versus-measured over every measured load, in issue #3's terms."""
    rows = [r for r in _load_records(data) if r.get("error_pct") is not None]
    errs = [abs(r["error_pct"]) for r in rows]
    seed = (data.get("seed") or {}).get("fit") or {}
    ladder = data.get("ladder") or {}
    return {
        "measured": len(rows),
        "within_tolerance": sum(1 for r in rows if r["within_tolerance"]),
        "median_abs_error_pct": round(statistics.median(errs), 3) if errs else None,
        "worst_abs_error_pct": round(max(errs), 3) if errs else None,
        "errors": sum(1 for r in _load_records(data) if r.get("error")),
        "seed_no_oom": seed.get("no_oom"),
        "seed_error_pct": seed.get("error_pct"),
        "seed_unused_mib": seed.get("unused_mib"),
        "ladder_recovered": ladder.get("recovered"),
        "ladder_no_crash": ladder.get("no_crash"),
        "ladder_steps": ladder.get("steps"),
    }


def print_table(data: dict[str, Any]) -> None:
    print("\n| config | ngl | planned MiB | measured MiB | error % | tok/s | note |")
    print("|---|---|---|---|---|---|---|")
    for r in [*_load_records(data), *([data["ladder"]] if data.get("ladder") else [])]:
        loaded = r.get("loaded") or {}
        ngl = loaded.get("gpu_layers_planned", r["planned"]["gpu_layers"])
        tps = (r.get("chat") or {}).get("tokens_per_second")
        note = r.get("error") or (f"{len(r['fallbacks'])} fallback(s)" if r.get("fallbacks") else "")
        print(f"| {r['name']} | {ngl} | {r['planned_mib']} | {r.get('measured_mib')} | {r.get('error_pct')} | "
              f"{tps} | {note} |")
    print(json.dumps(data.get("summary"), indent=1))


def markdown_report(data: dict[str, Any]) -> str:
    """The run as Markdown for docs/benchmarks.md: device, seed, ladder, speed and the config table."""
    dev = data.get("device") or {}
    lines = [f"Device: {dev.get('name', 'no GPU')} (driver {dev.get('driver')}, CUDA {dev.get('cuda')}, "
             f"{dev.get('total_mib')} MiB), {data.get('cpu_threads')} CPU threads; mode {data.get('mode')}. "
             "Models: synthetic GGUFs with real tensor shapes and zero weights (tests/gguf_factory.py). "
             "Measured = rise of NVML \"used\" after load and a first chat (~50 prompt tokens), planned = "
             "`make_plan(...).gpu.total` with an empty calibration store.", ""]
    seed = data.get("seed") or {}
    fit = seed.get("fit")
    if fit:
        lines += ["### Seed case (issue #4)", "",
                  f"{seed.get('model')} at n_ctx {seed.get('n_ctx')}, card held to "
                  f"{(seed.get('filler') or {}).get('free_after_mib')} MiB free by a torch filler. The fitter "
                  f"picked {fit['planned']['gpu_layers']} GPU layers ({fit['planned']['processor']}).", "",
                  "| planned MiB | measured MiB | error % | unused MiB | no OOM | tok/s |", "|---|---|---|---|---|---|",
                  f"| {fit['planned_mib']} | {fit.get('measured_mib')} | {fit.get('error_pct')} | "
                  f"{fit.get('unused_mib')} | {fit.get('no_oom')} | {(fit.get('chat') or {}).get('tokens_per_second')} |",
                  ""]
    lad = data.get("ladder")
    if lad:
        lines += ["### Forced plan and the fallback ladder (issue #4)", "",
                  f"All {lad['planned']['gpu_layers']} layers forced at n_ctx {lad['settings']['n_ctx']} "
                  f"({lad.get('requested_planned_mib')} MiB planned) with {lad.get('free_mib_planned_for')} MiB free: "
                  f"recovered {lad.get('recovered')}, no crash {lad.get('no_crash')}, "
                  f"{lad.get('steps')} step(s), {lad.get('elapsed_s')} s. Error: {lad.get('error')}.", ""]
        lines += [f"{i + 1}. {text}" for i, text in enumerate(lad.get("ladder_status") or [])] + [""]
    if data.get("speed"):
        lines += ["### Decode speed by offload level", "",
                  "| GPU layers | measured tok/s | predicted tok/s | reference tok/s (issue #3) |", "|---|---|---|---|"]
        for r in data["speed"]:
            lines.append(f"| {r['planned']['gpu_layers']} | {(r.get('chat') or {}).get('tokens_per_second')} | "
                         f"{r['planned']['predicted_tps']} | {r.get('reference_tps')} |")
        lines.append("")
    rows = [*data.get("speed", []), *data.get("configs", [])]
    if rows:
        lines += ["### Planned vs measured GPU memory (issue #3)", "",
                  "| config | arch | GPU layers | ctx | FA | KV | planned MiB | measured MiB | error % | in tolerance |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            s = r["settings"]
            lines.append(f"| {r['name']} | {r['arch']} | {r['planned']['gpu_layers']} | {s['n_ctx']} | "
                         f"{s['flash_attn']} | {s['type_k']} | {r['planned_mib']} | {r.get('measured_mib')} | "
                         f"{r.get('error_pct')} | {r.get('within_tolerance')}"
                         + (f" ({r['error']})" if r.get("error") else "") + " |")
        summ = data.get("summary") or summarize(data)
        lines += ["", f"With the seed case: {summ['within_tolerance']} of {summ['measured']} within max(5 %, 256 MiB); median absolute "
                      f"error {summ['median_abs_error_pct']} %, worst {summ['worst_abs_error_pct']} %.", ""]
    if data.get("skipped"):
        lines += ["Skipped for time: " + ", ".join(x["what"] for x in data["skipped"]) + ".", ""]
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------------

def _device_head(smoke: bool) -> dict[str, Any]:
    hw = probe()
    g = hw.gpu
    return {
        "version": 1,
        "mode": "cpu-smoke" if smoke else "gpu",
        "started_unix": round(time.time(), 1),
        "device": None if g is None else {"name": g.name, "driver": g.driver, "cuda": g.cuda_version,
                                          "total_mib": _mib(g.total), "free_mib": _mib(g.free),
                                          "used_mib": _mib(g.used)},
        "gpu_problem": hw.gpu_problem,
        "cpu_threads": hw.cpu_threads,
        "ram_total_mib": _mib(hw.ram_total),
        "python": sys.version.split()[0],
    }


def _fs_type(path: Path) -> str:
    """The filesystem type holding ``path`` (from /proc/mounts; "" when it can't be told)."""
    best, kind = "", ""
    with contextlib.suppress(OSError):
        real = str(path.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and (real == parts[1] or real.startswith(parts[1].rstrip("/") + "/")) \
                    and len(parts[1]) >= len(best):
                best, kind = parts[1], parts[2]
    return kind


def pick_model_dir(scratch: Path) -> Path:
    """Where the sparse GGUFs go: never a tmpfs.

    llama.cpp mmaps them; a read fault on a hole of a tmpfs file allocates a real page that stays in
    RAM (shmem), so ~70 GB of zero-weight models would fill memory. On a disk filesystem the same
    faults fill the page cache, which the kernel can drop.
    """
    for cand in (scratch / "models", ROOT / "build" / "gpu_models"):
        if _fs_type(cand.parent) != "tmpfs":
            return cand
    return scratch / "models"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny model on the CPU: tests the flow, no GPU")
    ap.add_argument("--budget-s", type=float, default=240.0, help="wall-clock budget of the whole run")
    ap.add_argument("--deadline-unix", type=float, default=None,
                    help="absolute end (seconds since the epoch); the earlier of this and the budget wins")
    ap.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, in order, from {PHASES}")
    ap.add_argument("--model-dir", type=Path, default=None, help="where the sparse GGUFs go (a temp dir)")
    ap.add_argument("--seed-free-gib", type=float, default=16.0, help="free VRAM the filler leaves (seed, ladder)")
    ap.add_argument("--ladder-ctx", type=int, default=131072,
                    help="context of the forced all-layers plan (the seed's 128K by default)")
    ap.add_argument("--ladder-cap-s", type=float, default=75.0, help="most seconds the ladder check may take")
    ap.add_argument("--speed-levels", type=lambda s: tuple(int(x) for x in s.split(",")),
                    default=(33, 32, 24, 16, 8, 0), help="GPU layers for the tok/s sweep")
    ap.add_argument("--speed-tokens", type=int, default=32, help="tokens generated per speed point")
    ap.add_argument("--report", type=Path, default=None,
                    help="print a finished run's gpu_check.json as Markdown (for docs/benchmarks.md) and exit")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: all cores; 2 in smoke)")
    args = ap.parse_args(argv)
    if args.threads is None:
        args.threads = 2 if args.cpu_smoke else (os.cpu_count() or 4)
    bad = [p for p in args.phases.split(",") if p not in PHASES]
    if bad:
        ap.error(f"unknown phase(s) {bad}: choose from {PHASES}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report is not None:
        print(markdown_report(json.loads(args.report.read_text(encoding="utf-8"))))
        return 0
    deadline = Deadline(args.budget_s, args.deadline_unix)
    out_dir = Path(os.environ.get("OUT") or "gpu_check_out")
    scratch = Path(tempfile.mkdtemp(prefix="layerfit-gpu-check-"))
    os.environ.setdefault("LAYERFIT_CONFIG_DIR", str(scratch / "config"))
    os.environ["LAYERFIT_DATA_DIR"] = str(scratch / "data")
    model_dir = args.model_dir or pick_model_dir(scratch)
    model_dir.mkdir(parents=True, exist_ok=True)
    head = _device_head(args.cpu_smoke)
    results = Results(out_dir, head)
    results.data["budget_s"] = round(deadline.remaining(), 1)
    results.data["model_dir"] = {"path": str(model_dir), "fs": _fs_type(model_dir)}
    if not args.cpu_smoke and head["device"] is None:
        results.data["fatal"] = f"no NVIDIA GPU answered ({head['gpu_problem']}); use --cpu-smoke here"
        results.save()
        shutil.rmtree(scratch, ignore_errors=True)
        print(results.data["fatal"], file=sys.stderr)
        return 2
    print(f"LayerFit GPU check ({head['mode']}): {head['device']}, {deadline.remaining():.0f} s budget", flush=True)
    run = Run(args, results, deadline, model_dir, scratch)
    try:
        for name in args.phases.split(","):
            left = deadline.remaining()
            if left < PHASE_MIN_S[name]:
                results.data["phases"][name] = "skipped"
                results.skip(f"phase {name}", f"{left:.0f} s left")
                continue
            print(f"== {name} ({left:.0f} s left)", flush=True)
            results.data["phases"][name] = "running"
            t0 = time.monotonic()
            try:
                PHASE_FUNCS[name](run)
                results.data["phases"][name] = f"done in {time.monotonic() - t0:.1f} s"
            except Exception as exc:  # one broken phase must not lose the others' data
                results.data["phases"][name] = f"failed: {type(exc).__name__}: {exc}"
                print(f"  phase {name} failed: {exc}", flush=True)
            results.save()
    finally:
        run.release_filler()
        results.data["summary"] = summarize(results.data)
        results.save()
        shutil.rmtree(scratch, ignore_errors=True)  # the sparse models and calibration stores
    print_table(results.data)
    print(f"results: {out_dir / 'gpu_check.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
