"""The cost of llama.cpp's RPC backend: tokens/s of the demo model through one worker vs local, in one run.

Starts one ``layerfit worker`` on 127.0.0.1 (CPU backend), then, alternating, loads the same model
with the same settings through the engine (a) entirely on this machine's CPU and (b) with every layer
on the worker, and generates the same greedy reply. Each side runs ``--runs`` times; the medians and
their ratio (RPC / local) are printed as one JSON line. On one machine the worker and the engine share
the CPU, so this measures the protocol's overhead per token (a graph sent over TCP per token), not a
network.

    .venv/bin/python benchmarks/bench_rpc.py [--model PATH] [--runs 3] [--max-tokens 96] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import rpc  # noqa: E402
from core.demo import demo_model_path  # noqa: E402
from core.devices import multi_plan  # noqa: E402
from core.engine import Engine  # noqa: E402
from core.fit import make_plan  # noqa: E402
from core.gguf_info import read_model_info  # noqa: E402
from core.hardware import probe_ram_only  # noqa: E402
from core.loadsettings import LoadSettings  # noqa: E402
from core.sampling import SamplingSettings  # noqa: E402

PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tps(engine: Engine, sampling: SamplingSettings) -> tuple[float, int]:
    done = None
    for ev in engine.chat(PROMPT, sampling):
        if ev.kind == "done":
            done = ev
    assert done is not None
    return done.tokens_per_second, done.tokens


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for both sides (default: llama.cpp's)")
    args = ap.parse_args()
    path = Path(args.model) if args.model else demo_model_path()
    model = read_model_info(path)
    settings = LoadSettings(n_ctx=2048, n_threads=args.threads)
    sampling = SamplingSettings(temperature=0.0, max_tokens=args.max_tokens, seed=1)
    hw = probe_ram_only()
    port = _free_port()
    cmd = [sys.executable, "-m", "core", "worker", "--port", str(port)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    worker = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        ep = f"127.0.0.1:{port}"
        for _ in range(100):
            try:
                rpc.probe(ep, 1)
                break
            except rpc.WorkerError:
                time.sleep(0.2)
        local_plan = make_plan(model, settings, hw, 0, suggest=False)
        rpc_plan, dp = multi_plan(model, settings, hw, 0, [ep])
        local, remote, tokens = [], [], []
        for _ in range(args.runs):
            with Engine() as engine:
                engine.load(local_plan)
                tps, n = _tps(engine, sampling)
                local.append(tps)
                tokens.append(n)
            with Engine() as engine:
                result = engine.load(rpc_plan, devices=dp)
                assert result.devices and result.devices[0]["weights"] > 0, "nothing went to the worker"
                tps, n = _tps(engine, sampling)
                remote.append(tps)
                tokens.append(n)
        lm, rm = statistics.median(local), statistics.median(remote)
        print(json.dumps({"model": path.name, "runs": args.runs, "tokens": tokens,
                          "local_tps": [round(x, 1) for x in local], "rpc_tps": [round(x, 1) for x in remote],
                          "local_median": round(lm, 1), "rpc_median": round(rm, 1),
                          "rpc_over_local": round(rm / lm, 3) if lm else None,
                          "gpu_layers_on_worker": dp.gpu_layers, "threads": args.threads}))
    finally:
        worker.terminate()
        worker.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
