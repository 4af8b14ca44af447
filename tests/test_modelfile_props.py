"""Property tests: export -> import gives back the same settings, and what can't be written is refused.

The generated text deliberately leans on the characters that break Modelfiles: double quotes, ``#``,
leading/trailing spaces and tabs, CR and LF, plus any printable Unicode.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.modelfile import (
    EXTRA_PARAMETERS,
    MESSAGE_ROLES,
    PARAMETER_TYPES,
    ModelfileError,
    ModelfileSpec,
    export_modelfile,
    lex_modelfile,
    parse_modelfile,
    quote_value,
)
from core.sampling import SamplingSettings

FROM = "/models/some dir/model #1.gguf"  # spaces and # in the path on purpose

tricky = st.sampled_from(['"', '""', "#", " ", "\t", "\n", "\r", "\r\n", "'", ":", "\\", "{{", "}}"])
printable = st.characters(categories=("L", "M", "N", "P", "S"))
text = st.lists(tricky | printable, max_size=12).map("".join).filter(lambda s: '"""' not in s)
nonempty = text.filter(bool)
int64 = st.integers(-(2**63), 2**63 - 1)
# What LayerFit applies lands in 32-bit fields (llama.cpp's params, Qt's spin boxes): import range-checks
# against that, so the round trip covers it; extra parameters are only carried, and stay 64-bit.
int32 = st.integers(-(2**31), 2**31 - 1)
finite = st.floats(min_value=-1e30, max_value=1e30, allow_nan=False, allow_infinity=False)

samplings = st.builds(
    SamplingSettings,
    temperature=finite, top_p=finite, top_k=int32, min_p=finite, repeat_penalty=finite,
    repeat_last_n=int32, seed=st.none() | int32.filter(lambda n: n != -1), max_tokens=int32,
    stop=st.lists(nonempty, max_size=4).map(tuple), system=text,
)


def _extra(name: str) -> st.SearchStrategy[tuple[str, int | float | bool]]:
    kind = PARAMETER_TYPES[name]
    values: st.SearchStrategy[int | float | bool] = int64 if kind is int else finite
    return st.tuples(st.just(name), values)


specs = st.builds(
    ModelfileSpec,
    from_path=st.just(FROM),
    num_ctx=st.none() | st.integers(1, 2**31 - 1),
    num_gpu=st.none() | st.integers(0, 1000),
    num_batch=st.none() | st.integers(1, 65536),
    num_thread=st.none() | st.integers(1, 512),
    use_mmap=st.none() | st.booleans(),
    sampling=samplings,
    messages=st.lists(st.tuples(st.sampled_from(MESSAGE_ROLES), text), max_size=4).map(tuple),
    template=st.none() | text,
    kv_type_k=st.none() | st.sampled_from(["f16", "q8_0", "q4_0", "f32"]),
    kv_type_v=st.none() | st.sampled_from(["f16", "q8_0", "q4_0"]),
    flash_attn=st.none() | st.sampled_from(["on", "off", "auto"]),
    headroom=st.none() | st.integers(0, 64 * 2**30),
    extra_params=st.lists(st.sampled_from(EXTRA_PARAMETERS), unique=True, max_size=3).flatmap(
        lambda names: st.tuples(*(_extra(n) for n in names))),
    license=st.lists(text, max_size=2).map(tuple),
    requires=st.none() | st.sampled_from(["0.14.0", "1.2.3-rc1"]),
    renderer=st.none() | nonempty,
    parser=st.none() | nonempty,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_export_import_round_trip(spec: ModelfileSpec) -> None:
    written = export_modelfile(spec)
    back = parse_modelfile(written, "/elsewhere", require_file=False)
    assert back == spec
    # and a second export is byte-for-byte the same file
    assert export_modelfile(back) == written


@settings(max_examples=300)
@given(text)
def test_any_value_survives_every_instruction(value: str) -> None:
    for head in ("SYSTEM", "TEMPLATE", "LICENSE", "MESSAGE user", "PARAMETER stop"):
        cmds, _ = lex_modelfile(f"FROM x\n{head} {quote_value(value, 'v')}\n# after\nSYSTEM next\n")
        assert [c.args for c in cmds] == ["x", value, "next"]


@settings(max_examples=200)
@given(text, text, st.sampled_from(["system", "stop", "template", "message", "license"]))
def test_triple_quotes_are_refused_everywhere(before: str, after: str, where: str) -> None:
    bad = before + '"""' + after
    base = ModelfileSpec(from_path=FROM)
    spec = {
        "system": ModelfileSpec(from_path=FROM, sampling=SamplingSettings(system=bad)),
        "stop": ModelfileSpec(from_path=FROM, sampling=SamplingSettings(stop=("ok", bad))),
        "template": ModelfileSpec(from_path=FROM, template=bad),
        "message": ModelfileSpec(from_path=FROM, messages=(("user", "fine"), ("assistant", bad))),
        "license": ModelfileSpec(from_path=FROM, license=(bad,)),
    }[where]
    try:
        export_modelfile(spec)
    except ModelfileError as exc:
        assert '"""' in str(exc)
    else:
        raise AssertionError(f"{where} with \"\"\" was written")
    assert export_modelfile(base)  # the same spec without the bad value is fine


@settings(max_examples=200)
@given(text, st.characters(categories=("Cc", "Cf", "Zs", "Zl", "Zp", "Co")).filter(lambda c: c not in " \t\r\n"),
       text)
def test_characters_ollama_would_drop_are_refused(before: str, invisible: str, after: str) -> None:
    spec = ModelfileSpec(from_path=FROM, sampling=SamplingSettings(system=before + invisible + after))
    try:
        export_modelfile(spec)
    except ModelfileError as exc:
        assert "invisible" in str(exc)
    else:
        raise AssertionError(f"U+{ord(invisible):04X} was written")
