"""Per-architecture table: core.memory against llama.cpp's buffer lines for 28 architectures (CPU).

Writes each architecture's sparse full-size GGUF (``tests/arch_models.py``: a real model's metadata,
the tensor list llama.cpp asks for), loads it in one llama.cpp child per model (mmap for the weights,
``no_alloc`` contexts for the rest) and prints a Markdown table of the worst error per term over the
probes of ``tests/test_archs_llamacpp.py``. Run: ``python benchmarks/crosscheck_archs.py [ARCH ...]``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from arch_models import ARCHS, load_specs, write_spec_model  # noqa: E402
from crosscheck_cpu import probe_many  # noqa: E402
from test_archs_llamacpp import PROBES, _settings  # noqa: E402

from core.archs import arch_layout  # noqa: E402
from core.gguf_info import read_model_info  # noqa: E402
from core.memory import cpu_buffers  # noqa: E402

MiB = 1024**2


def main(names: list[str]) -> None:
    specs = load_specs()
    print("| arch | model (shape) | KV+RS MiB at 128K q8_0, llama.cpp / LayerFit | worst KV+RS error | "
          "worst compute error | worst total error | weights MiB | verified |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in names or sorted(ARCHS):
            path = write_spec_model(Path(tmp) / f"{arch}.gguf", arch, specs)
            model = read_model_info(path)
            got = probe_many(path, PROBES)
            if not got.get("ok"):
                print(f"| {arch} | {ARCHS[arch]['model']} | load failed | | | | | |")
                continue
            w = sum(got["weights"].values())
            kv_err = co_err = tot_err = 0.0
            co_mib = 0.0
            big = ""
            for p, m in zip(PROBES, got["probes"], strict=True):
                pred = {k: v / MiB for k, v in cpu_buffers(model, _settings(p)).items()}
                kv = sum(c["mib"] for c in m["kv"]) + sum(c["mib"] for c in m["rs"])
                co = m["compute"]["CPU"]
                tot = w + kv + co + m["output"]["CPU"]
                ptot = pred["weights"] + pred["kv"] + pred["rs"] + pred["compute"] + pred["output"]
                kv_err = max(kv_err, abs(pred["kv"] + pred["rs"] - kv))
                if abs(pred["compute"] - co) > abs(co_err):
                    co_err, co_mib = pred["compute"] - co, co
                tot_err = max(tot_err, abs(ptot - tot) / tot * 100)
                if p.n_ctx == 131072:
                    big = f"{kv:.2f} / {pred['kv'] + pred['rs']:.2f}"
            verified = "yes" if arch_layout(model).verified else "no"
            print(f"| {arch} | {ARCHS[arch]['model']} | {big} | {kv_err:.2f} MiB | {co_err:+.1f} MiB "
                  f"({co_err / co_mib * 100:+.1f} %) | {tot_err:.2f} % | {w:.0f} | {verified} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
