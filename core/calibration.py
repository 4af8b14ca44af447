"""Learned per-GPU corrections: how far the plan's ``gpu.total`` was from what NVML measured.

The CUDA context and runtime workspaces depend on the GPU model and the driver, so the memory model's
overhead constants (measured on an H100) can be off by a few hundred MiB elsewhere. After each real
load the engine calls ``record(gpu.key, plan.gpu, measured_nvml_rise)``; later plans for the same
probed GPU add ``overhead_correction(gpu.key)`` (the median of the recent differences, clamped).
What-if cards never get a correction: there is nothing measured about them.

The same store learns decode speed: after a CPU-only chat the engine calls
``record_cpu_timing(cpu_key, predicted_seconds_per_token, measured_seconds_per_token)``, and
``core.speed`` fits a per-token fixed cost and a bandwidth scale to those samples (``core.speed_fit``),
so the trade-off chart's tok/s match this machine for small and big models alike. (The older
``record_cpu_speed`` ratios are still read by nothing but kept for stores written before.)

Stored as ``calibration.json`` under ``core.settings.data_dir()``, written atomically:
``{"version": 1, "gpus": {"<name>|<driver>": {"deltas": [int, ...]}}, "cpus": {"<cpu>": {"ratios": [...]}}}``.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

from core.atomic import write_json_atomic
from core.placement import DeviceMemory
from core.settings import data_dir

MAX_SAMPLES = 15  # keep the most recent differences only: drivers change
MAX_CORRECTION = 2 * 1024**3  # a larger gap means a broken measurement, not an overhead
SPEED_RATIO_RANGE = (0.02, 50.0)  # outside this a "measurement" is noise (a stalled or paused process)


def calibration_path() -> Path:
    return data_dir() / "calibration.json"


def _empty() -> dict[str, Any]:
    return {"version": 1, "gpus": {}}


_read_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def _load(path: Path, *, for_update: bool = False) -> dict[str, Any]:
    """The store's content. Plans call this on every slider move, so reads are cached by mtime.

    Before an update, a damaged file is kept aside as ``calibration.json.bad-<time>`` rather than
    silently replaced.
    """
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return _empty()
    hit = _read_cache.get(str(path))
    if hit is not None and hit[0] == mtime and not for_update:
        return hit[1]
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or not isinstance(raw.get("gpus"), dict):
            raise ValueError("not a calibration store")
    except OSError:
        return _empty()
    except ValueError:
        if for_update:
            with contextlib.suppress(OSError):
                path.replace(path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}"))
        return _empty()
    if not for_update:
        _read_cache[str(path)] = (mtime, raw)
    return raw


def record(gpu_key: str, planned: DeviceMemory, measured_total: int, path: Path | None = None) -> None:
    """Remember one plan-versus-measured difference (bytes) for ``gpu_key`` (``GPU.key``).

    The difference is computed against the plan's total *without* its own correction, so repeated
    loads converge instead of compounding. Raises ``core.atomic.SaveError`` if the file can't be written.
    """
    path = path or calibration_path()
    data = _load(path, for_update=True)
    entry = data["gpus"].setdefault(gpu_key, {"deltas": []})
    deltas = [int(x) for x in entry.get("deltas", []) if isinstance(x, (int, float))]
    base = planned.total - _current_correction(data, gpu_key)
    deltas.append(int(measured_total) - base)
    entry["deltas"] = deltas[-MAX_SAMPLES:]
    write_json_atomic(path, data)


def _current_correction(data: dict[str, Any], gpu_key: str) -> int:
    entry = data.get("gpus", {}).get(gpu_key)
    if not isinstance(entry, dict):
        return 0
    deltas = [int(x) for x in entry.get("deltas", []) if isinstance(x, (int, float))]
    if not deltas:
        return 0
    med = int(statistics.median(deltas))
    return max(-MAX_CORRECTION, min(MAX_CORRECTION, med))


def overhead_correction(gpu_key: str, path: Path | None = None) -> int:
    """Bytes to add to the planned GPU overhead for this GPU (0 when nothing was measured)."""
    return _current_correction(_load(path or calibration_path()), gpu_key)


def forget(gpu_key: str | None = None, path: Path | None = None) -> None:
    """Drop what was learned for one GPU, or for all when ``gpu_key`` is None."""
    path = path or calibration_path()
    data = _load(path, for_update=True)
    if gpu_key is None:
        data["gpus"] = {}
    else:
        data["gpus"].pop(gpu_key, None)
    write_json_atomic(path, data)


def record_cpu_speed(cpu_key: str, ratio: float, path: Path | None = None) -> None:
    """Remember one measured/predicted decode-speed ratio for a CPU-only load on ``cpu_key``."""
    lo, hi = SPEED_RATIO_RANGE
    if not lo <= ratio <= hi:
        return
    path = path or calibration_path()
    data = _load(path, for_update=True)
    cpus = data.setdefault("cpus", {})
    if not isinstance(cpus, dict):
        cpus = data["cpus"] = {}
    entry = cpus.setdefault(cpu_key, {"ratios": []})
    ratios = [float(x) for x in entry.get("ratios", []) if isinstance(x, (int, float))]
    ratios.append(float(ratio))
    entry["ratios"] = ratios[-MAX_SAMPLES:]
    write_json_atomic(path, data)


def cpu_speed_ratio(cpu_key: str, path: Path | None = None) -> float | None:
    """Median measured/predicted decode-speed ratio for this CPU, or None before any measurement."""
    entry = _load(path or calibration_path()).get("cpus", {})
    entry = entry.get(cpu_key) if isinstance(entry, dict) else None
    ratios = [float(x) for x in (entry or {}).get("ratios", []) if isinstance(x, (int, float))]
    return statistics.median(ratios) if ratios else None


MAX_TIMING_SAMPLES = 30
MAX_APART = 10


def record_cpu_timing(cpu_key: str, predicted_s: float, measured_s: float, path: Path | None = None) -> bool:
    """Remember one decode timing for a CPU-only load: the unlearned model's seconds per token
    (``predicted_s``) and the measured seconds per token. Returns False when the sample is far outside
    what the speed model can explain; it is then kept apart (``apart``) and not learned from."""
    from core.speed_fit import is_outlier

    path = path or calibration_path()
    data = _load(path, for_update=True)
    cpus = data.setdefault("cpus", {})
    if not isinstance(cpus, dict):
        cpus = data["cpus"] = {}
    entry = cpus.setdefault(cpu_key, {})
    samples = _timings(entry.get("timings"))
    ok = not is_outlier(predicted_s, measured_s, samples)
    key = "timings" if ok else "apart"
    kept = _timings(entry.get(key)) + [(float(predicted_s), float(measured_s))]
    entry[key] = [list(t) for t in kept[-(MAX_TIMING_SAMPLES if ok else MAX_APART):]]
    write_json_atomic(path, data)
    return ok


def _timings(raw: Any) -> list[tuple[float, float]]:
    out = []
    for t in raw if isinstance(raw, list) else []:
        if isinstance(t, list) and len(t) == 2 and all(isinstance(v, (int, float)) for v in t):
            out.append((float(t[0]), float(t[1])))
    return out


def cpu_timings(cpu_key: str, path: Path | None = None) -> list[tuple[float, float]]:
    """The learned (predicted, measured) seconds-per-token samples of this CPU."""
    entry = _load(path or calibration_path()).get("cpus", {})
    entry = entry.get(cpu_key) if isinstance(entry, dict) else None
    return _timings((entry or {}).get("timings"))
