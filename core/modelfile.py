"""Ollama Modelfiles: export LayerFit's settings in Ollama's own grammar, and import them back.

Ollama's format has traps, so this module follows Ollama's parser (``parser/parser.go``) rune by rune
instead of guessing at a grammar:

* Instructions (FROM, PARAMETER, SYSTEM, ...) are case-insensitive; PARAMETER names and MESSAGE roles
  are not.
* A value runs to the end of its line. ``"..."`` and ``\"\"\"...\"\"\"`` values may span lines; there
  are no escapes. A quoted value ends at the first line break after which the text so far (trimmed)
  is a complete quoted string.
* ``#`` starts a comment only where an instruction could start: ``PARAMETER temperature 0.7 # x`` makes
  the value ``0.7 # x``, which Ollama then rejects. The exporter never writes trailing comments.
* Ollama drops every character Go does not call printable (other than space, tab, CR and LF). Rather
  than lose a character silently, the importer and the exporter both refuse such values.

The exporter quotes like Ollama's serializer (``quote()``: a value with a line break or an edge space
is quoted, in triple quotes when it holds a ``"``), widened so that every value it writes reads back
exactly: it also quotes values that start with ``"``, have an edge tab, hold a CR, are empty, or hold
``#`` (so no line can look like it has a trailing comment). A value holding ``\"\"\"`` is refused: a
Modelfile cannot be trusted to carry it.

KV cache type, flash attention and the GPU headroom are server settings in Ollama
(``OLLAMA_KV_CACHE_TYPE``, ``OLLAMA_FLASH_ATTENTION``, ``OLLAMA_GPU_OVERHEAD``), so they go in
full-line comments, plus one ``# layerfit: ...`` comment line that LayerFit reads back on import.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from core.errors import PlainError
from core.loadsettings import KV_BYTES, LoadSettings
from core.safeload import StoredFileError, read_bytes_bounded
from core.sampling import SamplingSettings


class ModelfileError(ValueError, PlainError):
    """A Modelfile that can't be read, or a value that can't be written. ``line`` is 1-based or None."""

    def __init__(self, line: int | None, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}" if line else message)


# --- Ollama's vocabulary (parser.go, api/types.go; see ../shared/research/gui.md §2) -------------------

#: Instruction words ``parser.isValidCommand`` accepts.
INSTRUCTIONS = ("from", "parameter", "template", "system", "adapter", "license", "message", "requires",
                "draft", "renderer", "parser")

MESSAGE_ROLES = ("system", "user", "assistant")

#: Current PARAMETER names (JSON tags of api.Options + api.Runner) and the Go kind FormatParams parses.
PARAMETER_TYPES: dict[str, type] = {
    "num_ctx": int, "num_batch": int, "num_gpu": int, "main_gpu": int, "use_mmap": bool,
    "num_thread": int, "draft_num_predict": int, "num_keep": int, "seed": int, "num_predict": int,
    "top_k": int, "top_p": float, "min_p": float, "typical_p": float, "repeat_last_n": int,
    "temperature": float, "repeat_penalty": float, "presence_penalty": float,
    "frequency_penalty": float, "stop": str,
}

#: Parameters LayerFit keeps as-is (no LayerFit setting of their own) and writes back on export.
EXTRA_PARAMETERS = ("main_gpu", "num_keep", "typical_p", "presence_penalty", "frequency_penalty",
                    "draft_num_predict")

#: ``parser.deprecatedParameters``: Ollama warns and ignores them. Value: what to use instead.
DEPRECATED_PARAMETERS: dict[str, str] = {
    "penalize_newline": "it no longer does anything",
    "low_vram": "lower num_gpu instead",
    "f16_kv": "the KV cache type is the server's OLLAMA_KV_CACHE_TYPE",
    "logits_all": "it no longer does anything",
    "vocab_only": "it no longer does anything",
    "use_mlock": "it no longer does anything",
    "mirostat": "use top_k, top_p or min_p instead",
    "mirostat_tau": "use top_k, top_p or min_p instead",
    "mirostat_eta": "use top_k, top_p or min_p instead",
}

#: Names Ollama removed: ``ollama create`` now fails with "unknown parameter".
REMOVED_PARAMETERS: dict[str, str] = {
    "tfs_z": "tail-free sampling left llama.cpp in Ollama v0.5.2",
    "num_gqa": "the model's own value is used since Ollama v0.1.35",
    "rope_frequency_base": "the model's own value is used since Ollama v0.1.35",
    "rope_frequency_scale": "the model's own value is used since Ollama v0.1.35",
    "numa": "NUMA is detected automatically since Ollama v0.3.4",
    "embedding_only": "removed in Ollama v0.1.28",
}

_INT64 = (-(2**63), 2**63 - 1)
#: Settings LayerFit applies go into 32-bit fields: llama.cpp's (n_ctx, n_batch, n_threads, top_k, seed,
#: penalty_last_n are int32/uint32) and Qt's spin boxes and sliders (int). Ollama's Go ints are wider.
_INT32_MAX = 2**31 - 1
#: The most GPU headroom the window's control holds (64 GiB).
MAX_HEADROOM = 64 * 2**30
#: A Modelfile larger than this is not one (a long SYSTEM prompt is a few hundred KB).
MAX_MODELFILE_BYTES = 64 * 2**20
_FLOAT32_MAX = 3.4028234663852886e38
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
          "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}
_REGISTRY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?::[0-9]+)?(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*"
                            r"(?::[A-Za-z0-9_][A-Za-z0-9._-]*)?(?:@sha256:[0-9a-fA-F]+)?")
_SEMVER = re.compile(r"v(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*)"
                     r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?")
_MACHINE_PREFIX = "layerfit:"
_DEFAULT_BATCH = 512  # llama.cpp's and Ollama's default num_batch: not worth a line


# --- the settings a Modelfile carries ----------------------------------------------------------------


@dataclass(frozen=True)
class ModelfileSpec:
    """Everything LayerFit writes to, or reads from, a Modelfile.

    Load fields are None when the file does not set them (``num_gpu`` None = Ollama decides, the same
    as LayerFit's auto). ``sampling`` is complete: the file's values over the settings the import
    started from. ``kv_type_k``/``kv_type_v``/``flash_attn``/``headroom`` live only in comments.
    """

    from_path: str  # absolute
    num_ctx: int | None = None
    num_gpu: int | None = None  # layers (-ngl), the output layer counts as one; None = auto
    num_batch: int | None = None
    num_thread: int | None = None
    use_mmap: bool | None = None
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    messages: tuple[tuple[str, str], ...] = ()  # (role, content), role in MESSAGE_ROLES
    template: str | None = None  # None = the GGUF's own chat template
    kv_type_k: str | None = None
    kv_type_v: str | None = None
    flash_attn: str | None = None  # "on" | "off" | "auto"
    headroom: int | None = None  # bytes of GPU memory kept free (OLLAMA_GPU_OVERHEAD)
    extra_params: tuple[tuple[str, int | float | bool], ...] = ()  # EXTRA_PARAMETERS, kept verbatim
    adapter: str | None = None  # absolute path
    draft: str | None = None  # absolute path
    license: tuple[str, ...] = ()
    requires: str | None = None
    renderer: str | None = None
    parser: str | None = None
    #: Free-text header comment lines (export only; not read back).
    notes: tuple[str, ...] = field(default=(), compare=False)
    #: Export only: leave ``num_predict`` out (Ollama then leaves replies uncapped) unless the user set it.
    omit_num_predict: bool = field(default=False, compare=False)
    #: What the imported file set: instruction words and PARAMETER names (import only).
    set_in_file: frozenset[str] = field(default=frozenset(), compare=False)

    def apply_to(self, settings: LoadSettings) -> LoadSettings:
        """``settings`` with what this Modelfile says applied; fields it doesn't set are kept.

        A missing ``num_gpu`` means auto: that is how Ollama (and this exporter) spell "let it decide".
        """
        changes: dict[str, object] = {"n_gpu_layers": self.num_gpu}
        if self.num_ctx is not None:
            changes["n_ctx"] = self.num_ctx
        if self.num_batch is not None:
            changes["n_batch"] = self.num_batch
            changes["n_ubatch"] = min(settings.n_ubatch, self.num_batch)
        if self.num_thread is not None:
            changes["n_threads"] = self.num_thread
        if self.use_mmap is not None:
            changes["use_mmap"] = self.use_mmap
        if self.kv_type_k is not None:
            changes["type_k"] = self.kv_type_k
        if self.kv_type_v is not None:
            changes["type_v"] = self.kv_type_v
        if self.flash_attn is not None:
            changes["flash_attn"] = self.flash_attn
        return settings.with_(**changes)


def spec_from(model_path: str | Path, settings: LoadSettings, gpu_layers: int | None,
              sampling: SamplingSettings, messages: Iterable[tuple[str, str]] = (),
              template: str | None = None, headroom: int | None = None, *,
              notes: Iterable[str] = ()) -> ModelfileSpec:
    """The spec for exporting ``model_path`` loaded with ``settings`` and chatting with ``sampling``.

    ``gpu_layers`` is the fitted layer count (``Plan.gpu_layers``); None or a negative number leaves
    ``num_gpu`` out so Ollama decides. ``num_batch`` is written only when it differs from the default.
    """
    return ModelfileSpec(
        from_path=os.path.abspath(os.path.expanduser(os.fspath(model_path))),
        num_ctx=settings.n_ctx,
        num_gpu=gpu_layers if gpu_layers is not None and gpu_layers >= 0 else None,
        num_batch=settings.n_batch if settings.n_batch != _DEFAULT_BATCH else None,
        num_thread=settings.n_threads,
        use_mmap=None if settings.use_mmap else False,
        sampling=sampling,
        messages=tuple((r, c) for r, c in messages),
        template=template,
        kv_type_k=settings.type_k,
        kv_type_v=settings.type_v,
        flash_attn=settings.flash_attn,
        headroom=headroom,
        notes=tuple(notes),
    )


# --- characters and quoting --------------------------------------------------------------------------


def _go_printable(ch: str) -> bool:
    """Go's ``strconv.IsPrint``: letters, marks, numbers, punctuation, symbols and the ASCII space."""
    return ch == " " or unicodedata.category(ch)[0] in "LMNPS"


def _dropped_char(value: str) -> str | None:
    """The first character Ollama's parser would silently drop from ``value``, if any."""
    for ch in value:
        if ch not in "\t\r\n" and not _go_printable(ch):
            return ch
    return None


def _char_name(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" ({name})" if name else "")


def quote_value(value: str, what: str, *, quote_hash: bool = True) -> str:
    """``value`` spelled so that Ollama's parser reads back exactly ``value``; ModelfileError if it can't.

    ``what`` names the value in the error ("the system prompt", "stop string 2", ...). ``quote_hash``
    quotes values holding ``#`` so that no line looks like it carries a trailing comment (the parser
    doesn't need it; paths are left bare so FROM lines stay plain).
    """
    bad = _dropped_char(value)
    if bad is not None:
        raise ModelfileError(None, f"{what} contains the invisible character {_char_name(bad)}, which "
                                   "Ollama would silently drop; remove it before exporting")
    if '"""' in value:
        raise ModelfileError(None, f'{what} contains """ (three double quotes), which a Modelfile '
                                   "cannot hold: the format has no escapes; change it before exporting")
    needs_quotes = (
        value == ""
        or "\n" in value
        or "\r" in value
        or (quote_hash and "#" in value)
        or value[0] in ' \t"'
        or value[-1] in " \t"
    )
    if not needs_quotes:
        return value
    # Triple quotes are exact for any value without """: the parser only ends a value at a line break
    # where the text so far ends in """ (and is at least six characters long), and the slice it takes
    # between the outer """ keeps quotes at the edges. A value with " can't use single quotes: a line
    # ending in " inside it would end the value early.
    if '"' in value:
        return f'"""{value}"""'
    return f'"{value}"'


def _format_number(name: str, value: object) -> str:
    kind = PARAMETER_TYPES[name]
    if kind is bool:
        if not isinstance(value, bool):
            raise ModelfileError(None, f"{name} must be true or false, not {value!r}")
        return "true" if value else "false"
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ModelfileError(None, f"{name} must be a whole number, not {value!r}")
        if not _INT64[0] <= value <= _INT64[1]:
            raise ModelfileError(None, f"{name} {value} is too large for Ollama")
        return str(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelfileError(None, f"{name} must be a number, not {value!r}")
    f = float(value)
    if not math.isfinite(f):
        raise ModelfileError(None, f"{name} must be a finite number, not {value!r}")
    if abs(f) > _FLOAT32_MAX:
        raise ModelfileError(None, f"{name} {value!r} is too large for Ollama (a 32-bit float)")
    return repr(f)


# --- export ------------------------------------------------------------------------------------------


def _comment(text: str) -> list[str]:
    """Full-line comments for ``text``; line breaks and invisible characters become spaces."""
    out = []
    for part in re.split(r"\r\n|\r|\n", text):
        clean = "".join(ch if ch == " " or _go_printable(ch) else " " for ch in part).rstrip()
        out.append(f"# {clean}" if clean else "#")
    return out


def _server_comments(spec: ModelfileSpec) -> list[str]:
    """The comment block for settings only the Ollama server can set, and LayerFit's machine line."""
    if spec.kv_type_k is None and spec.kv_type_v is None and spec.flash_attn is None and spec.headroom is None:
        return []
    for name, t in (("K", spec.kv_type_k), ("V", spec.kv_type_v)):
        if t is not None and t not in KV_BYTES:
            raise ModelfileError(None, f"unknown {name} cache type {t!r}: use one of {', '.join(KV_BYTES)}")
    if spec.flash_attn is not None and spec.flash_attn not in ("on", "off", "auto"):
        raise ModelfileError(None, f"flash attention must be on, off or auto, not {spec.flash_attn!r}")
    if spec.headroom is not None and (isinstance(spec.headroom, bool) or not isinstance(spec.headroom, int)
                                      or spec.headroom < 0):
        raise ModelfileError(None, f"headroom must be a number of bytes, 0 or more, not {spec.headroom!r}")

    lines = ["#", "# Ollama can't set these per model: they are settings of the Ollama server. To match",
             "# this plan, set them in the environment of `ollama serve`:"]
    k, v = spec.kv_type_k, spec.kv_type_v
    if k is not None or v is not None:
        kv = k or v
        if k is not None and v is not None and k != v:
            lines.append(f"#   (LayerFit planned a {k} K cache and a {v} V cache; Ollama uses one type for both)")
        if kv == "f32":
            lines.append("#   OLLAMA_KV_CACHE_TYPE: Ollama has no f32 cache; f16, its default, is the closest")
        else:
            lines.append(f"#   OLLAMA_KV_CACHE_TYPE={kv}" + ("   (the default)" if kv == "f16" else ""))
    if spec.flash_attn == "on":
        lines.append("#   OLLAMA_FLASH_ATTENTION=1")
    elif spec.flash_attn == "off":
        lines.append("#   OLLAMA_FLASH_ATTENTION=0")
    elif spec.flash_attn == "auto":
        lines.append("#   OLLAMA_FLASH_ATTENTION left unset (auto)")
    if spec.headroom is not None:
        lines.append(f"#   OLLAMA_GPU_OVERHEAD={spec.headroom}   (GPU memory to keep free, in bytes)")
    machine = [f"{key}={val}" for key, val in (("type_k", k), ("type_v", v), ("flash_attn", spec.flash_attn),
                                                ("headroom", spec.headroom)) if val is not None]
    lines.append(f"# {_MACHINE_PREFIX} " + " ".join(machine))
    return lines


def _check_path(path: str | None, what: str) -> str | None:
    if path is None:
        return None
    if not os.path.isabs(path):
        raise ModelfileError(None, f"{what} must be an absolute path, not {path!r}")
    return quote_value(path, f"the {what} path", quote_hash=False)


def export_modelfile(spec: ModelfileSpec) -> str:
    """The Modelfile text for ``spec`` (ends with a newline). ModelfileError if a value can't be written.

    Only current PARAMETER names are written, never a trailing comment; TEMPLATE only when overridden.
    """
    from core import __version__

    lines = _comment(f"Modelfile made by LayerFit {__version__} for {os.path.basename(spec.from_path)}")
    lines.append("# Create the Ollama model with: ollama create NAME -f THIS_FILE")
    for note in spec.notes:
        lines += _comment(note)
    lines += _server_comments(spec)
    lines.append("")

    if not spec.from_path:
        raise ModelfileError(None, "FROM needs the model's path")
    from_value = _check_path(spec.from_path, "FROM")
    lines.append(f"FROM {from_value}")
    for word, path in (("ADAPTER", spec.adapter), ("DRAFT", spec.draft)):
        value = _check_path(path, word)
        if value is not None:
            lines.append(f"{word} {value}")
    if spec.template is not None:
        lines.append(f"TEMPLATE {quote_value(spec.template, 'the template')}")
    s = spec.sampling
    if s.system:
        lines.append(f"SYSTEM {quote_value(s.system, 'the system prompt')}")

    params: list[tuple[str, object]] = []
    if spec.num_ctx is not None:
        if spec.num_ctx < 1:
            raise ModelfileError(None, f"num_ctx must be at least 1, not {spec.num_ctx}")
        params.append(("num_ctx", spec.num_ctx))
    if spec.num_gpu is not None:
        if spec.num_gpu < 0:
            raise ModelfileError(None, f"num_gpu is a layer count, 0 or more (None = auto), not {spec.num_gpu}")
        params.append(("num_gpu", spec.num_gpu))
    if spec.num_batch is not None:
        if spec.num_batch < 1:
            raise ModelfileError(None, f"num_batch must be at least 1, not {spec.num_batch}")
        params.append(("num_batch", spec.num_batch))
    if spec.num_thread is not None:
        if spec.num_thread < 1:
            raise ModelfileError(None, f"num_thread must be at least 1 (None = auto), not {spec.num_thread}")
        params.append(("num_thread", spec.num_thread))
    if spec.use_mmap is not None:
        params.append(("use_mmap", spec.use_mmap))
    params += [("temperature", s.temperature), ("top_p", s.top_p), ("top_k", s.top_k), ("min_p", s.min_p),
               ("repeat_penalty", s.repeat_penalty), ("repeat_last_n", s.repeat_last_n)]
    if s.seed is not None:
        params.append(("seed", s.seed))
    if not spec.omit_num_predict:
        params.append(("num_predict", s.max_tokens))
    for name, extra in spec.extra_params:
        if name not in EXTRA_PARAMETERS:
            raise ModelfileError(None, f"{name!r} is not a parameter LayerFit writes")
        params.append((name, extra))
    for name, number in params:
        lines.append(f"PARAMETER {name} {_format_number(name, number)}")
    for i, stop in enumerate(s.stop, 1):
        if not isinstance(stop, str) or stop == "":
            raise ModelfileError(None, f"stop string {i} is empty; an empty stop string would end every reply")
        lines.append(f"PARAMETER stop {quote_value(stop, f'stop string {i} ({stop!r})')}")

    for i, (role, content) in enumerate(spec.messages, 1):
        if role not in MESSAGE_ROLES:
            raise ModelfileError(None, f"message {i} has role {role!r}; Ollama takes system, user or assistant")
        lines.append(f"MESSAGE {role} {quote_value(content, f'message {i}')}")
    for i, text in enumerate(spec.license, 1):
        lines.append(f"LICENSE {quote_value(text, f'license {i}')}")
    if spec.requires is not None:
        _check_semver(spec.requires, None)
        lines.append(f"REQUIRES {spec.requires}")
    for word, value in (("RENDERER", spec.renderer), ("PARSER", spec.parser)):
        if value is not None:
            lines.append(f"{word} {quote_value(value, word)}")
    return "\n".join(lines) + "\n"


def write_modelfile(path: str | Path, spec: ModelfileSpec) -> None:
    """Export ``spec`` and write it atomically (a crash never leaves half a file). SaveError on failure."""
    from core.atomic import write_text_atomic

    text = export_modelfile(spec)  # a value that can't be written fails before the file is touched
    write_text_atomic(path, text)


# --- the lexer: parser.go's state machine --------------------------------------------------------------

_NIL, _NAME, _VALUE, _PARAM, _MESSAGE, _COMMENT = range(6)


@dataclass(frozen=True)
class Instruction:
    """One instruction as Ollama's parser splits it (before any meaning is given to it)."""

    word: str  # the instruction, lower case ("from", "parameter", ...)
    name: str  # the PARAMETER name as written ("" otherwise)
    role: str  # the MESSAGE role ("" otherwise)
    args: str  # the value, unquoted
    line: int  # where the instruction starts (1-based)

    @property
    def ollama_command(self) -> tuple[str, str]:
        """``(Name, Args)`` of Ollama's ``parser.Command``, to compare with Ollama's own parser tests."""
        if self.word == "from":
            return "model", self.args
        if self.word == "parameter":
            return self.name, self.args
        if self.word == "message":
            return "message", f"{self.role}: {self.args}"
        return self.word, self.args


def _unquote(s: str) -> tuple[str, bool]:
    """parser.go ``unquote``: strip one pair of ``\"\"\"`` or ``"``; False while the quote is still open."""
    if s.startswith('"""'):
        if len(s) >= 6 and s.endswith('"""'):
            return s[3:-3], True
        return "", False
    if s.startswith('"'):
        if len(s) >= 2 and s.endswith('"'):
            return s[1:-1], True
        return "", False
    return s, True


def _closed(buf: list[str], first: int, last: int) -> bool:
    """``_unquote(_trim("".join(buf)))[1]`` in O(1): is the value complete at this line break?

    ``first``/``last`` index the first and last characters that are not space, tab, CR or LF (-1: none).
    """
    if first < 0:
        return True
    n = last - first + 1
    if buf[first] != '"':
        return True
    if n >= 3 and buf[first + 1] == '"' and buf[first + 2] == '"':  # """…"""
        return n >= 6 and buf[last] == buf[last - 1] == buf[last - 2] == '"'
    return n >= 2 and buf[last] == '"'


def _trim(s: str) -> str:
    # Go's TrimSpace; the buffer holds only printable characters, space, tab, CR and LF.
    return s.strip(" \t\r\n")


def _instruction_list() -> str:
    return ", ".join(w.upper() for w in INSTRUCTIONS)


def lex_modelfile(text: str) -> tuple[list[Instruction], list[tuple[int, str]]]:
    """Instructions and full-line comments ``(line, text after #)``, split as Ollama's ``ParseFile`` does.

    Only the grammar is checked here (instruction words, PARAMETER name characters, MESSAGE roles,
    quotes); names and values are checked by ``parse_modelfile``.
    """
    if text.startswith("\ufeff"):  # a BOM, which Ollama's reader drops too
        text = text[1:]
    commands: list[Instruction] = []
    comments: list[tuple[int, str]] = []
    state = _NIL
    buf: list[str] = []
    line = 1
    start = 1  # line the current instruction or comment began on
    word = name = role = ""
    prev_cr = False
    first_ns = last_ns = -1  # in a value: where its first and last non-space characters are in buf

    for ch in text:
        newline = ch in "\r\n"
        space = ch in " \t"
        if state == _NIL:
            if ch == "#":
                state, buf, start = _COMMENT, [], line
            elif not (space or newline):
                if not _go_printable(ch):
                    raise ModelfileError(line, f"the invisible character {_char_name(ch)} stands where an "
                                               "instruction should start; remove it")
                state, buf, start = _NAME, [ch], line
        elif state == _NAME:
            if ch.isascii() and ch.isalpha():
                buf.append(ch)
            else:
                got = "".join(buf)
                known = got.lower() in INSTRUCTIONS
                if space and known:
                    word = got.lower()
                    state = {"parameter": _PARAM, "message": _MESSAGE}.get(word, _VALUE)
                    buf = []
                elif newline and known:
                    raise ModelfileError(line, f"{got.upper()} needs a value on the same line")
                elif space or newline:
                    raise ModelfileError(line, f"unknown instruction {got!r}: use one of {_instruction_list()}")
                else:
                    raise ModelfileError(line, f"unknown instruction {got + ch!r}: instructions are letters "
                                               f"only, one of {_instruction_list()}")
        elif state == _PARAM:
            if ch.isascii() and (ch.isalnum() or ch == "_"):
                buf.append(ch)
            elif space:
                name, state, buf = "".join(buf), _VALUE, []
            elif newline:
                got = "".join(buf)
                raise ModelfileError(line, f"PARAMETER {got} has no value" if got
                                     else "PARAMETER needs a name and a value")
            else:
                raise ModelfileError(line, f"parameter name {''.join(buf) + ch!r} may only use letters, "
                                           "digits and _")
        elif state == _MESSAGE:
            if ch.isascii() and ch.isalpha():
                buf.append(ch)
            elif space and "".join(buf) in MESSAGE_ROLES:
                role, state, buf = "".join(buf), _VALUE, []
            else:
                got = "".join(buf) + ("" if space or newline else ch)
                raise ModelfileError(line, f"MESSAGE role must be system, user or assistant (lower case), "
                                           f"not {got!r}; write MESSAGE ROLE TEXT")
        elif state == _VALUE:
            if space:
                buf.append(ch)
            elif newline:
                # Ollama trims and unquotes the whole buffer at every line break; here the same test is
                # made from the first and last non-space characters, so a long quoted value stays linear.
                if _closed(buf, first_ns, last_ns):
                    value, _done = _unquote(_trim("".join(buf)))
                    commands.append(Instruction(word, name, role, value, start))
                    state, buf, word, name, role = _NIL, [], "", "", ""
                    first_ns = last_ns = -1
                else:
                    buf.append(ch)  # still inside a quoted value
            elif _go_printable(ch):
                if first_ns < 0:
                    first_ns = len(buf)
                last_ns = len(buf)
                buf.append(ch)
            else:
                raise ModelfileError(line, f"the value holds the invisible character {_char_name(ch)}, which "
                                           "Ollama would silently drop; remove it")
        elif state == _COMMENT:
            if newline:
                comments.append((start, "".join(buf)))
                state = _NIL
            else:
                buf.append(ch)

        if ch == "\r" or (ch == "\n" and not prev_cr):
            line += 1
        prev_cr = ch == "\r"

    if state == _VALUE:
        trimmed = _trim("".join(buf))
        value, done = _unquote(trimmed)
        if not done:
            q = '"""' if trimmed.startswith('"""') else '"'
            raise ModelfileError(start, f"the {q}-quoted value that starts here is never closed (there are no "
                                        'escapes: a value holding " needs """ quotes)')
        commands.append(Instruction(word, name, role, value, start))
    elif state == _COMMENT:
        comments.append((start, "".join(buf)))
    elif state != _NIL:
        raise ModelfileError(start, "the file ends in the middle of this instruction")
    return commands, comments


# --- import ------------------------------------------------------------------------------------------


def _looks_like_path(value: str) -> bool:
    return (value.startswith(("/", "\\", ".", "~")) or "\\" in value
            or re.match(r"[A-Za-z]:[\\/]", value) is not None
            or value.lower().endswith((".gguf", ".bin", ".safetensors")))


def _expand(value: str, base_dir: str) -> str:
    """parser.go ``expandPath``: absolute stays, ``~`` is the home folder, anything else is relative."""
    if value.startswith("~"):
        return os.path.abspath(os.path.expanduser(value))
    return os.path.abspath(os.path.join(base_dir, value))


def _resolve_from(cmd: Instruction, base_dir: str, require_file: bool) -> str:
    value = cmd.args
    if not value:
        raise ModelfileError(cmd.line, "FROM needs the path of a GGUF file")
    path = _expand(value, base_dir)
    if os.path.isdir(path):
        raise ModelfileError(cmd.line, f"FROM {value} is a folder; LayerFit needs a GGUF file")
    if os.path.isfile(path):
        return path
    if not _looks_like_path(value) and _REGISTRY_NAME.fullmatch(value):
        raise ModelfileError(cmd.line, f"FROM {value} names a model in Ollama's registry, not a file; LayerFit "
                                       "needs a GGUF file: give its path (absolute, or relative to the "
                                       "Modelfile's folder)")
    if require_file:
        raise ModelfileError(cmd.line, f"FROM {value}: no such file ({path}); Ollama would try to download a "
                                       "model of that name instead")
    return path


def _resolve_other(cmd: Instruction, base_dir: str, require_file: bool) -> str:
    what = cmd.word.upper()
    if not cmd.args:
        raise ModelfileError(cmd.line, f"{what} needs a path")
    path = _expand(cmd.args, base_dir)
    if require_file and not os.path.exists(path):
        raise ModelfileError(cmd.line, f"{what} {cmd.args}: no such file or folder ({path})")
    return path


def _check_semver(value: str, line: int | None) -> str:
    v = value if value.startswith("v") else "v" + value
    if not _SEMVER.fullmatch(v):
        raise ModelfileError(line, f"REQUIRES must be a version like 0.14.0, not {value!r}")
    return v[1:]


def _parse_value(cmd: Instruction) -> int | float | bool | str:
    """The typed value of a PARAMETER, checked the way Ollama's FormatParams checks it."""
    kind = PARAMETER_TYPES[cmd.name]
    raw = cmd.args
    hint = " (a # starts a comment only at the start of a line)" if "#" in raw else ""
    shown = raw if len(raw) <= 40 else raw[:30] + f"… ({len(raw):,} characters)"
    if kind is int:
        if not _INT_RE.fullmatch(raw):
            raise ModelfileError(cmd.line, f"{cmd.name} needs a whole number, not {shown!r}{hint}")
        # Length first: int() of a 5,000-digit string raises (Python's digit limit) and is slow anyway.
        if len(raw.lstrip("+-").lstrip("0")) > 19 or not _INT64[0] <= int(raw) <= _INT64[1]:
            raise ModelfileError(cmd.line, f"{cmd.name} {shown} is out of range (Ollama keeps it in a 64-bit "
                                           "integer)")
        return int(raw)
    if kind is float:
        if not _FLOAT_RE.fullmatch(raw):
            raise ModelfileError(cmd.line, f"{cmd.name} needs a number, not {shown!r}{hint}")
        f = float(raw)
        if not abs(f) <= _FLOAT32_MAX:
            raise ModelfileError(cmd.line, f"{cmd.name} {shown} is out of range (Ollama keeps it in a 32-bit "
                                           "float)")
        return f
    if kind is bool:
        if raw not in _BOOLS:
            raise ModelfileError(cmd.line, f"{cmd.name} needs true or false, not {raw!r}{hint}")
        return _BOOLS[raw]
    return raw


def _check_parameter_name(cmd: Instruction) -> None:
    name = cmd.name
    if name in DEPRECATED_PARAMETERS:
        raise ModelfileError(cmd.line, f"parameter {name!r} is deprecated: Ollama ignores it "
                                       f"({DEPRECATED_PARAMETERS[name]}); remove the line")
    if name in REMOVED_PARAMETERS or name.startswith("rope_"):
        why = REMOVED_PARAMETERS.get(name, "the model's own RoPE values are used")
        raise ModelfileError(cmd.line, f"parameter {name!r} was removed from Ollama ({why}); `ollama create` "
                                       "would fail with 'unknown parameter': remove the line")
    if name not in PARAMETER_TYPES:
        if not name:
            raise ModelfileError(cmd.line, "PARAMETER has an empty name (one space between PARAMETER and "
                                           "the name)")
        close = difflib.get_close_matches(name.lower(), list(PARAMETER_TYPES), n=1)
        if name.lower() in PARAMETER_TYPES:
            tip = f"; parameter names are lower case: {name.lower()}"
        else:
            tip = f"; did you mean {close[0]}?" if close else ""
        raise ModelfileError(cmd.line, f"unknown parameter {name!r}{tip}")


def _parse_machine_comment(line: int, text: str) -> dict[str, object]:
    """LayerFit's ``# layerfit: type_k=.. type_v=.. flash_attn=.. headroom=..`` line."""
    out: dict[str, object] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if not sep:
            raise ModelfileError(line, f"LayerFit comment: expected key=value, not {token!r}")
        if key in ("type_k", "type_v"):
            if value not in KV_BYTES:
                raise ModelfileError(line, f"LayerFit comment: unknown KV cache type {value!r}")
            out[key] = value
        elif key == "flash_attn":
            if value not in ("on", "off", "auto"):
                raise ModelfileError(line, f"LayerFit comment: flash_attn must be on, off or auto, not {value!r}")
            out[key] = value
        elif key == "headroom":
            # isascii: '²'.isdigit() is True but int('²') fails
            if not (value.isascii() and value.isdigit()):
                raise ModelfileError(line, f"LayerFit comment: headroom must be a number of bytes, not {value!r}")
            if len(value.lstrip("0")) > 15 or int(value) > MAX_HEADROOM:
                raise ModelfileError(line, f"LayerFit comment: headroom {value[:20]}… is out of range (at most "
                                           f"{MAX_HEADROOM // 2**30} GiB)" if len(value) > 20 else
                                     f"LayerFit comment: headroom {value} is out of range (at most "
                                     f"{MAX_HEADROOM // 2**30} GiB)")
            out[key] = int(value)
        else:
            raise ModelfileError(line, f"LayerFit comment: unknown setting {key!r}")
    return out


_SINGLE_USE = {"template": "TEMPLATE", "system": "SYSTEM", "adapter": "ADAPTER", "draft": "DRAFT",
               "requires": "REQUIRES", "renderer": "RENDERER", "parser": "PARSER"}


def parse_modelfile(text: str, base_dir: str | Path, *, sampling: SamplingSettings | None = None,
                    require_file: bool = True) -> ModelfileSpec:
    """Read a Modelfile the way Ollama does; ModelfileError (with a line number) for anything wrong.

    ``base_dir`` is the Modelfile's folder: a relative FROM/ADAPTER/DRAFT is resolved against it.
    ``sampling`` is what the file's values are applied over (default: LayerFit's defaults).
    ``require_file=False`` accepts a FROM file that doesn't exist (a registry name is still refused).
    Nothing is dropped silently: a setting LayerFit can't honour is an error, not a skip.
    """
    base = os.path.abspath(os.fspath(base_dir))
    commands, comments = lex_modelfile(text)

    fields: dict[str, object] = {}
    samp: dict[str, object] = {}
    stops: list[str] = []
    messages: list[tuple[str, str]] = []
    licenses: list[str] = []
    extras: list[tuple[str, int | float | bool]] = []
    seen: dict[str, int] = {}
    set_in_file: set[str] = set()

    for cmd in commands:
        try:
            _one_command(cmd, base, require_file, fields, samp, stops, messages, licenses, extras, seen,
                         set_in_file)
        except ModelfileError:
            raise
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # never "Unexpected error"
            raise ModelfileError(cmd.line, f"{cmd.word.upper()} can't be read: {exc}") from None

    if "from_path" not in fields:
        raise ModelfileError(None, "no FROM line: a Modelfile must say which model file to use (FROM /path/to/model.gguf)")
    for line, body in comments:
        stripped = body.strip()
        if stripped.startswith(_MACHINE_PREFIX):
            for key, setting in _parse_machine_comment(line, stripped[len(_MACHINE_PREFIX):]).items():
                fields[{"type_k": "kv_type_k", "type_v": "kv_type_v"}.get(key, key)] = setting

    base_sampling = sampling or SamplingSettings()
    if stops:
        samp["stop"] = tuple(stops)
    return ModelfileSpec(
        sampling=replace(base_sampling, **samp),  # type: ignore[arg-type]
        messages=tuple(messages),
        license=tuple(licenses),
        extra_params=tuple(extras),
        set_in_file=frozenset(set_in_file),
        **fields,  # type: ignore[arg-type]
    )


def _one_command(cmd: Instruction, base: str, require_file: bool, fields: dict[str, object],
                 samp: dict[str, object], stops: list[str], messages: list[tuple[str, str]],
                 licenses: list[str], extras: list[tuple[str, int | float | bool]], seen: dict[str, int],
                 set_in_file: set[str]) -> None:
    """Check one instruction and record what it sets (nothing is applied to the app here)."""

    def once(key: str, label: str, cmd: Instruction) -> None:
        if key in seen:
            raise ModelfileError(cmd.line, f"{label} is set again (first on line {seen[key]}); Ollama would "
                                           "keep only the last one: remove one of them")
        seen[key] = cmd.line

    set_in_file.add(cmd.word if cmd.word != "parameter" else cmd.name)
    if cmd.word == "from":
        if "from" in seen:
            raise ModelfileError(cmd.line, f"a second FROM (the first is on line {seen['from']}); LayerFit "
                                           "loads one GGUF file")
        seen["from"] = cmd.line
        fields["from_path"] = _resolve_from(cmd, base, require_file)
    elif cmd.word == "message":
        messages.append((cmd.role, cmd.args))
    elif cmd.word == "license":
        licenses.append(cmd.args)
    elif cmd.word in _SINGLE_USE:
        once(cmd.word, _SINGLE_USE[cmd.word], cmd)
        if cmd.word == "system":
            samp["system"] = cmd.args
        elif cmd.word in ("adapter", "draft"):
            fields[cmd.word] = _resolve_other(cmd, base, require_file)
        elif cmd.word == "requires":
            fields["requires"] = _check_semver(cmd.args, cmd.line)
        else:
            fields[cmd.word] = cmd.args
    else:  # parameter
        _check_parameter_name(cmd)
        value = _parse_value(cmd)
        if cmd.name == "stop":
            if value == "":
                raise ModelfileError(cmd.line, "an empty stop string would end every reply; remove the line")
            stops.append(str(value))
            return
        once(cmd.name, f"parameter {cmd.name}", cmd)
        _apply_parameter(cmd, value, fields, samp, extras)


def _apply_parameter(cmd: Instruction, value: int | float | bool | str, fields: dict[str, object],
                     samp: dict[str, object], extras: list[tuple[str, int | float | bool]]) -> None:
    """Put one checked PARAMETER value where LayerFit keeps it."""
    n = cmd.name
    if isinstance(value, int) and not isinstance(value, bool) and n not in EXTRA_PARAMETERS \
            and not -_INT32_MAX - 1 <= value <= _INT32_MAX:
        raise ModelfileError(cmd.line, f"{n} {value} is out of range: LayerFit and llama.cpp hold it in 32 bits "
                                       f"(at most {_INT32_MAX:,})")
    if n == "num_ctx":
        if not isinstance(value, int) or value < 1:
            raise ModelfileError(cmd.line, f"num_ctx must be at least 1, not {value}")
        fields["num_ctx"] = value
    elif n == "num_gpu":
        if not isinstance(value, int) or value < -1:
            raise ModelfileError(cmd.line, f"num_gpu is a layer count: 0 or more, or -1 for auto, not {value}")
        fields["num_gpu"] = None if value == -1 else value
    elif n == "num_batch":
        if not isinstance(value, int) or value < 1:
            raise ModelfileError(cmd.line, f"num_batch must be at least 1, not {value}")
        fields["num_batch"] = value
    elif n == "num_thread":
        if not isinstance(value, int) or value < 0:
            raise ModelfileError(cmd.line, f"num_thread must be 0 (auto) or more, not {value}")
        fields["num_thread"] = value or None
    elif n == "use_mmap":
        fields["use_mmap"] = value
    elif n == "num_predict":
        samp["max_tokens"] = value
    elif n == "seed":
        samp["seed"] = None if value == -1 else value
    elif n in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "repeat_last_n"):
        samp[n] = value
    else:
        assert n in EXTRA_PARAMETERS and not isinstance(value, str)
        extras.append((n, value))


def read_modelfile(path: str | Path, *, sampling: SamplingSettings | None = None,
                   require_file: bool = True) -> ModelfileSpec:
    """Read and parse the Modelfile at ``path`` (UTF-8, or UTF-16 with a BOM, as Ollama reads it)."""
    p = Path(path)
    try:  # regular files only (a pipe would block), and bounded (a Modelfile is text, not gigabytes)
        data = read_bytes_bounded(p, MAX_MODELFILE_BYTES)
    except StoredFileError as exc:
        if exc.kind == "missing":
            raise ModelfileError(None, f"no such Modelfile: {p}") from None
        if exc.kind == "special" and os.path.isdir(p):
            raise ModelfileError(None, f"{p} is a folder, not a Modelfile") from None
        raise ModelfileError(None, f"could not read {p}: {exc.problem}") from None
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = data.decode("utf-16")
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ModelfileError(None, f"{p.name} is not UTF-8 text (byte {exc.start} can't be read)") from exc
    return parse_modelfile(text, p.parent, sampling=sampling, require_file=require_file)
