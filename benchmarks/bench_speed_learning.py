"""Speed learning with real chats on this machine (issue #12): can the demo poison big-model predictions?

Runs a few real CPU-only chats with the embedded demo model through the engine (a child process, real
llama.cpp), which records (predicted, measured) seconds per token into a throw-away calibration store.
Then it prints, for a Llama-3.2-1B-shaped Q4_K model: the fresh prediction, the prediction after
learning (fixed per-token cost + bandwidth term, ``core.speed_fit``), and what the old single
multiplicative ratio would have predicted. Run: ``python benchmarks/bench_speed_learning.py [chats]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main(n_chats: int) -> None:
    tmp = tempfile.mkdtemp()
    os.environ["LAYERFIT_DATA_DIR"] = tmp  # never touch the user's calibration store
    os.environ["LAYERFIT_CONFIG_DIR"] = tmp
    from gguf_factory import Shape, write_sparse_model

    from core import calibration
    from core.demo import demo_model_path
    from core.engine import Engine
    from core.fit import make_plan
    from core.gguf_info import read_model_info
    from core.hardware import Hardware, cpu_key, probe_ram_only
    from core.loadsettings import LoadSettings
    from core.sampling import SamplingSettings
    from core.speed import SpeedModel, predict_tps

    hw0 = probe_ram_only()
    hw = Hardware((), hw0.ram_total, hw0.ram_available, hw0.cpu_threads, gpu_problem="CPU-only benchmark")
    demo = read_model_info(demo_model_path())
    one_b = read_model_info(write_sparse_model(Path(tmp) / "1b.gguf", Shape(
        arch="llama", n_layer=16, n_embd=2048, n_head=32, n_head_kv=8, n_ff=8192, n_vocab=128256,
        n_ctx_train=131072, weight_type="Q4_K", output_type="Q6_K", embd_type="Q4_K", name="1b")))
    s = LoadSettings(n_ctx=4096)
    fresh = SpeedModel.for_hardware(hw, learned=False)
    fresh_demo, fresh_1b = predict_tps(demo, s, 0, fresh), predict_tps(one_b, s, 0, fresh)
    plan = make_plan(demo, LoadSettings(n_ctx=1024), hw, 0, suggest=False)
    measured = []
    with Engine() as engine:
        engine.load(plan)
        for i in range(n_chats):
            msgs = [{"role": "user", "content": f"Tell a short story number {i} about a lighthouse."}]
            done = list(engine.chat(msgs, SamplingSettings(temperature=0.0, max_tokens=64, seed=i)))[-1]
            measured.append(done.tokens_per_second)
    learned = SpeedModel.for_hardware(hw)
    ratio = statistics_median(measured) / fresh_demo
    old_1b = predict_tps(one_b, s, 0, SpeedModel(cpu_bandwidth=fresh.cpu_bandwidth, cpu_time_scale=1 / ratio))
    print(f"CPU {cpu_key()} ({hw.cpu_threads} threads), {n_chats} demo chats")
    print(f"demo: fresh prediction {fresh_demo:.1f} tok/s, measured {', '.join(f'{x:.1f}' for x in measured)}")
    print(f"learned: fixed cost {learned.cpu_fixed_cost * 1000:.2f} ms/token, bandwidth scale "
          f"{learned.cpu_time_scale:.2f}; samples kept {len(calibration.cpu_timings(cpu_key()))}")
    print(f"demo after learning: {predict_tps(demo, s, 0, learned):.1f} tok/s")
    print(f"1B Q4_K: fresh {fresh_1b:.2f} tok/s, after learning {predict_tps(one_b, s, 0, learned):.2f} tok/s "
          f"(ratio {predict_tps(one_b, s, 0, learned) / fresh_1b:.3f}); the old single ratio "
          f"({ratio:.3f}) would say {old_1b:.2f} tok/s")


def statistics_median(xs: list[float]) -> float:
    import statistics

    return statistics.median(xs)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
