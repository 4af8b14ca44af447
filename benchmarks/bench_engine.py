"""Tokens/s and time to first token: through the Engine (child process, pipe) vs bare llama-cpp-python.

Same model (the demo model unless ``--model``), same load settings, same greedy sampling and prompt,
so both sides generate the same tokens. Both are timed the same way, at the consumer: time to first
token from the request to the first streamed text, tokens/s from the first to the last streamed
piece. The goal (issue #4): the engine keeps ≥ 97 % of bare tokens/s, and its first token comes no
more than 50 ms later.

    .venv/bin/python benchmarks/bench_engine.py [--model PATH] [--runs 3] [--max-tokens 128] [--gpu-layers N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.demo import demo_model_path  # noqa: E402
from core.engine import Engine  # noqa: E402
from core.fit import Plan  # noqa: E402
from core.gguf_info import read_model_info  # noqa: E402
from core.hardware import Hardware  # noqa: E402
from core.loadsettings import LoadSettings  # noqa: E402
from core.placement import DeviceMemory, HostMemory  # noqa: E402
from core.sampling import SamplingSettings  # noqa: E402

PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]


def timed(pieces: Iterator[str]) -> tuple[float, float, int]:
    """(time to first piece, pieces/s after the first, pieces) for a stream of text pieces."""
    t0 = time.perf_counter()
    first = last = 0.0
    n = 0
    for _ in pieces:
        now = time.perf_counter()
        if n == 0:
            first = now
        last = now
        n += 1
    tps = (n - 1) / (last - first) if n > 1 and last > first else 0.0
    return first - t0, tps, n


def bare_stream(llm: Any, sampling: SamplingSettings) -> Iterator[str]:
    for chunk in llm.create_chat_completion(PROMPT, stream=True, temperature=sampling.temperature,
                                            top_p=sampling.top_p, top_k=sampling.top_k, min_p=sampling.min_p,
                                            repeat_penalty=sampling.repeat_penalty,
                                            max_tokens=sampling.max_tokens, seed=sampling.seed):
        text = chunk["choices"][0]["delta"].get("content")
        if text:
            yield text


def engine_stream(engine: Engine, sampling: SamplingSettings, reported: list[float]) -> Iterator[str]:
    for ev in engine.chat(PROMPT, sampling):
        if ev.kind == "token":
            yield ev.text
        elif ev.kind == "done":
            reported.append(ev.tokens_per_second)


def measure(path: Path, settings: LoadSettings, gpu_layers: int, sampling: SamplingSettings,
            runs: int) -> tuple[list[tuple[float, float, int]], list[tuple[float, float, int]], list[float]]:
    """Both loaded at once, runs interleaved (bare, engine, bare, …) so drifting machine load hits both."""
    import llama_cpp

    info = read_model_info(path)
    plan = Plan(info, settings.with_(n_gpu_layers=gpu_layers), Hardware(), 0, gpu_layers, DeviceMemory(),
                HostMemory(), "", gpu_layers > info.n_layer, True, flash_attn=True)
    llm = llama_cpp.Llama(str(path), n_gpu_layers=gpu_layers, n_ctx=settings.n_ctx, n_batch=settings.n_batch,
                          n_ubatch=settings.n_ubatch, flash_attn=True, swa_full=False, verbose=False)
    bare: list[tuple[float, float, int]] = []
    eng: list[tuple[float, float, int]] = []
    reported: list[float] = []
    with Engine() as engine:
        engine.load(plan)
        timed(bare_stream(llm, sampling))  # warm-ups
        timed(engine_stream(engine, sampling, []))
        for _ in range(runs):
            bare.append(timed(bare_stream(llm, sampling)))
            eng.append(timed(engine_stream(engine, sampling, reported)))
    llm.close()
    return bare, eng, reported


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--gpu-layers", type=int, default=0)
    ap.add_argument("--ctx", type=int, default=2048)
    a = ap.parse_args()
    path = a.model or demo_model_path()
    settings = LoadSettings(n_ctx=a.ctx, flash_attn="on")
    sampling = SamplingSettings(temperature=0.0, max_tokens=a.max_tokens, seed=1)

    bare, eng, reported = measure(path, settings, a.gpu_layers, sampling, a.runs)

    def med(rows: list[tuple[float, float, int]], i: int) -> Any:
        return statistics.median(r[i] for r in rows)

    b_ttft, b_tps, b_n = med(bare, 0), med(bare, 1), med(bare, 2)
    e_ttft, e_tps, e_n = med(eng, 0), med(eng, 1), med(eng, 2)
    print(f"model {path.name}, n_ctx {a.ctx}, gpu layers {a.gpu_layers}, greedy, max {a.max_tokens} tokens, "
          f"median of {a.runs} interleaved runs after a warm-up")
    print(f"{'':28}{'tokens/s':>10}{'first token':>14}{'pieces':>8}")
    print(f"{'bare llama-cpp-python':28}{b_tps:10.1f}{b_ttft * 1000:11.1f} ms{b_n:8.0f}")
    print(f"{'Engine (child process)':28}{e_tps:10.1f}{e_ttft * 1000:11.1f} ms{e_n:8.0f}")
    if reported:
        print(f"{'Engine, as it reports':28}{statistics.median(reported):10.1f}")
    ratio = e_tps / b_tps if b_tps else 0.0
    print(f"engine/bare tokens/s {ratio * 100:.1f} % (goal ≥ 97 %), first token {(e_ttft - b_ttft) * 1000:+.1f} ms "
          f"(goal ≤ +50 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
