"""Speed of the estimator: header parse of a large sparse GGUF, one estimate, one full plan.

Run: ``.venv/bin/python benchmarks/bench_estimate.py``. Targets (issue #3): parse < 100 ms for a
40 GB-class header with a 152k vocabulary, one estimate < 5 ms (a live slider), make_plan with
suggestions in tens of ms.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from gguf_factory import QWEN25_32B, write_sparse_model  # noqa: E402

from core.fit import make_plan  # noqa: E402
from core.gguf_info import read_model_info  # noqa: E402
from core.hardware import Hardware, what_if  # noqa: E402
from core.loadsettings import LoadSettings  # noqa: E402
from core.memory import estimate  # noqa: E402


def best_of(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        path = write_sparse_model(Path(d) / "qwen32b.gguf", QWEN25_32B)
        parse = best_of(lambda: read_model_info(path), 10)
        m = read_model_info(path)
        s = LoadSettings(n_ctx=131072)
        est = best_of(lambda: estimate(m, s, 40), 200)
        hw = what_if("t4", Hardware((), 64 * 1024**3, 64 * 1024**3, 16))
        plan = best_of(lambda: make_plan(m, s, hw, suggest=False), 50)
        plan_s = best_of(lambda: make_plan(m, s, hw), 20)
    print(f"header parse (32B Q4_K_M sparse, {m.file_size / 1024**3:.1f} GiB, 152k vocab): {parse:.1f} ms")
    print(f"one estimate: {est:.3f} ms")
    print(f"make_plan without suggestions: {plan:.2f} ms")
    print(f"make_plan with suggestions: {plan_s:.2f} ms")


if __name__ == "__main__":
    main()
