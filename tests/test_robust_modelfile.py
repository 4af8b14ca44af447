"""Fault suite for Modelfile import (issue 16, case 5): hostile numbers, a superscript digit, values too big
for the widgets, a 20,000-line SYSTEM, special files. Every failure is a ModelfileError with a line
number, and the window applies nothing from a file that doesn't validate completely."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gguf_factory import write_tiny_model
from hypothesis import given
from hypothesis import strategies as st

import core.modelfile as mf
from core.modelfile import ModelfileError, lex_modelfile, parse_modelfile, read_modelfile

HUGE = "9" * 5000


def _file(tmp_path: Path, body: str) -> Path:
    model = tmp_path / "m.gguf"
    if not model.exists():
        model.write_bytes(b"GGUF")
    p = tmp_path / "Modelfile"
    p.write_text(f"FROM {model}\n{body}", encoding="utf-8")
    return p


@pytest.mark.parametrize("name", ["num_ctx", "num_gpu", "seed", "top_k", "num_predict", "repeat_last_n",
                                  "num_keep", "temperature", "top_p"])
@pytest.mark.parametrize("value", [HUGE, "-" + HUGE, HUGE + ".5", "1e99999"])
def test_a_5000_digit_number_is_a_modelfile_error_with_its_line(tmp_path: Path, name: str, value: str) -> None:
    p = _file(tmp_path, f"PARAMETER temperature 0.5\nPARAMETER {name} {value}\n"
              if name != "temperature" else f"SYSTEM hi\nPARAMETER {name} {value}\n")
    with pytest.raises(ModelfileError) as e:
        read_modelfile(p)
    assert e.value.line == 3
    assert len(str(e.value)) < 300  # the number is shortened, not printed 5,000 digits long


@pytest.mark.parametrize("value", ["²", "١٢", "1²", "+5", HUGE, "99999999999999999"])
def test_a_bad_headroom_comment_is_a_modelfile_error_with_its_line(tmp_path: Path, value: str) -> None:
    p = _file(tmp_path, f"PARAMETER num_ctx 2048\n# layerfit: headroom={value}\n")
    with pytest.raises(ModelfileError) as e:
        read_modelfile(p)
    assert e.value.line == 3


@pytest.mark.parametrize(("line", "value"), [
    ("PARAMETER num_ctx 1099511627776", "num_ctx"),
    ("PARAMETER seed 4294967296", "seed"),
    ("PARAMETER top_k 2147483648", "top_k"),
    ("PARAMETER num_predict -2147483649", "num_predict"),
    ("PARAMETER num_batch 9223372036854775807", "num_batch"),
])
def test_values_no_widget_can_hold_are_refused_before_anything_is_applied(tmp_path: Path, line: str,
                                                                         value: str) -> None:
    p = _file(tmp_path, f"PARAMETER temperature 0.1\n{line}\n")
    with pytest.raises(ModelfileError) as e:
        read_modelfile(p)
    assert e.value.line == 3 and value in str(e.value) and "32 bits" in str(e.value)


def test_the_largest_values_the_widgets_hold_are_accepted(tmp_path: Path) -> None:
    p = _file(tmp_path, "PARAMETER num_ctx 2147483647\nPARAMETER seed 2147483647\n# layerfit: headroom=68719476736\n")
    spec = read_modelfile(p)
    assert spec.num_ctx == 2**31 - 1 and spec.sampling.seed == 2**31 - 1 and spec.headroom == 64 * 2**30


def test_a_20000_line_system_is_lexed_in_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lexer used to re-join and unquote its whole buffer at every line break inside a quoted value
    (quadratic: 40 s for this file). Now the value is unquoted once: counted, not timed."""
    lines = [f"line {i} of a long system prompt" for i in range(20_000)]
    text = 'FROM /m.gguf\nSYSTEM """' + "\n".join(lines) + '"""\nPARAMETER num_ctx 4096\n'
    calls = {"n": 0}
    real = mf._unquote

    def counting(s: str) -> tuple[str, bool]:
        calls["n"] += 1
        return real(s)

    monkeypatch.setattr(mf, "_unquote", counting)
    commands, _ = lex_modelfile(text)
    assert [c.word for c in commands] == ["from", "system", "parameter"]
    assert commands[1].args == "\n".join(lines)
    assert commands[2].line == 20_002
    assert calls["n"] <= len(commands)
    spec = parse_modelfile(text, tmp_path, require_file=False)
    assert spec.sampling.system.count("\n") == 19_999 and spec.num_ctx == 4096


@given(st.lists(st.sampled_from(['"', "a", " ", "\t", "\r", "\n", "x"]), max_size=14))
def test_the_linear_quote_check_agrees_with_ollamas_unquote(chars: list[str]) -> None:
    nonspace = [i for i, c in enumerate(chars) if c not in " \t\r\n"]
    first, last = (nonspace[0], nonspace[-1]) if nonspace else (-1, -1)
    assert mf._closed(chars, first, last) == mf._unquote(mf._trim("".join(chars)))[1]


def test_a_fifo_is_not_read_as_a_modelfile(tmp_path: Path) -> None:
    fifo = tmp_path / "Modelfile"
    os.mkfifo(fifo)
    with pytest.raises(ModelfileError) as e:
        read_modelfile(fifo)
    assert "not a regular file" in str(e.value)


# --- the window ---------------------------------------------------------------------------------

def test_the_window_applies_nothing_from_a_modelfile_with_a_huge_number(qtbot, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                        messages: list[tuple[str, str]]) -> None:
    from test_gui_main import _wait_plan, _window

    model = write_tiny_model(tmp_path / "tiny.gguf")
    w = _window(qtbot)
    w.library.add_files([str(model)])
    w.library.select_path(str(model))
    _wait_plan(qtbot, w, str(model))
    before = (w.load_panel.settings(), w.chat_panel.sampling())
    for body in (f"PARAMETER temperature 0.1\nPARAMETER num_ctx {2**40}\n",
                 f"PARAMETER temperature 0.1\nPARAMETER seed {HUGE}\n",
                 "PARAMETER temperature 0.1\n# layerfit: headroom=²\n"):
        p = tmp_path / "Modelfile"
        p.write_text(f"FROM {model}\n{body}", encoding="utf-8")
        assert w.import_modelfile(str(p)) is None
        level, text = messages[-1]
        assert level == "error" and "line " in text and "Unexpected" not in text
        assert (w.load_panel.settings(), w.chat_panel.sampling()) == before


def test_a_large_modelfile_is_parsed_off_the_gui_thread_and_applied(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import threading

    from test_gui_main import _wait_plan, _window

    import gui.window_parts as mw

    model = write_tiny_model(tmp_path / "tiny.gguf")
    w = _window(qtbot)
    w.library.add_files([str(model)])
    w.library.select_path(str(model))
    _wait_plan(qtbot, w, str(model))
    system = "\n".join(f"rule {i}: be brief" for i in range(20_000))
    p = tmp_path / "Modelfile"
    p.write_text(f'FROM {model}\nSYSTEM """{system}"""\nPARAMETER temperature 0.3\n', encoding="utf-8")
    assert p.stat().st_size > mw.LARGE_MODELFILE_BYTES
    threads: list[str] = []
    real = mw.read_import

    def spy(*a, **k):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return real(*a, **k)

    mw.read_import = spy  # type: ignore[assignment]
    try:
        assert w.import_modelfile(str(p)) is None  # not applied yet: it is being read
        qtbot.waitUntil(lambda: w.chat_panel.sampling().temperature == 0.3, timeout=60000)
    finally:
        mw.read_import = real  # type: ignore[assignment]
    assert threads and threads[0] != threading.main_thread().name
    assert w.chat_panel.sampling().system == system
