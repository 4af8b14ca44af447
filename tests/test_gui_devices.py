"""The window with several devices: what-if cards (2× RTX 3090) and a real RPC worker on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_multi_device import Worker, _free_port

from core import rpc
from core.hardware import Hardware
from core.units import GiB
from gui.mainwindow import MainWindow
from gui.workers import wait_all

CPU_MACHINE = Hardware((), 64 * GiB, 60 * GiB, 8, gpu_problem="no NVIDIA driver answered")


def _window(qtbot) -> MainWindow:  # type: ignore[no-untyped-def]
    w = MainWindow(hardware=CPU_MACHINE)
    qtbot.addWidget(w)
    w.show()
    return w


@pytest.fixture(autouse=True)
def _drain():  # type: ignore[no-untyped-def]
    yield
    wait_all(60000)


def test_what_if_two_cards_shows_a_bar_per_card(qtbot, demo_model: Path) -> None:  # type: ignore[no-untyped-def]
    w = _window(qtbot)
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.model.path == str(demo_model), timeout=60000)
    assert not w.meter.devices.isVisible()  # one device (here: none): the meter's own bars
    w.load_panel.set_hardware_choice("rtx3090")
    w.load_panel.cards_spin.setValue(2)
    qtbot.waitUntil(lambda: len(w.meter.devices.rows) == 3)
    rows = w.meter.devices.rows
    assert [r["kind"] for r in rows] == ["cuda", "cuda", "host"]
    assert rows[1]["layers"].endswith("+ output")
    assert w.meter.devices.isVisible() and not w.meter.gpu_bar.isVisible()
    assert w.device_plan is not None and len(w.device_plan.devices) == 2
    # A what-if worker (a size instead of host:port) adds a bar of its own.
    w.load_panel.set_workers(["8GiB"])
    qtbot.waitUntil(lambda: [r["kind"] for r in w.meter.devices.rows] == ["rpc", "cuda", "cuda", "host"],
                    timeout=30000)
    assert "what-if" in w.meter.devices.rows[0]["name"]
    w.load_panel.set_workers([])
    qtbot.waitUntil(lambda: len(w.meter.devices.rows) == 3)
    # Back to one card: the per-device bars go away again.
    w.load_panel.cards_spin.setValue(1)
    qtbot.waitUntil(lambda: not w.meter.devices.rows)
    assert w.meter.gpu_bar.isVisible()


@pytest.mark.skipif(not rpc.supported(), reason="llama-cpp-python was built without the RPC backend")
def test_worker_in_the_app_plans_and_loads_through_it(qtbot, demo_model: Path) -> None:  # type: ignore[no-untyped-def]
    worker = Worker("1GiB")
    dead = f"127.0.0.1:{_free_port()}"
    try:
        w = _window(qtbot)
        qtbot.waitUntil(lambda: w.plan is not None and w.plan.model.path == str(demo_model), timeout=60000)
        w.load_panel.ctx_spin.setValue(1024)
        w.load_panel.set_workers([worker.endpoint, dead])
        qtbot.waitUntil(lambda: any(r["kind"] == "rpc" for r in w.meter.devices.rows)
                        and any("can't be reached" in r for r in w.plan.reasons), timeout=30000)
        assert [r["kind"] for r in w.meter.devices.rows] == ["rpc", "host"]
        assert any(dead in r for r in w.plan.reasons)
        with qtbot.waitSignal(w.loaded, timeout=180000):
            w.load_action.trigger()
        rows = w.meter.devices.rows
        assert [r["kind"] for r in rows] == ["rpc", "host"]
        assert rows[0]["endpoint"] == worker.endpoint and rows[0]["weights"] > 0  # measured on the worker
        # Loading again while loaded: the engine lets go of the worker first, so it is not "busy".
        w.load_panel.ctx_spin.setValue(2048)
        qtbot.waitUntil(lambda: w.plan is not None and w.plan.settings.n_ctx == 2048)
        with qtbot.waitSignal(w.loaded, timeout=180000):
            w.load_action.trigger()
        assert [r["kind"] for r in w.meter.devices.rows] == ["rpc", "host"]
        assert w.load_result is not None and w.load_result.n_ctx == 2048
        with qtbot.waitSignal(w.unloaded, timeout=60000):
            w.unload_action.trigger()
    finally:
        worker.stop()


@pytest.mark.skipif(not rpc.supported(), reason="llama-cpp-python was built without the RPC backend")
def test_worker_killed_mid_chat_the_app_survives_and_reloads_without_it(qtbot, demo_model: Path) -> None:  # type: ignore[no-untyped-def]
    from core.sampling import SamplingSettings

    a, b = Worker("1GiB"), Worker("1GiB")
    try:
        w = _window(qtbot)
        qtbot.waitUntil(lambda: w.plan is not None and w.plan.model.path == str(demo_model), timeout=60000)
        w.load_panel.ctx_spin.setValue(1024)
        w.load_panel.set_workers([a.endpoint, b.endpoint])
        qtbot.waitUntil(lambda: [r["kind"] for r in w.meter.devices.rows] == ["rpc", "rpc", "host"], timeout=30000)
        with qtbot.waitSignal(w.loaded, timeout=180000):
            w.load_action.trigger()
        panel = w.chat_panel
        panel.set_sampling(SamplingSettings(temperature=0.8, max_tokens=400, seed=3))
        panel.input.setPlainText("Tell a long story about a dragon.")
        with qtbot.waitSignal(panel.engineLost, timeout=120000) as lost:
            assert panel.send()
            qtbot.waitUntil(lambda: len(panel.transcript.streaming_text()) > 5, timeout=60000)
            b.kill()
        assert b.endpoint in lost.args[0] and "stopped answering" in lost.args[0]
        qtbot.waitUntil(lambda: not panel.is_streaming, timeout=30000)
        assert w.load_result is None and w.isVisible()  # the app is still here, with nothing loaded
        # The plan is redone without the dead worker, and loading again works through the live one.
        qtbot.waitUntil(lambda: [r["kind"] for r in w.meter.devices.rows] == ["rpc", "host"], timeout=30000)
        assert any(b.endpoint in r for r in w.plan.reasons)
        with qtbot.waitSignal(w.loaded, timeout=180000):
            w.load_action.trigger()
        rows = w.meter.devices.rows
        assert rows[0]["endpoint"] == a.endpoint and rows[0]["weights"] > 0
        with qtbot.waitSignal(w.unloaded, timeout=60000):
            w.unload_action.trigger()
    finally:
        a.stop()
        b.stop()


def test_workers_and_card_count_are_remembered(qtbot, demo_model: Path) -> None:  # type: ignore[no-untyped-def]
    w = _window(qtbot)
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.model.path == str(demo_model), timeout=60000)
    w.load_panel.set_hardware_choice("rtx3090")
    w.load_panel.cards_spin.setValue(2)
    w.load_panel.set_workers(["8GiB", "10.0.0.5:50052"])
    w.close()
    again = _window(qtbot)
    assert again.load_panel.workers() == ("8GiB", "10.0.0.5:50052")
    assert again.load_panel.cards_spin.value() == 2 and again.load_panel.hardware_choice() == "rtx3090"
    assert len(again.session.hardware().gpus) == 2  # the session owns the hardware choice (#13)
