"""Modelfile grammar, import and export.

The lexer cases replay Ollama's own ``parser/parser_test.go`` (expected commands copied from there, so
they are Ollama's answers, not ours). Import and export cases use hand-written files and hand-written
expected values.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from core.loadsettings import LoadSettings
from core.modelfile import (
    DEPRECATED_PARAMETERS,
    REMOVED_PARAMETERS,
    ModelfileError,
    ModelfileSpec,
    export_modelfile,
    lex_modelfile,
    parse_modelfile,
    read_modelfile,
    spec_from,
    write_modelfile,
)
from core.sampling import SamplingSettings


def commands(text: str) -> list[tuple[str, str]]:
    return [c.ollama_command for c in lex_modelfile(text)[0]]


LLAMA3_TEMPLATE = (
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
)


# --- Ollama's parser_test.go, replayed -----------------------------------------------------------------


def test_parse_file_file() -> None:
    text = ("\nFROM model1\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\nPARAMETER param2 value2\n"
            f'TEMPLATE """{LLAMA3_TEMPLATE}"""    \n')
    assert commands(text) == [("model", "model1"), ("adapter", "adapter1"), ("license", "MIT"),
                              ("param1", "value1"), ("param2", "value2"), ("template", LLAMA3_TEMPLATE)]


def test_parse_file_trim_space() -> None:
    text = ('\nFROM "     model 1"\nADAPTER      adapter3\nLICENSE "MIT       "\nPARAMETER param1        value1\n'
            f'PARAMETER param2    value2\nTEMPLATE """   {LLAMA3_TEMPLATE}   """    \n')
    assert commands(text) == [("model", "     model 1"), ("adapter", "adapter3"), ("license", "MIT       "),
                              ("param1", "value1"), ("param2", "value2"),
                              ("template", f"   {LLAMA3_TEMPLATE}   ")]


@pytest.mark.parametrize(("text", "expected"), [
    ('FROM "FOO  BAR  "', [("model", "FOO  BAR  ")]),
    ('FROM "FOO BAR"\nPARAMETER param1 value1', [("model", "FOO BAR"), ("param1", "value1")]),
    ("FROM     FOOO BAR    ", [("model", "FOOO BAR")]),
    ("FROM /what/is/the path ", [("model", "/what/is/the path")]),
    ("FROM foo", [("model", "foo")]),
    ("FROM llama3:7b-instruct-q4_K_M", [("model", "llama3:7b-instruct-q4_K_M")]),
    ("PARAMETER param1 value1\nFROM foo", [("param1", "value1"), ("model", "foo")]),
    ("PARAMETER what the \nFROM lemons make lemonade ", [("what", "the"), ("model", "lemons make lemonade")]),
])
def test_parse_file_from(text: str, expected: list[tuple[str, str]]) -> None:
    assert commands(text) == expected


def test_messages() -> None:
    text = ("\nFROM foo\nMESSAGE system You are a file parser. Always parse things.\nMESSAGE user Hey there!\n"
            "MESSAGE assistant Hello, I want to parse all the things!\n")
    assert commands(text) == [("model", "foo"),
                              ("message", "system: You are a file parser. Always parse things."),
                              ("message", "user: Hey there!"),
                              ("message", "assistant: Hello, I want to parse all the things!")]
    multi = '\nFROM foo\nMESSAGE system """\nYou are a multiline file parser. Always parse things.\n"""\n\t\t\t'
    assert commands(multi)[1] == ("message", "system: \nYou are a multiline file parser. Always parse things.\n")
    no_newline = "\nFROM foo\nMESSAGE system You are a file parser. Always parse things."
    assert commands(no_newline)[1] == ("message", "system: You are a file parser. Always parse things.")


@pytest.mark.parametrize(("text", "line"), [
    ("\nFROM foo\nMESSAGE badguy I'm a bad guy!\n", 3),
    ("\nFROM foo\nMESSAGE system\n", 3),
    ("\nFROM foo\nMESSAGE system", 3),
    ("\nFROM foo\nMESSAGE User hi\n", 3),  # roles are case-sensitive in Ollama
])
def test_message_errors(text: str, line: int) -> None:
    with pytest.raises(ModelfileError) as info:
        lex_modelfile(text)
    assert info.value.line == line


@pytest.mark.parametrize(("text", "expected"), [
    ('\nFROM foo\nSYSTEM """\nThis is a\nmultiline system.\n"""\n\t\t\t', "\nThis is a\nmultiline system.\n"),
    ('\nFROM foo\nSYSTEM """\nThis is a\nmultiline system."""\n\t\t\t', "\nThis is a\nmultiline system."),
    ('\nFROM foo\nSYSTEM """This is a\nmultiline system."""\n\t\t\t', "This is a\nmultiline system."),
    ('\nFROM foo\nSYSTEM """This is a multiline system."""\n\t\t\t', "This is a multiline system."),
    ('\nFROM foo\nSYSTEM """\nThis is a multiline system with "quotes".\n"""\n',
     '\nThis is a multiline system with "quotes".\n'),
    ('\nFROM foo\nSYSTEM """"""\n', ""),
    ('\nFROM foo\nSYSTEM ""\n', ""),
    ("\nFROM foo\nSYSTEM \"'\"\n", "'"),
    ('\nFROM foo\nSYSTEM """\'\'"\'""\'""\'"\'\'\'\'\'""\'""\'"""\n', '\'\'"\'""\'""\'"\'\'\'\'\'""\'""\''),
])
def test_quoted(text: str, expected: str) -> None:
    assert commands(text)[1] == ("system", expected)


def test_quoted_template_at_end_of_file() -> None:
    assert commands('\nFROM foo\nTEMPLATE """\n{{ .Prompt }}\n"""') == [("model", "foo"),
                                                                         ("template", "\n{{ .Prompt }}\n")]


@pytest.mark.parametrize("text", [
    '\nFROM foo\nSYSTEM """This is a multiline system.""\n\t\t\t',
    '\nFROM foo\nSYSTEM "\n\t\t\t',
])
def test_unterminated_quotes(text: str) -> None:
    with pytest.raises(ModelfileError, match="never closed") as info:
        lex_modelfile(text)
    assert info.value.line == 3  # the line the value starts on


@pytest.mark.parametrize(("line", "expected"), [
    ("numa true", ("numa", "true")),
    ("num_ctx 1", ("num_ctx", "1")),
    ("top_p 1.0", ("top_p", "1.0")),
    ("penalize_newline true", ("penalize_newline", "true")),
    ("stop ### User:", ("stop", "### User:")),
    ("stop ### User: ", ("stop", "### User:")),
    ('stop "### User:"', ("stop", "### User:")),
    ('stop "### User: "', ("stop", "### User: ")),
    ('stop """### User:"""', ("stop", "### User:")),
    ('stop """### User:\n"""', ("stop", "### User:\n")),
    ("stop <|endoftext|>", ("stop", "<|endoftext|>")),
    ("stop </s>", ("stop", "</s>")),
])
def test_parameters(line: str, expected: tuple[str, str]) -> None:
    assert commands(f"FROM foo\nPARAMETER {line}\n") == [("model", "foo"), expected]


def test_parameter_without_value_is_an_error() -> None:
    with pytest.raises(ModelfileError, match="no value") as info:
        lex_modelfile("\nFROM foo\nPARAMETER param1\n")
    assert info.value.line == 3


def test_bad_command_line_number() -> None:
    with pytest.raises(ModelfileError, match="unknown instruction 'BADCOMMAND'") as info:
        lex_modelfile("\nFROM foo\nBADCOMMAND param1 value1\n")
    assert info.value.line == 3


def test_comment_and_multibyte_and_leading_tab() -> None:
    assert commands("\n# comment\nFROM foo\n\t") == [("model", "foo")]
    assert commands("FROM test\n\tSYSTEM 你好👋") == [("model", "test"), ("system", "你好👋")]


def test_renderer_parser_draft() -> None:
    assert commands("\nFROM foo\nRENDERER renderer1\nPARSER parser1\nDRAFT ./assistant\n")[1:] == [
        ("renderer", "renderer1"), ("parser", "parser1"), ("draft", "./assistant")]


# --- comment placement, case, CRLF ------------------------------------------------------------------


def test_comments_only_where_an_instruction_could_start() -> None:
    text = ("# top\n   # indented comment\nFROM foo\n"
            'SYSTEM """first\n# not a comment: inside the value\nlast"""\n'
            "PARAMETER stop a # b\n")
    cmds, comments = lex_modelfile(text)
    assert [c.ollama_command for c in cmds] == [
        ("model", "foo"), ("system", "first\n# not a comment: inside the value\nlast"), ("stop", "a # b")]
    assert comments == [(1, " top"), (2, " indented comment")]


def test_instructions_are_case_insensitive_names_are_not() -> None:
    cmds, _ = lex_modelfile("from foo\nParameter temperature 0.5\nsYsTeM hi\nMeSsAgE user yo\n")
    assert [c.ollama_command for c in cmds] == [("model", "foo"), ("temperature", "0.5"), ("system", "hi"),
                                                ("message", "user: yo")]


def test_crlf_line_endings() -> None:
    text = 'FROM foo\r\nSYSTEM plain\r\nPARAMETER stop "x y"\r\nTEMPLATE """a\r\nb"""\r\n'
    cmds, _ = lex_modelfile(text)
    assert [c.ollama_command for c in cmds] == [("model", "foo"), ("system", "plain"), ("stop", "x y"),
                                                ("template", "a\r\nb")]
    assert [c.line for c in cmds] == [1, 2, 3, 4]


def test_trailing_comment_becomes_the_value_and_fails(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    text = f"FROM {model}\n\nPARAMETER temperature 0.7 # warmer\n"
    with pytest.raises(ModelfileError, match="0.7 # warmer") as info:
        parse_modelfile(text, tmp_path)
    assert info.value.line == 3
    assert "comment" in info.value.message


# --- import semantics -----------------------------------------------------------------------------------


@pytest.fixture
def model(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    p = d / "my model.gguf"
    p.write_bytes(b"GGUF")
    return p


def test_full_import(model: Path) -> None:
    text = (
        "# comment\n"
        "# layerfit: type_k=q8_0 type_v=q4_0 flash_attn=on headroom=1048576\n"
        "FROM ./my model.gguf\n"
        'SYSTEM """You are "Bob".\n  Keep it short.\n"""\n'
        "PARAMETER num_ctx 16384\n"
        "PARAMETER num_gpu 12\n"
        "PARAMETER num_batch 256\n"
        "PARAMETER num_thread 6\n"
        "PARAMETER use_mmap false\n"
        "PARAMETER temperature 0.25\n"
        "PARAMETER top_p 0.5\n"
        "PARAMETER top_k 7\n"
        "PARAMETER min_p 0.125\n"
        "PARAMETER repeat_penalty 1.5\n"
        "PARAMETER repeat_last_n 32\n"
        "PARAMETER seed 42\n"
        "PARAMETER num_predict -1\n"
        "PARAMETER typical_p 0.75\n"
        "PARAMETER stop <|im_end|>\n"
        'PARAMETER stop " User:"\n'
        "MESSAGE user Hi!\n"
        "MESSAGE assistant Hello.\n"
        "LICENSE MIT\n"
        "LICENSE Apache-2.0\n"
        "REQUIRES 0.14.0\n"
    )
    spec = parse_modelfile(text, model.parent)
    assert spec.from_path == str(model)
    assert (spec.num_ctx, spec.num_gpu, spec.num_batch, spec.num_thread, spec.use_mmap) == (16384, 12, 256, 6, False)
    s = spec.sampling
    assert s.system == 'You are "Bob".\n  Keep it short.\n'
    assert (s.temperature, s.top_p, s.top_k, s.min_p, s.repeat_penalty, s.repeat_last_n) == (
        0.25, 0.5, 7, 0.125, 1.5, 32)
    assert (s.seed, s.max_tokens) == (42, -1)
    assert s.stop == ("<|im_end|>", " User:")
    assert spec.messages == (("user", "Hi!"), ("assistant", "Hello."))
    assert spec.license == ("MIT", "Apache-2.0")
    assert spec.requires == "0.14.0"
    assert spec.extra_params == (("typical_p", 0.75),)
    assert (spec.kv_type_k, spec.kv_type_v, spec.flash_attn, spec.headroom) == ("q8_0", "q4_0", "on", 1048576)
    assert spec.template is None
    assert {"from", "system", "num_ctx", "stop", "message"} <= spec.set_in_file

    applied = spec.apply_to(LoadSettings(n_ctx=4096, n_gpu_layers=3, n_ubatch=512))
    assert (applied.n_ctx, applied.n_gpu_layers, applied.n_batch, applied.n_ubatch, applied.n_threads) == (
        16384, 12, 256, 256, 6)
    assert (applied.type_k, applied.type_v, applied.flash_attn, applied.use_mmap) == ("q8_0", "q4_0", "on", False)


def test_unset_values_keep_the_base(model: Path) -> None:
    base = SamplingSettings(temperature=1.25, stop=("X",), system="old")
    spec = parse_modelfile(f"FROM {model}\nPARAMETER top_k 3\n", "/", sampling=base)
    assert spec.sampling == SamplingSettings(temperature=1.25, top_k=3, stop=("X",), system="old")
    assert spec.num_ctx is None and spec.num_gpu is None
    kept = spec.apply_to(LoadSettings(n_ctx=2048, n_gpu_layers=9))
    assert kept.n_ctx == 2048 and kept.n_gpu_layers is None  # no num_gpu = auto


def test_auto_spellings(model: Path) -> None:
    spec = parse_modelfile(f"FROM {model}\nPARAMETER num_gpu -1\nPARAMETER num_thread 0\nPARAMETER seed -1\n", "/")
    assert (spec.num_gpu, spec.num_thread, spec.sampling.seed) == (None, None, None)


def test_relative_and_home_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    target = tmp_path / "a" / "m.gguf"
    target.write_bytes(b"GGUF")
    assert parse_modelfile("FROM ../m.gguf\n", tmp_path / "a" / "b").from_path == str(target)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_modelfile("FROM ~/a/m.gguf\n", "/").from_path == str(target)


@pytest.mark.parametrize("name", ["llama3:8b", "library/x", "llama3", "hf.co/bartowski/Qwen-GGUF:Q4_K_M",
                                  "registry.ollama.ai/library/llama3:latest"])
def test_registry_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelfileError, match="registry") as info:
        parse_modelfile(f"# hi\n\nFROM {name}\n", tmp_path)
    assert info.value.line == 3


def test_missing_from_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelfileError, match="no FROM line"):
        parse_modelfile("PARAMETER temperature 0.5\n", tmp_path)
    with pytest.raises(ModelfileError, match="no such file") as info:
        parse_modelfile("\nFROM ./gone.gguf\n", tmp_path)
    assert info.value.line == 2
    spec = parse_modelfile("FROM ./gone.gguf\n", tmp_path, require_file=False)
    assert spec.from_path == str(tmp_path / "gone.gguf")
    with pytest.raises(ModelfileError, match="folder"):
        parse_modelfile(f"FROM {tmp_path}\n", tmp_path)


@pytest.mark.parametrize("name", sorted(DEPRECATED_PARAMETERS))
def test_deprecated_names_are_errors(model: Path, name: str) -> None:
    with pytest.raises(ModelfileError, match="deprecated") as info:
        parse_modelfile(f"FROM {model}\nPARAMETER temperature 0.5\nPARAMETER {name} 1\n", "/")
    assert info.value.line == 3
    assert name in str(info.value)


@pytest.mark.parametrize("name", [*sorted(REMOVED_PARAMETERS), "rope_scaling_type"])
def test_removed_names_are_errors(model: Path, name: str) -> None:
    with pytest.raises(ModelfileError, match="removed") as info:
        parse_modelfile(f"FROM {model}\nPARAMETER {name} 1\n", "/")
    assert info.value.line == 2


@pytest.mark.parametrize(("line", "fragment"), [
    ("PARAMETER temprature 0.5", "did you mean temperature"),
    ("PARAMETER Temperature 0.5", "lower case"),
    ("PARAMETER temperature warm", "needs a number"),
    ("PARAMETER temperature nan", "needs a number"),
    ("PARAMETER num_ctx 0.5", "whole number"),
    ("PARAMETER num_ctx 0", "at least 1"),
    ("PARAMETER num_gpu -2", "layer count"),
    ("PARAMETER use_mmap yes", "true or false"),
    ('PARAMETER stop ""', "empty stop"),
    ("PARAMETER  temperature 0.5", "empty name"),
    ("PARAMETER num-ctx 5", "letters, digits and _"),
    ("REQUIRES latest", "version"),
    ("SYSTEM hi\nSYSTEM again", "set again"),
    ("PARAMETER top_k 1\nPARAMETER top_k 2", "set again"),
    ("FROM ./other.gguf", "second FROM"),
    ("SYSTEM a\u200bb", "invisible"),
    ("FROM\n", "needs a value"),
])
def test_bad_lines(model: Path, line: str, fragment: str) -> None:
    with pytest.raises(ModelfileError, match=re.escape(fragment)) as info:
        parse_modelfile(f"FROM {model}\n{line}\n", "/")
    assert info.value.line in (2, 3)
    assert str(info.value).startswith(f"line {info.value.line}: ")


def test_adapter_and_draft_resolved(model: Path) -> None:
    (model.parent / "lora.gguf").write_bytes(b"x")
    spec = parse_modelfile("FROM ./my model.gguf\nADAPTER ./lora.gguf\nRENDERER r1\nPARSER p1\n", model.parent)
    assert spec.adapter == str(model.parent / "lora.gguf")
    assert (spec.renderer, spec.parser) == ("r1", "p1")
    with pytest.raises(ModelfileError, match="ADAPTER"):
        parse_modelfile("FROM ./my model.gguf\nADAPTER ./nope.gguf\n", model.parent)


def test_read_modelfile_encodings(model: Path) -> None:
    text = f"FROM {model}\nSYSTEM You are a utf16 file.\n"
    for i, data in enumerate([text.encode("utf-8"), b"\xef\xbb\xbf" + text.encode("utf-8"),
                              b"\xff\xfe" + text.encode("utf-16-le"), b"\xfe\xff" + text.encode("utf-16-be")]):
        path = model.parent / f"Modelfile{i}"
        path.write_bytes(data)
        assert read_modelfile(path).sampling.system == "You are a utf16 file."
    bad = model.parent / "bad"
    bad.write_bytes(b"FROM \xff\xfe\xfd\n")
    with pytest.raises(ModelfileError, match="not UTF-8"):
        read_modelfile(bad)
    with pytest.raises(ModelfileError, match="no such Modelfile"):
        read_modelfile(model.parent / "missing")


# --- export -------------------------------------------------------------------------------------------

SYSTEM = 'You are "Ada", a careful assistant.\nSay "I don\'t know" when unsure.\n  # not a comment\n'
STOPS = ("<|im_end|>", "User:", '"', "### Instruction")


def _tuned_spec(model: Path) -> ModelfileSpec:
    return spec_from(model, LoadSettings(n_ctx=16384, type_k="q8_0", type_v="q8_0", flash_attn="on"), 28,
                     SamplingSettings(temperature=0.2, system=SYSTEM, stop=STOPS), headroom=512 * 1024**2,
                     notes=["LayerFit plan: 28 of 33 layers on the GPU"])


def test_export_exact_body(model: Path) -> None:
    text = export_modelfile(_tuned_spec(model))
    body = text[text.index("\nFROM ") + 1:]
    assert body == (
        f"FROM {model}\n"
        'SYSTEM """You are "Ada", a careful assistant.\n'
        'Say "I don\'t know" when unsure.\n'
        '  # not a comment\n'
        '"""\n'
        "PARAMETER num_ctx 16384\n"
        "PARAMETER num_gpu 28\n"
        "PARAMETER temperature 0.2\n"
        "PARAMETER top_p 0.95\n"
        "PARAMETER top_k 40\n"
        "PARAMETER min_p 0.05\n"
        "PARAMETER repeat_penalty 1.1\n"
        "PARAMETER repeat_last_n 64\n"
        "PARAMETER num_predict 512\n"
        "PARAMETER stop <|im_end|>\n"
        "PARAMETER stop User:\n"
        'PARAMETER stop """""""\n'
        'PARAMETER stop "### Instruction"\n'
    )
    assert "OLLAMA_KV_CACHE_TYPE=q8_0" in text and "OLLAMA_FLASH_ATTENTION=1" in text
    assert f"OLLAMA_GPU_OVERHEAD={512 * 1024**2}" in text


def test_export_grammar_line_by_line(model: Path) -> None:
    """The issue's acceptance check: multi-line SYSTEM with quotes, several stops, tuned values."""
    text = export_modelfile(_tuned_spec(model))
    lines = text.split("\n")
    assert lines[-1] == ""  # ends with a newline
    forbidden = set(DEPRECATED_PARAMETERS) | set(REMOVED_PARAMETERS)
    current = {"num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "num_keep", "seed",
               "num_predict", "top_k", "top_p", "min_p", "typical_p", "repeat_last_n", "temperature",
               "repeat_penalty", "presence_penalty", "frequency_penalty", "stop"}
    in_value = False
    seen_from = []
    for line in lines:
        if in_value:  # a continuation line of the triple-quoted SYSTEM
            in_value = not line.endswith('"""')
            continue
        if line.startswith("#") or line == "":
            continue
        word, _, rest = line.partition(" ")
        assert word in ("FROM", "SYSTEM", "PARAMETER"), line
        if word == "FROM":
            seen_from.append(rest)
        elif word == "SYSTEM":
            in_value = rest.startswith('"""') and not (len(rest) >= 6 and rest.endswith('"""'))
        else:
            name, _, value = rest.partition(" ")
            assert name in current and name not in forbidden, line
            if name != "stop":  # numbers: nothing may follow them, least of all a comment
                assert re.fullmatch(r"-?[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?", value), line
            assert not re.search(r"\s#", value) or value.startswith('"'), line
    assert seen_from == [str(model)] and os.path.isabs(seen_from[0])
    assert not in_value
    assert "TEMPLATE" not in text and "MESSAGE" not in text
    assert "num_batch" not in text  # the default is not worth a line
    # and it reads back to the same settings
    assert parse_modelfile(text, "/") == _tuned_spec(model)


def test_export_leaves_num_gpu_out_for_auto_and_writes_template_when_overridden(model: Path) -> None:
    spec = spec_from(model, LoadSettings(n_batch=1024, n_threads=4, use_mmap=False), None, SamplingSettings(seed=7),
                     messages=[("user", "2+2?"), ("assistant", "4")], template="{{ .Prompt }}")
    text = export_modelfile(spec)
    assert "PARAMETER num_gpu" not in text
    for expected in ("PARAMETER num_batch 1024\n", "PARAMETER num_thread 4\n", "PARAMETER use_mmap false\n",
                     "PARAMETER seed 7\n", "TEMPLATE {{ .Prompt }}\n", "MESSAGE user 2+2?\n", "MESSAGE assistant 4\n"):
        assert expected in text
    assert parse_modelfile(text, "/") == spec


@pytest.mark.parametrize(("value", "written"), [
    ('say "hi"', 'say "hi"'),  # Ollama's rule: no newline, no edge space -> bare
    ('"quoted"', '""""quoted""""'),  # starts with a quote: bare would lose it
    ('ends with "', 'ends with "'),
    ('two\nlines "q"', '"""two\nlines "q""""'),
    (" lead", '" lead"'),
    ("tab\t", '"tab\t"'),
    ("", '""'),
    ("a # b", '"a # b"'),
])
def test_quoting_rule(model: Path, value: str, written: str) -> None:
    spec = spec_from(model, LoadSettings(), None, SamplingSettings(system=value or "x"), messages=[("user", value)])
    text = export_modelfile(spec)
    assert f"MESSAGE user {written}\n" in text
    assert parse_modelfile(text, "/").messages == (("user", value),)


@pytest.mark.parametrize(("sampling", "fragment"), [
    (SamplingSettings(system='a """ b'), '"""'),
    (SamplingSettings(stop=('x"""',)), '"""'),
    (SamplingSettings(stop=("",)), "empty"),
    (SamplingSettings(system="zero\u200bwidth"), "invisible"),
    (SamplingSettings(system="bell\x07"), "invisible"),
    (SamplingSettings(temperature=float("nan")), "finite"),
])
def test_unexpressible_values_are_refused(model: Path, tmp_path: Path, sampling: SamplingSettings,
                                          fragment: str) -> None:
    spec = spec_from(model, LoadSettings(), 3, sampling)
    with pytest.raises(ModelfileError, match=re.escape(fragment)):
        export_modelfile(spec)
    out = tmp_path / "Modelfile"
    out.write_text("previous")
    with pytest.raises(ModelfileError):
        write_modelfile(out, spec)
    assert out.read_text() == "previous"  # never written broken, never clobbered


def test_relative_from_is_refused_and_template_with_triple_quotes(model: Path) -> None:
    with pytest.raises(ModelfileError, match="absolute"):
        export_modelfile(ModelfileSpec(from_path="models/x.gguf"))
    with pytest.raises(ModelfileError, match="template"):
        export_modelfile(ModelfileSpec(from_path=str(model), template='x """ y'))


def test_write_modelfile_and_read_back(model: Path, tmp_path: Path) -> None:
    spec = _tuned_spec(model)
    out = tmp_path / "out" / "Modelfile"
    out.parent.mkdir()  # the user picks an existing folder; a typo is refused
    write_modelfile(out, spec)
    assert read_modelfile(out) == spec
    assert not [p for p in out.parent.iterdir() if p.name != "Modelfile"]  # no temp file left


def test_errors_reach_people_as_plain_words() -> None:
    from core.errors import describe

    assert describe(ModelfileError(7, "unknown parameter 'x'")) == "line 7: unknown parameter 'x'"
    assert describe(ModelfileError(None, "no FROM line")) == "no FROM line"
