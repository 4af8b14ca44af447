"""The app with newer architectures: the "not verified" warning, the referee in the background, and
the recurrent-state segment, driven offscreen with pytest-qt on sparse full-size files."""

from __future__ import annotations

from pathlib import Path

from arch_models import write_spec_model

from core.hardware import Hardware
from core.units import GiB
from gui.mainwindow import MainWindow
from gui.workers import wait_all

CPU_MACHINE = Hardware((), 64 * GiB, 60 * GiB, 8, gpu_problem="no NVIDIA driver answered")


def _window(qtbot) -> MainWindow:  # type: ignore[no-untyped-def]
    w = MainWindow(hardware=CPU_MACHINE, prefetch=False)
    qtbot.addWidget(w)
    w.show()
    return w


def test_unverified_arch_warns_then_llamacpp_checks_it(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_spec_model(tmp_path / "olmoe.gguf", "olmoe")
    w = _window(qtbot)
    w.library.add_files([str(path)])
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.model.arch == "olmoe", timeout=60000)
    # Until the background check is back, the meter says so (or it is already checked: fast machine).
    first = w.plan
    assert first is not None
    if not first.checked_by_llamacpp:
        assert "not verified for olmoe: numbers may be off" in w.meter.verdict.text()
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.checked_by_llamacpp, timeout=120000)
    assert w.plan.verified and "not verified" not in w.meter.verdict.text()
    wait_all(60000)


def test_recurrent_state_is_a_meter_segment(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_spec_model(tmp_path / "qwen3next.gguf", "qwen3next")
    w = _window(qtbot)
    w.library.add_files([str(path)])
    qtbot.waitUntil(lambda: w.plan is not None and w.plan.model.arch == "qwen3next", timeout=60000)
    s = w.meter.state
    assert s is not None
    # 36 delta-net layers x ((4 - 1) x (4096 + 2 x 16 x 128) + 128 x 4096) f32 = 75.4 MiB, all in RAM here.
    assert s.host.rs == 36 * ((4 - 1) * (4096 + 2 * 16 * 128) + 128 * 4096) * 4
    assert "RAM" in w.meter._legend_values["rs"].text()
    assert not w.meter._legend_names["rs"][0].isHidden()
    assert "not verified" not in w.meter.verdict.text()  # qwen3next is verified
    wait_all(60000)
