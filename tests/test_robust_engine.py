"""Fault suite for the engine (issue 16, cases 2 and 7): Stop and Unload win over a reply that never
yields a token, the engine child dies with its parent, and a broken chat template gets a clear message.

Real llama.cpp on CPU: tiny GGUFs from tests/gguf_factory.py whose chat template is hostile, and the demo
model for a long prompt. The only time limits here are hang guards far above a normal run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from gguf_factory import Shape, write_tiny_model
from test_engine import make_plan

from core.demo import demo_model_path
from core.engine import STOP_DEADLINE, ChatEvent, Engine, EngineError, EngineStopped
from core.sampling import SamplingSettings

#: Jinja's sandbox allows range(100000); two nested loops are 10^10 steps: a reply that never starts.
NEVER_YIELDS = ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
                "{{ messages[0]['content'] }}")
HI = [{"role": "user", "content": "hi"}]
HANG_GUARD = 120.0


@pytest.fixture(scope="module")
def stuck_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("stuck") / "stuck.gguf",
                            Shape(n_layer=2, chat_template=NEVER_YIELDS))


def gone(pid: int) -> bool:
    """The process has ended (a zombie nobody reaps yet counts as ended: it holds no memory)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, limit: float = HANG_GUARD) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if gone(pid):
            return True
        time.sleep(0.1)
    return False


class Reply(threading.Thread):
    """Consume ``engine.chat`` on its own thread, as the GUI's engine thread does."""

    def __init__(self, engine: Engine, messages: list[dict[str, str]] | None = None) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.messages = messages or HI
        self.events: list[ChatEvent] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for ev in self.engine.chat(self.messages, SamplingSettings(max_tokens=8, temperature=0.0)):
                self.events.append(ev)
        except BaseException as exc:  # checked by the test
            self.error = exc

    def finish(self) -> None:
        self.join(HANG_GUARD)
        assert not self.is_alive(), "the reply never ended"


def _busy_child(engine: Engine) -> int:
    pid = engine.child_pid
    assert pid is not None
    proc = psutil.Process(pid)
    end = time.monotonic() + HANG_GUARD
    while proc.cpu_percent(0.2) < 30 and time.monotonic() < end:  # it is rendering the template
        pass
    return pid


def test_stop_cuts_short_a_template_that_never_yields_and_keeps_the_model(stuck_model: Path) -> None:
    with Engine() as engine:
        engine.load(make_plan(stuck_model))
        reply = Reply(engine)
        reply.start()
        pid = _busy_child(engine)
        engine.stop()
        reply.finish()
        assert reply.error is None, reply.error
        assert reply.events[-1].kind == "done" and reply.events[-1].finish_reason == "stopped"
        # the child cut the reply short from inside: same process, model still loaded, ready again
        assert engine.loaded is not None and engine.child_pid == pid
        again = Reply(engine)
        again.start()
        _busy_child(engine)
        engine.stop()
        again.finish()
        assert again.events[-1].finish_reason == "stopped"


def test_unload_from_another_thread_wins_over_a_stuck_reply(stuck_model: Path) -> None:
    engine = Engine()
    engine.load(make_plan(stuck_model))
    reply = Reply(engine)
    reply.start()
    pid = _busy_child(engine)
    engine.interrupt()  # what the window's Unload does before queueing the unload
    done = threading.Event()
    threading.Thread(target=lambda: (engine.unload(), done.set()), daemon=True).start()
    assert done.wait(HANG_GUARD), "Unload waited forever behind the reply"
    reply.finish()
    assert engine.loaded is None and engine.child_pid is None
    assert wait_gone(pid)


def test_a_child_deaf_to_stop_is_ended_at_the_deadline(stuck_model: Path) -> None:
    engine = Engine(faults={"deaf_to_stop": True})
    engine.stop_deadline = STOP_DEADLINE
    engine.load(make_plan(stuck_model))
    reply = Reply(engine)
    reply.start()
    pid = _busy_child(engine)
    engine.stop()
    reply.finish()
    assert isinstance(reply.error, EngineStopped)
    assert "did not stop" in str(reply.error) and "load it again" in str(reply.error)
    assert engine.loaded is None and engine.child_pid is None and wait_gone(pid)
    engine.load(make_plan(stuck_model))  # the app stays usable: a new load works
    assert engine.loaded is not None
    engine.close()


def test_stop_lands_inside_a_long_prompt_evaluation() -> None:
    """A long prompt on the CPU: Stop is checked inside llama_decode (the abort callback), and the
    model stays loaded and answers the next message normally."""
    long_prompt = [{"role": "user", "content": "Describe this list. " + " ".join(f"item{i}" for i in range(700))}]
    with Engine() as engine:
        engine.load(make_plan(demo_model_path(), n_ctx=4096, n_batch=512, n_ubatch=512))
        pid = engine.child_pid
        reply = Reply(engine, long_prompt)
        reply.start()
        _busy_child(engine)
        engine.stop()
        reply.finish()
        assert reply.error is None, reply.error
        assert reply.events[-1].finish_reason == "stopped"
        assert engine.loaded is not None and engine.child_pid == pid
        after = list(engine.chat([{"role": "user", "content": "Say hello."}],
                                 SamplingSettings(max_tokens=4, temperature=0.0)))
        assert after[-1].kind == "done" and after[-1].tokens > 0


def test_the_engine_child_dies_with_a_terminated_cli(stuck_model: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cli = subprocess.Popen([sys.executable, "-m", "core", "run", str(stuck_model), "--prompt", "hi", "--ctx", "256"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    kids: list[Any] = []
    try:
        parent = psutil.Process(cli.pid)
        end = time.monotonic() + HANG_GUARD
        while time.monotonic() < end and not kids:
            kids = [k for k in parent.children(recursive=True) if k.cpu_percent(0.2) > 30]
        assert kids, "the engine child never started its reply"
        cli.send_signal(signal.SIGTERM)
        cli.wait(HANG_GUARD)
        assert all(wait_gone(k.pid) for k in kids), "the engine child outlived its parent"
    finally:  # never leave a spinning process behind, even when the test fails
        if cli.poll() is None:
            cli.kill()
        for k in kids:
            if not gone(k.pid):
                k.kill()


def test_a_broken_chat_template_says_what_and_where(tmp_path: Path) -> None:
    bad = write_tiny_model(tmp_path / "badtemplate.gguf",
                           Shape(n_layer=2, chat_template="{% for m in messages %}\n{{ m.content }\n{% endfor %}"))
    with Engine() as engine, pytest.raises(EngineError) as e:
        engine.load(make_plan(bad))
    text = str(e.value)
    assert "chat template is broken" in text and "line 2" in text
    assert "n_ctx" not in text  # not llama.cpp's last log line
