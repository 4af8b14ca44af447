"""Decode speed of the demo model: this machine's build (-march=native, AMX left out) against the portable
build that `make freeze` bundles (runtime CPU dispatch), with its best variant and with the lowest one forced.

Needs `make portable-llama` first (build/llama-portable/lib). Each run is the set-up/doctor decode check
(core.selftest: a spawned child, greedy decode) with more tokens. Prints a Markdown table.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PORTABLE = ROOT / "build" / "llama-portable" / "lib"
TOKENS, RUNS = 64, 3

CODE = (f"import core.selftest as s; r = s.decode_check(n_tokens={TOKENS}); "
        "print('RESULT', r.ok, r.tokens_per_second, r.cpu_variant or 'native')")


def run(env: dict[str, str]) -> tuple[float, str]:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=600).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    _, ok, tps, variant = line.split()
    if ok != "True":
        raise SystemExit(f"decode check failed: {out}")
    return float(tps), variant


def main() -> int:
    if not (PORTABLE / ".complete").exists():
        print("skipped: build the portable llama.cpp first (make portable-llama)")
        return 0
    import llama_cpp

    tmp = Path(tempfile.mkdtemp(prefix="layerfit-portable-"))
    try:
        pkg = tmp / "llama_cpp"
        shutil.copytree(Path(llama_cpp.__file__).parent, pkg, ignore=shutil.ignore_patterns("lib"))
        shutil.copytree(PORTABLE, pkg / "lib", symlinks=True)
        base = {**os.environ, "PYTHONPATH": str(ROOT)}
        cases = [("this machine's build (native, no AMX)", base),
                 ("portable, best variant", {**base, "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT}"}),
                 ("portable, lowest variant forced", {**base, "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT}",
                                                      "LAYERFIT_CPU_VARIANT": "x64"})]
        print(f"| build | CPU variant | decode tok/s (median of {RUNS}, {TOKENS} tokens) | runs |")
        print("|---|---|---|---|")
        for name, env in cases:
            res = [run(env) for _ in range(RUNS)]
            tps = [r[0] for r in res]
            print(f"| {name} | {res[0][1]} | {statistics.median(tps):.1f} | {', '.join(f'{x:.1f}' for x in tps)} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
