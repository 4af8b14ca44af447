"""Guards against a broken Qt binding: PySide6 6.12.0 leaked a reference to ``True`` on every signal
emit, which aborts Python < 3.12 ("bool_dealloc") after enough token updates. pyproject.toml excludes
that release; this test fails if a build with the same leak gets installed again."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    fired = Signal(object)


def test_signal_emit_does_not_leak_references_to_bools() -> None:
    e = _Emitter()
    got: list[object] = []
    e.fired.connect(got.append)
    before = sys.getrefcount(True), sys.getrefcount(False)
    for i in range(500):
        e.fired.emit(i)
    after = sys.getrefcount(True), sys.getrefcount(False)
    assert len(got) == 500
    # Python >= 3.12 makes True/False immortal (constant refcount); < 3.12 must stay balanced.
    assert abs(after[0] - before[0]) < 50 and abs(after[1] - before[1]) < 50
