"""The engine with real llama.cpp in a child process: the demo model and tiny synthetic GGUFs, on CPU.

The fallback-ladder tests inject memory failures through the engine's ``faults`` test hook (see
core/engine_child.py): the child raises the same ``ValueError('Failed to create llama_context')`` a
real cudaMalloc failure gives, or SIGKILLs itself mid-load, for plans above a number of GPU layers.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import llama_cpp
import pytest
from gguf_factory import Shape, write_tiny_model

from core.demo import demo_model_path
from core.engine import ChatEvent, Engine, EngineCrashed, EngineError, LoadCancelled, cpu_only, crash_message
from core.fit import Plan
from core.gguf_info import read_model_info
from core.hardware import Hardware
from core.loadsettings import LoadSettings
from core.placement import DeviceMemory, HostMemory
from core.sampling import SamplingSettings

FRANCE = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
SMOLLM2_LAYERS = 30  # SmolLM2-135M: 30 blocks (its model card / config.json num_hidden_layers)


def make_plan(path: Path, gpu_layers: int = 0, **settings: object) -> Plan:
    """A hand-built plan (the fitter's estimates are not what these tests check)."""
    info = read_model_info(path)
    s = LoadSettings(**{"n_ctx": 512, **settings}).with_(n_gpu_layers=gpu_layers)  # type: ignore[arg-type]
    return Plan(info, s, Hardware(), 0, gpu_layers, DeviceMemory(), HostMemory(),
                "100% CPU" if gpu_layers == 0 else "planned GPU", gpu_layers > info.n_layer, True)


def collect(events: Iterator[ChatEvent]) -> list[ChatEvent]:
    return list(events)


@pytest.fixture(scope="module")
def demo() -> Iterator[Engine]:
    """One engine with the demo model loaded on CPU, shared by the tests that only chat."""
    engine = Engine()
    engine.load(make_plan(demo_model_path()))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny.gguf", Shape(n_layer=4))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- load and measured placement ------------------------------------------------------------------

def test_demo_loads_on_cpu_with_a_measured_placement(demo: Engine) -> None:
    r = demo.loaded
    assert r is not None
    p = r.placement
    assert p.measured is True
    assert p.processor == "100% CPU"
    assert p.gpu_layers == 0
    assert p.n_layer == SMOLLM2_LAYERS
    assert p.gpu.total == 0
    # Q4_1 weights of a 135M-parameter model: 0.625 bytes/param would be ~84 MB; the mapped file is ~98 MB
    assert 60 * 2**20 < p.host.weights < demo_model_path().stat().st_size
    # f16 KV cache: 512 cells × 30 layers × 3 KV heads × (64 + 64) dims × 2 bytes
    assert p.host.kv == 512 * 30 * 3 * (64 + 64) * 2
    assert p.host.compute > 0
    assert r.n_ctx == 512
    assert r.fallbacks == ()
    assert "CPU_Mapped.model" in r.buffers


def test_progress_reaches_one_and_never_goes_back(tiny: Path) -> None:
    seen: list[float] = []
    with Engine() as engine:
        engine.load(make_plan(tiny), progress=seen.append)
    assert seen, "no progress was reported"
    assert seen[-1] == 1.0
    assert all(a <= b for a, b in zip(seen, seen[1:], strict=False))


# --- chat ---------------------------------------------------------------------------------------

def test_chat_streams_tokens_and_answers_paris(demo: Engine) -> None:
    events = collect(demo.chat(FRANCE, SamplingSettings(temperature=0, max_tokens=40, seed=1)))
    tokens = [e for e in events if e.kind == "token"]
    done = events[-1]
    assert done.kind == "done"
    assert len(tokens) >= 2  # streamed, not one block
    assert "".join(e.text for e in tokens) == done.text
    assert "Paris" in done.text
    assert done.finish_reason == "stop"
    assert 1 <= done.tokens <= 40
    assert done.tokens_per_second > 0
    assert done.time_to_first_token > 0


def test_system_prompt_replaces_the_templates_default(demo: Engine) -> None:
    # SmolLM2's template inserts a ~20-token default system message only when none is given.
    s = SamplingSettings(temperature=0, max_tokens=1)
    plain = collect(demo.chat(FRANCE, s))[-1].extra["prompt_tokens"]
    short = collect(demo.chat(FRANCE, s.with_(system="Be brief.")))[-1].extra["prompt_tokens"]
    assert short < plain


def test_stop_string_ends_the_reply(demo: Engine) -> None:
    done = collect(demo.chat(FRANCE, SamplingSettings(temperature=0, max_tokens=40, stop=("Paris",))))[-1]
    assert "Paris" not in done.text
    assert done.finish_reason == "stop"


def test_max_tokens_limits_the_reply(demo: Engine) -> None:
    story = [{"role": "user", "content": "Write a long story about a dragon."}]
    done = collect(demo.chat(story, SamplingSettings(temperature=0, max_tokens=5)))[-1]
    assert done.tokens == 5
    assert done.finish_reason == "length"


def test_stop_mid_stream_ends_the_reply_early(demo: Engine) -> None:
    story = [{"role": "user", "content": "Write a very long story about a dragon, at least 500 words."}]
    events: list[ChatEvent] = []
    for ev in demo.chat(story, SamplingSettings(temperature=0.8, seed=3, max_tokens=400)):
        events.append(ev)
        if ev.kind == "token" and len(events) == 1:
            demo.stop()
    done = events[-1]
    assert done.kind == "done"
    assert done.finish_reason == "stopped"
    assert done.tokens < 400
    # the engine is still usable after a stop
    assert "Paris" in collect(demo.chat(FRANCE, SamplingSettings(temperature=0, max_tokens=40)))[-1].text


def test_closing_the_stream_early_leaves_the_engine_usable(demo: Engine) -> None:
    stream = demo.chat([{"role": "user", "content": "Count to one hundred."}], SamplingSettings(max_tokens=300))
    first = next(stream)
    assert first.kind == "token"
    stream.close()  # GeneratorExit in chat(): it stops the child and drains to "done"
    assert "Paris" in collect(demo.chat(FRANCE, SamplingSettings(temperature=0, max_tokens=40)))[-1].text


def test_context_full_is_reported() -> None:
    counting = "Count from 1 to 500, separated by commas: " + ", ".join(str(i) for i in range(1, 45))
    with Engine() as engine:
        r = engine.load(make_plan(demo_model_path(), n_ctx=256))
        assert r.n_ctx == 256
        events = collect(engine.chat([{"role": "user", "content": counting}],
                                     SamplingSettings(temperature=0, max_tokens=1000)))
        kinds = [e.kind for e in events]
        assert "context_full" in kinds
        done = events[-1]
        assert done.finish_reason == "length"
        assert done.extra["prompt_tokens"] + done.tokens >= 255
        with pytest.raises(EngineError, match="context"):
            collect(engine.chat([{"role": "user", "content": counting * 3}], SamplingSettings(max_tokens=5)))


def test_chat_without_a_model_is_a_clear_error() -> None:
    with pytest.raises(EngineError, match="no model is loaded"):
        collect(Engine().chat(FRANCE, SamplingSettings()))


# --- unload, reload, crash ----------------------------------------------------------------------

def test_unload_ends_the_process_and_loading_another_model_unloads_the_first(tiny: Path) -> None:
    with Engine() as engine:
        engine.load(make_plan(demo_model_path()))
        first = engine.child_pid
        assert first is not None and pid_alive(first)
        engine.load(make_plan(tiny))
        second = engine.child_pid
        assert second is not None and second != first
        assert not pid_alive(first)
        assert engine.loaded is not None and engine.loaded.placement.n_layer == 4
        assert engine.unload() is None  # no NVML on this machine: nothing to report
        assert engine.loaded is None
        assert not pid_alive(second)
        with pytest.raises(EngineError, match="no model is loaded"):
            collect(engine.chat(FRANCE, SamplingSettings()))


def test_a_killed_child_is_reported_and_the_engine_loads_again(tiny: Path) -> None:
    with Engine() as engine:
        engine.load(make_plan(tiny))
        pid = engine.child_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(EngineCrashed, match="SIGKILL"):
            collect(engine.chat([{"role": "user", "content": "hi"}], SamplingSettings(max_tokens=4)))
        assert engine.loaded is None
        engine.load(make_plan(tiny))
        done = collect(engine.chat([{"role": "user", "content": "hi"}], SamplingSettings(max_tokens=4)))[-1]
        assert done.kind == "done"
        assert 1 <= done.tokens <= 4


def test_crash_message_names_the_signal() -> None:
    assert crash_message(-9) == "the engine process was killed by SIGKILL (the system may have run out of memory)"
    assert crash_message(-6, ["GGML_ASSERT(x) failed"]).endswith("(llama.cpp aborted): GGML_ASSERT(x) failed")
    assert crash_message(3) == "the engine process exited with status 3"


def test_corrupt_gguf_is_a_clear_error(tiny: Path, tmp_path: Path) -> None:
    plan = make_plan(tiny)
    bad = tmp_path / "bad.gguf"
    data = tiny.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # a valid header, half the tensor data missing
    with Engine() as engine:
        with pytest.raises(EngineError) as info:
            engine.load(replace(plan, model=replace(plan.model, path=str(bad))))
        assert not isinstance(info.value, EngineCrashed)
        assert "bad.gguf" in str(info.value)
        assert engine.loaded is None
        engine.load(plan)  # still usable
        assert engine.loaded is not None


# --- cancel -------------------------------------------------------------------------------------

def test_cancel_before_weights_load_is_cooperative(tiny: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    with Engine() as engine:
        with pytest.raises(LoadCancelled):
            engine.load(make_plan(tiny), cancel=cancel)
        assert engine.loaded is None and engine.child_pid is None
        engine.load(make_plan(tiny))
        assert engine.loaded is not None


def test_cancel_of_a_stuck_load_terminates_the_child(tiny: Path) -> None:
    cancel = threading.Event()
    with Engine(faults={"hang_load_seconds": 60}, cancel_grace=0.3) as engine:
        timer = threading.Timer(0.5, cancel.set)
        timer.start()
        with pytest.raises(LoadCancelled):
            engine.load(make_plan(tiny), cancel=cancel)
        timer.join()
        assert engine.child_pid is None


# --- fallback ladder ----------------------------------------------------------------------------

def _ladder_for(tiny_plan: Plan) -> list[Plan]:
    steps = []
    for layers in (4, 3, 2, 0):
        s = tiny_plan.settings.with_(n_gpu_layers=layers)
        steps.append(replace(tiny_plan, gpu_layers=layers, settings=s, processor=f"{layers} layers"))
    return steps


def test_ladder_steps_down_until_the_load_fits(tiny: Path) -> None:
    plan = make_plan(tiny, gpu_layers=5)
    engine = Engine(ladder=_ladder_for, faults={"oom_above_gpu_layers": 2, "pretend_gpu": True})
    with engine:
        r = engine.load(plan)
    assert [f.gpu_layers for f in r.fallbacks] == [4, 3, 2]
    assert all(f.step == "fewer GPU layers" for f in r.fallbacks)
    assert "out of GPU memory with 5 GPU layers" in r.fallbacks[0].reason
    assert "cudaMalloc failed" in r.fallbacks[0].reason
    assert r.fallbacks[-1].processor == "2 layers"
    assert r.settings.n_gpu_layers == 2
    # The placement is measured, not copied from the plan: this CPU build offloaded nothing.
    assert r.placement.measured and r.placement.processor == "100% CPU"


def test_ladder_recovers_from_a_child_killed_mid_load(tiny: Path) -> None:
    plan = make_plan(tiny, gpu_layers=5)
    engine = Engine(ladder=lambda p: [cpu_only(p)],
                    faults={"oom_above_gpu_layers": 0, "oom_mode": "die", "pretend_gpu": True})
    with engine:
        r = engine.load(plan)
        assert [(f.step, f.gpu_layers) for f in r.fallbacks] == [("CPU only", 0)]
        assert "died" in r.fallbacks[0].reason and "SIGKILL" in r.fallbacks[0].reason
        assert collect(engine.chat([{"role": "user", "content": "hi"}], SamplingSettings(max_tokens=2)))[-1].tokens


def test_ladder_exhausted_is_a_clear_error(tiny: Path) -> None:
    plan = make_plan(tiny, gpu_layers=5)
    engine = Engine(ladder=_ladder_for, faults={"oom_above_gpu_layers": -1, "pretend_gpu": True})
    with engine, pytest.raises(EngineError, match="not enough memory"):
        engine.load(plan)


def test_cpu_only_build_goes_straight_to_cpu_and_says_why(tiny: Path) -> None:
    with Engine() as engine:
        r = engine.load(make_plan(tiny, gpu_layers=5))
        r0 = engine.load(make_plan(tiny, gpu_layers=0))
    # A CUDA build answers the plan as asked. (llama_supports_gpu_offload() can't tell: it is also True
    # for a CPU build with the RPC backend; the CUDA library next to libllama can.)
    libdir = Path(llama_cpp.__file__).parent / "lib"
    if any(p.name.startswith(("libggml-cuda", "ggml-cuda")) for p in libdir.iterdir()):
        assert r.fallbacks == ()
    else:
        assert [(f.step, f.gpu_layers, f.processor) for f in r.fallbacks] == [("CPU only", 0, "100% CPU")]
        assert "no GPU offload" in r.fallbacks[0].reason
        assert r.settings.n_gpu_layers == 0
    assert r0.fallbacks == ()  # a CPU plan needs no explanation


def test_plan_settings_reach_llama_cpp(tmp_path: Path) -> None:
    # head dim 32 (128 / 4 heads), 2 KV heads: a q8_0 row of 64 elements is 2 blocks of 34 bytes.
    model = write_tiny_model(tmp_path / "hd32.gguf", Shape(n_layer=4, n_embd=128, n_head=4, n_head_kv=2))
    with Engine() as engine:
        r = engine.load(make_plan(model, type_k="q8_0", type_v="q8_0", flash_attn="on", n_ubatch=128))
    expected = 512 * 4 * (2 * 34 + 2 * 34)  # 0.266 MiB; f16 would be 0.5 MiB
    assert abs(r.placement.host.kv - expected) <= 0.005 * 2**20  # the log prints MiB with 2 decimals


def test_llama_cpp_refusing_settings_says_why(tiny: Path) -> None:
    # head dim 16 can't hold a q8_0 block of 32: llama.cpp refuses the context, and the message says so.
    with Engine() as engine, pytest.raises(EngineError, match="does not divide"):
        engine.load(make_plan(tiny, type_k="q8_0", type_v="q8_0", flash_attn="on"))


def test_the_engine_is_pinned_to_the_planned_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan and NVML cover one GPU: the child gets CUDA_VISIBLE_DEVICES for exactly that one."""
    from core.engine import _visible_device
    from core.hardware import GPU

    info = read_model_info(demo_model_path())
    gpu1 = GPU(1, "NVIDIA GeForce RTX 4090", 24 * 1024**3, 20 * 1024**3, uuid="GPU-1234")
    plan = Plan(info, LoadSettings(), Hardware((gpu1,), 1, 1, 1), 0, 31, DeviceMemory(), HostMemory(),
                "100% GPU", True, True)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert _visible_device(plan) == "GPU-1234"
    assert _visible_device(replace(plan, hardware=Hardware((replace(gpu1, uuid=None),), 1, 1, 1))) == "1"
    assert _visible_device(replace(plan, hardware=Hardware((replace(gpu1, what_if=True),), 1, 1, 1))) is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # the user's own choice wins
    assert _visible_device(plan) is None


def test_a_stop_pressed_before_the_reply_starts_still_counts(demo: Engine) -> None:
    """The GUI queues a chat on the engine thread; a Stop that lands before it runs must stop it."""
    demo.stop()
    done = collect(demo.chat(FRANCE, SamplingSettings(temperature=0.0, max_tokens=64)))[-1]
    assert done.kind == "done" and done.finish_reason == "stopped" and done.tokens <= 1
    # the flag is spent: the next reply runs normally
    again = collect(demo.chat(FRANCE, SamplingSettings(temperature=0.0, max_tokens=64)))[-1]
    assert again.finish_reason == "stop" and "Paris" in again.text
