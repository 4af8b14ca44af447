"""How fast Stop, Unload and a dead parent take effect, and how fast hostile inputs are refused (issue #16).

The fault tests (tests/test_robust_*.py) check *that* these things happen, with hang guards only; this
script measures *how fast*, on CPU:

- Stop while a chat template never yields (the child's watchdog interrupts the template);
- Stop while the child ignores Stop (the parent ends the process at ``STOP_DEADLINE``);
- Unload from another thread while a reply is stuck;
- Stop during a long prompt evaluation of the demo model (llama.cpp's abort callback);
- the engine child's exit after its parent is SIGTERMed;
- lexing a 20,000-line SYSTEM, and refusing a 1 GiB nested-array GGUF header.

    .venv/bin/python benchmarks/bench_robust.py
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import psutil  # noqa: E402
from gguf_factory import Shape, write_tiny_model  # noqa: E402

from core.demo import demo_model_path  # noqa: E402
from core.engine import Engine  # noqa: E402
from core.fit import Plan  # noqa: E402
from core.gguf_info import ModelFileError, read_model_info  # noqa: E402
from core.hardware import Hardware  # noqa: E402
from core.loadsettings import LoadSettings  # noqa: E402
from core.modelfile import lex_modelfile  # noqa: E402
from core.placement import DeviceMemory, HostMemory  # noqa: E402
from core.sampling import SamplingSettings  # noqa: E402

NEVER_YIELDS = ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
                "{{ messages[0]['content'] }}")


def plan_for(path: Path, **settings: Any) -> Plan:
    info = read_model_info(path)
    s = LoadSettings(**{"n_ctx": 512, **settings}).with_(n_gpu_layers=0)
    return Plan(info, s, Hardware(), 0, 0, DeviceMemory(), HostMemory(), "100% CPU", False, True)


def wait_busy(pid: int, reply: threading.Thread | None = None) -> None:
    proc = psutil.Process(pid)
    while proc.cpu_percent(0.1) < 30:
        if reply is not None and not reply.is_alive():
            raise RuntimeError("the reply ended before it got busy")


def reply_thread(engine: Engine, messages: list[dict[str, str]]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["events"] = list(engine.chat(messages, SamplingSettings(max_tokens=8, temperature=0.0)))
        except Exception as exc:
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def stop_latency(model: Path, faults: dict[str, Any] | None = None,
                 messages: list[dict[str, str]] | None = None, **settings: Any) -> tuple[float, str]:
    with Engine(faults=faults) as engine:
        engine.load(plan_for(model, **settings))
        t, out = reply_thread(engine, messages or [{"role": "user", "content": "hi"}])
        assert engine.child_pid is not None
        wait_busy(engine.child_pid, t)
        t0 = time.perf_counter()
        engine.stop()
        t.join()
        dt = time.perf_counter() - t0
        how = type(out["error"]).__name__ if "error" in out else str(out["events"][-1].finish_reason)
        return dt, how


def unload_latency(model: Path) -> float:
    engine = Engine()
    engine.load(plan_for(model))
    t, _out = reply_thread(engine, [{"role": "user", "content": "hi"}])
    assert engine.child_pid is not None
    wait_busy(engine.child_pid)
    t0 = time.perf_counter()
    engine.interrupt()
    engine.unload()
    dt = time.perf_counter() - t0
    t.join()
    return dt


def orphan_exit(model: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = subprocess.Popen([sys.executable, "-m", "core", "run", str(model), "--prompt", "hi", "--ctx", "256"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(cli.pid)
    kids: list[psutil.Process] = []
    while not kids:
        kids = [k for k in parent.children(recursive=True) if k.cpu_percent(0.2) > 30]
    t0 = time.perf_counter()
    cli.send_signal(signal.SIGTERM)
    cli.wait()
    gone, alive = psutil.wait_procs(kids, timeout=30)
    for k in alive:
        k.kill()
    return time.perf_counter() - t0 if not alive else float("inf")


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-robust-"))
    stuck = write_tiny_model(tmp / "stuck.gguf", Shape(n_layer=2, chat_template=NEVER_YIELDS))
    dt, how = stop_latency(stuck)
    print(f"Stop, template never yields (watchdog):        {dt:6.2f} s  ({how})")
    dt, how = stop_latency(stuck, faults={"deaf_to_stop": True})
    print(f"Stop, child ignores Stop (parent's deadline):  {dt:6.2f} s  ({how})")
    print(f"Unload from another thread, reply stuck:       {unload_latency(stuck):6.2f} s")
    long_prompt = [{"role": "user", "content": "Describe this list. " + " ".join(f"item{i}" for i in range(1000))}]
    dt, how = stop_latency(demo_model_path(), messages=long_prompt, n_ctx=4096, n_batch=2048, n_ubatch=512)
    print(f"Stop during a long prompt eval (abort cb):     {dt:6.2f} s  ({how})")
    print(f"Engine child exit after its CLI is SIGTERMed:  {orphan_exit(stuck):6.2f} s")

    text = 'FROM /m.gguf\nSYSTEM """' + "\n".join(f"line {i}" for i in range(20_000)) + '"""\n'
    t0 = time.perf_counter()
    lex_modelfile(text)
    print(f"Lex a 20,000-line SYSTEM:                      {time.perf_counter() - t0:6.3f} s")
    nested = tmp / "nested.gguf"
    with open(nested, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"x"
                + struct.pack("<IIQ", 9, 9, 80_000_000))
        f.truncate(2**30)
    t0 = time.perf_counter()
    try:
        read_model_info(nested)
    except ModelFileError as exc:
        print(f"Refuse a 1 GiB nested-array header:            {time.perf_counter() - t0:6.3f} s  ({exc.problem[:40]}…)")


if __name__ == "__main__":
    main()
