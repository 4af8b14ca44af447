"""Prove that llama.cpp really runs here: load the demo model in a child process and decode a few tokens.

Used in two places:

* set-up (``python -m core.selftest --setup``, run by the Makefile right after a llama.cpp build): a build that
  crashes on this CPU stops set-up with a plain message instead of handing over a broken app;
* ``layerfit doctor``: "All good" is printed only once a model has really run, with its tokens/s.

The check runs in a separate process (multiprocessing "spawn", as the engine does) with a time limit, so a
SIGSEGV, SIGILL or a hang in llama.cpp becomes a finding in words, never a dead doctor.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from core.buildinfo import cpu_flags, cpu_model_name, parse_features

DEFAULT_TOKENS = 8
DEFAULT_TIMEOUT = 120.0
PROMPT = "The capital of France is"

# ggml's names for compiled-in instruction sets → the flag /proc/cpuinfo shows when the CPU has it.
GGML_TO_CPUINFO = {
    "SSE3": "pni", "SSSE3": "ssse3", "AVX": "avx", "AVX2": "avx2", "AVX_VNNI": "avx_vnni", "F16C": "f16c",
    "FMA": "fma", "BMI2": "bmi2", "AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16", "AMX_INT8": "amx_int8",
}

REBUILD_HINT = ("rebuild llama.cpp for this machine with `make rebuild-llama` (the build leaves AMX out and uses "
                "only what this CPU has), then run `layerfit doctor` again")


@dataclass(frozen=True)
class DecodeCheck:
    ok: bool
    tokens: int = 0
    tokens_per_second: float = 0.0
    load_seconds: float = 0.0
    text: str = ""
    stage: str = ""  # where it stopped: start | load | decode
    exitcode: int | None = None
    message: str = ""  # plain words: what happened, the likely cause and what to do
    cpu_variant: str | None = None
    features: list[str] = field(default_factory=list)


def signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


_SIGNAL_WORDS = {
    "SIGSEGV": "a segmentation fault",
    "SIGILL": "an illegal instruction",
    "SIGBUS": "a bus error",
    "SIGABRT": "an abort",
    "SIGKILL": "a kill (often the system running out of memory)",
    "SIGFPE": "an arithmetic fault",
}


def cpu_feature_report(system_info: str, flags: frozenset[str] | None = None) -> tuple[list[str], list[str]]:
    """(features the build uses that this CPU lacks, AMX features compiled in). Flags default to /proc/cpuinfo."""
    flags = cpu_flags() if flags is None else flags
    built = parse_features(system_info)
    missing: list[str] = []
    if flags:  # without /proc/cpuinfo we can't tell what the CPU lacks
        missing = sorted(f for f in built if f in GGML_TO_CPUINFO and GGML_TO_CPUINFO[f] not in flags)
    amx = sorted(f for f in built if f.startswith("AMX"))
    return missing, amx


def explain_crash(exitcode: int | None, stage: str, system_info: str = "",
                  flags: frozenset[str] | None = None) -> str:
    """Plain words for a child that died while loading or decoding: signal, likely cause, what to do."""
    if exitcode is None:
        what = f"llama.cpp did not finish the {stage} in time"
    elif exitcode < 0:
        name = signal_name(-exitcode)
        what = f"llama.cpp was killed by {name} ({_SIGNAL_WORDS.get(name, 'a signal')}) during the {stage}"
    else:
        what = f"the llama.cpp process exited with status {exitcode} during the {stage}"
    missing, amx = cpu_feature_report(system_info, flags)
    name = signal_name(-exitcode) if exitcode is not None and exitcode < 0 else ""
    if name == "SIGKILL":
        cause = "likely cause: the system ran out of memory"
        todo = "close other programs or pick a smaller model or context"
    elif amx:
        cause = (f"likely cause: this llama.cpp build has Intel AMX compiled in ({', '.join(amx)}), which "
                 "crashes on the first decode on many AMX CPUs (llama.cpp issue #20824)")
        todo = REBUILD_HINT
    elif missing:
        cause = (f"likely cause: the build uses CPU instructions this CPU ({cpu_model_name()}) doesn't have: "
                 f"{', '.join(missing)}")
        todo = REBUILD_HINT
    elif exitcode is None:
        cause = "likely cause: the CPU is very busy, or llama.cpp hung"
        todo = "try again; if it keeps happening, " + REBUILD_HINT
    else:
        cause = ("likely cause: a llama.cpp build that doesn't suit this CPU, or running out of memory "
                 f"(CPU: {cpu_model_name()})")
        todo = REBUILD_HINT
    return f"{what}; {cause}. What to do: {todo}."


def _child(conn: Connection, model: str, n_tokens: int, fault: str | None, log_path: str) -> None:
    """Load ``model`` and decode ``n_tokens`` greedily, reporting each stage to the parent."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    variant = None
    try:
        from core.backends import ensure_backends_loaded

        variant = ensure_backends_loaded()
        import llama_cpp

        info = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    except Exception as exc:
        conn.send(("error", "start", f"{type(exc).__name__}: {exc}", ""))
        return
    conn.send(("stage", "load", info, variant))
    if fault == "segv-load":
        os.kill(os.getpid(), signal.SIGSEGV)
    t0 = time.perf_counter()
    try:
        llm = llama_cpp.Llama(model_path=model, n_ctx=256, n_batch=64, n_gpu_layers=0, verbose=False,
                              n_threads=max(1, min(4, os.cpu_count() or 1)))
    except Exception as exc:
        conn.send(("error", "load", f"{type(exc).__name__}: {exc}", info))
        return
    t_load = time.perf_counter() - t0
    conn.send(("stage", "decode", info, variant))
    if fault == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if fault == "hang":
        time.sleep(3600)
    t1 = time.perf_counter()
    out: Any = llm(PROMPT, max_tokens=n_tokens, temperature=0.0)
    dt = time.perf_counter() - t1
    n = int(out.get("usage", {}).get("completion_tokens", 0))
    text = out["choices"][0]["text"]
    conn.send(("done", n, n / dt if dt > 0 else 0.0, t_load, text))


def decode_check(model: str | None = None, n_tokens: int = DEFAULT_TOKENS, timeout: float = DEFAULT_TIMEOUT,
                 fault: str | None = None) -> DecodeCheck:
    """Decode a few tokens of ``model`` (the demo model by default) in a child process. Never raises.

    ``fault`` is for tests: ``"segv"`` makes the child raise SIGSEGV at the first decode, ``"segv-load"``
    before the load, ``"hang"`` makes it hang so the time limit fires.
    """
    if model is None:
        from core.demo import demo_model_or_none

        demo = demo_model_or_none()
        if demo is None:
            return DecodeCheck(False, stage="start",
                               message="the demo model is not installed, so nothing can be decoded: run `make run`")
        model = str(demo)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    fd, log_path = tempfile.mkstemp(prefix="layerfit-selftest-", suffix=".log")
    os.close(fd)
    proc = ctx.Process(target=_child, args=(child, model, n_tokens, fault, log_path), daemon=True)
    stage, info, variant = "start", "", None
    deadline = time.monotonic() + timeout
    try:
        proc.start()
        child.close()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                proc.join(5)
                return DecodeCheck(False, stage=stage, exitcode=None, cpu_variant=variant,
                                   message=explain_crash(None, _stage_words(stage), info))
            if parent.poll(min(left, 0.5)):
                try:
                    msg = parent.recv()
                except (EOFError, OSError):
                    msg = None
                if msg is None:
                    proc.join(5)
                    return _died(proc.exitcode, stage, info, variant)
                if msg[0] == "stage":
                    stage, info, variant = msg[1], msg[2], msg[3]
                elif msg[0] == "error":
                    return DecodeCheck(False, stage=msg[1], cpu_variant=variant,
                                       message=f"llama.cpp failed during the {_stage_words(msg[1])}: {msg[2]}")
                elif msg[0] == "done":
                    proc.join(10)
                    return DecodeCheck(True, tokens=msg[1], tokens_per_second=msg[2], load_seconds=msg[3],
                                       text=msg[4], stage="done", cpu_variant=variant,
                                       features=sorted(parse_features(info)))
            elif not proc.is_alive():
                proc.join(1)
                return _died(proc.exitcode, stage, info, variant)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        with contextlib.suppress(Exception):
            parent.close()
        with contextlib.suppress(OSError):
            os.unlink(log_path)


def _stage_words(stage: str) -> str:
    return {"start": "start of llama.cpp", "load": "model load", "decode": "first decode"}.get(stage, stage)


def _died(exitcode: int | None, stage: str, info: str, variant: str | None) -> DecodeCheck:
    return DecodeCheck(False, stage=stage, exitcode=exitcode, cpu_variant=variant,
                       features=sorted(parse_features(info)),
                       message=explain_crash(exitcode, _stage_words(stage), info))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    res = decode_check()
    if res.ok:
        variant = f", CPU variant {res.cpu_variant}" if res.cpu_variant else ""
        print(f">>> llama.cpp works: decoded {res.tokens} tokens of the demo model at "
              f"{res.tokens_per_second:.0f} tokens/s{variant}")
        return 0
    if "--setup" in argv:
        print("\n*** Set-up stopped: the llama.cpp that was just built can't run the demo model on this machine.\n"
              f"*** {res.message}\n"
              "*** If it happens again after a rebuild, please report it with the output of `lscpu`.\n",
              file=sys.stderr)
    else:
        print(res.message, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
