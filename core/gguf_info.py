"""ModelInfo from a GGUF header: architecture, shapes, per-tensor sizes. No tensor data is read.

The header is parsed with a small ``struct``-based reader instead of gguf-py's ``GGUFReader``:
GGUFReader builds a numpy view for every element of every metadata array, which takes seconds on a
152k-token vocabulary. Here big arrays are skipped (their length is kept), and only the scalar keys
the estimator needs are decoded. Type ids, block sizes and key names still come from gguf-py's
constants, so ggml types and sizes are gguf-py's truth.

Every way a file can be broken ends as a ``ModelFileError`` that names the file and the problem.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, LlamaFileType
from gguf.constants import GGUF_MAGIC

from core.errors import PlainError

#: Arrays longer than this are not decoded (only their length is kept): token lists, merges, scores.
MAX_DECODED_ARRAY = 1024
#: Keys whose strings are kept even when long (the chat template can be tens of KiB).
MAX_STRING_KEPT = 1 << 20
_MAX_DIMS = 4
_MAX_ARRAY_DEPTH = 3
#: The header is read in growing chunks, never mapped whole: this much first (most headers fit) …
FIRST_READ = 8 * 2**20
#: … and never more than this (a 256k-token vocabulary with merges is ~40 MB). Past it: "header too large".
MAX_HEADER_BYTES = 256 * 2**20
#: Metadata array items decoded across the whole header (nested arrays multiply: 1024³ would take minutes).
MAX_HEADER_ITEMS = 1_000_000
#: More tensors or metadata entries than this is not a model llama.cpp can load (llama.cpp's largest have ~10⁵).
MAX_HEADER_ENTRIES = 1_000_000
_SUPPORTED_VERSIONS = (2, 3)


class ModelFileError(Exception, PlainError):
    """A file that isn't a usable GGUF. The message names the file and the problem in plain words."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{Path(path).name}: {problem}")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    ggml_type: str  # "Q4_K", "F32", …
    shape: tuple[int, ...]
    n_bytes: int
    layer: int | None  # block index for blk.N.*, None otherwise

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class ArraySummary:
    """A metadata array too long to decode: its element type and length."""

    type: str
    count: int


@dataclass(frozen=True)
class ModelInfo:
    """Header facts about one GGUF. Per-layer lists have n_layer entries."""

    path: str
    file_size: int
    name: str
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: tuple[int, ...]  # per layer (a scalar in the file is expanded)
    key_length: int
    value_length: int
    n_ctx_train: int
    n_vocab: int
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff: int = 0
    sliding_window: int = 0
    swa_layers: tuple[bool, ...] = ()  # per layer: True for a sliding-window layer
    file_type: str = ""  # "Q4_K_M", … as the header or quant mix says
    quant_mix: tuple[tuple[str, int], ...] = ()  # (ggml type, bytes) largest first
    n_params: int = 0
    chat_template: str | None = None
    bos_token: str | None = None
    eos_token: str | None = None
    tensors: tuple[TensorInfo, ...] = field(default=(), repr=False)
    metadata: dict[str, Any] = field(default_factory=dict, repr=False, compare=False, hash=False)
    n_ff_exp: int = 0
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    data_offset: int = 0
    version: int = 3

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 0

    @property
    def weights_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    def to_json(self) -> dict[str, Any]:
        """The ``model`` object of ``layerfit plan --json``."""
        kv: int | list[int]
        if self.n_head_kv and all(h == self.n_head_kv[0] for h in self.n_head_kv):
            kv = self.n_head_kv[0]
        else:
            kv = list(self.n_head_kv)
        return {
            "path": self.path,
            "arch": self.arch,
            "n_layer": self.n_layer,
            "n_embd": self.n_embd,
            "n_head": self.n_head,
            "n_head_kv": kv,
            "n_ctx_train": self.n_ctx_train,
            "n_expert": self.n_expert,
            "sliding_window": self.sliding_window,
            "name": self.name,
            "file_size": self.file_size,
            "file_type": self.file_type,
            "n_params": self.n_params,
            "key_length": self.key_length,
            "value_length": self.value_length,
            "n_vocab": self.n_vocab,
            "n_expert_used": self.n_expert_used,
            "n_swa_layers": sum(self.swa_layers),
        }


# --- the reader --------------------------------------------------------------------------------

_SCALARS: dict[int, struct.Struct] = {
    GGUFValueType.UINT8: struct.Struct("<B"),
    GGUFValueType.INT8: struct.Struct("<b"),
    GGUFValueType.UINT16: struct.Struct("<H"),
    GGUFValueType.INT16: struct.Struct("<h"),
    GGUFValueType.UINT32: struct.Struct("<I"),
    GGUFValueType.INT32: struct.Struct("<i"),
    GGUFValueType.FLOAT32: struct.Struct("<f"),
    GGUFValueType.BOOL: struct.Struct("<?"),
    GGUFValueType.UINT64: struct.Struct("<Q"),
    GGUFValueType.INT64: struct.Struct("<q"),
    GGUFValueType.FLOAT64: struct.Struct("<d"),
}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_MIN_TENSOR_INFO = 8 + 1 + 4 + 8 + 4 + 8  # name length, 1-char name, n_dims, one dim, type, offset


class _Bad(Exception):
    """Internal: a problem found while parsing (turned into ModelFileError with the path)."""


class _NeedMore(Exception):
    """Internal: the header goes on past the bytes read so far (read more, up to MAX_HEADER_BYTES)."""

    def __init__(self, upto: int) -> None:
        super().__init__(upto)
        self.upto = upto


def _too_large(what: str) -> _Bad:
    return _Bad(f"header too large: {what}; this is not a model file LayerFit can read (damaged, or made "
                "to exhaust memory)")


class _Cursor:
    """Bounds-checked little-endian reads from the bytes read so far (``avail``) of a file of ``end`` bytes."""

    __slots__ = ("buf", "off", "end", "avail", "items")

    def __init__(self, buf: Any, end: int) -> None:
        self.buf = buf
        self.off = 0
        self.end = end
        self.avail = min(len(buf), end)
        self.items = 0  # metadata array items decoded so far (bounded by MAX_HEADER_ITEMS)

    def short(self, upto: int, what: str) -> Exception:
        """The error for a read up to ``upto``: read more of the file, or the file really ends there."""
        if upto <= self.end and self.avail < self.end:
            return _NeedMore(upto)
        return _Bad(f"the file is truncated: it ends inside the header ({what})")

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.off + n > self.avail:
            raise self.short(self.off + max(n, 0), what)

    def u32(self, what: str) -> int:
        self.need(4, what)
        v = _U32.unpack_from(self.buf, self.off)[0]
        self.off += 4
        return int(v)

    def u64(self, what: str) -> int:
        self.need(8, what)
        v = _U64.unpack_from(self.buf, self.off)[0]
        self.off += 8
        return int(v)

    def string(self, what: str, keep: int = MAX_STRING_KEPT) -> str | None:
        n = self.u64(what)
        if n > self.end - self.off:
            raise _Bad(f"{what} claims a string of {n:,} bytes, longer than the rest of the file")
        start = self.off
        if n > keep:
            self.off += n
            return None
        self.need(n, what)
        self.off += n
        return bytes(self.buf[start:start + n]).decode("utf-8", errors="replace")

    def scalar(self, vtype: int, what: str) -> Any:
        s = _SCALARS[vtype]
        self.need(s.size, what)
        v = s.unpack_from(self.buf, self.off)[0]
        self.off += s.size
        return v


def _value_type(raw: int, what: str) -> int:
    if raw not in GGUFValueType._value2member_map_:
        raise _Bad(f"{what} has an unknown value type {raw}")
    return raw


def _skip_strings(cur: _Cursor, count: int, what: str, offsets: list[int] | None) -> None:
    """Walk ``count`` strings without decoding them (the hot loop for 150k-token vocabularies)."""
    buf, off, avail = cur.buf, cur.off, cur.avail
    unpack = _U64.unpack_from
    if offsets is None:
        for _ in range(count):
            if off + 8 > avail:
                raise cur.short(off + 8, what)
            off += 8 + unpack(buf, off)[0]
    else:
        append = offsets.append
        for _ in range(count):
            if off + 8 > avail:
                raise cur.short(off + 8, what)
            append(off)
            off += 8 + unpack(buf, off)[0]
    if off > avail:
        raise cur.short(off, what)
    cur.off = off


def _read_value(cur: _Cursor, vtype: int, what: str, depth: int = 0,
                offsets: list[int] | None = None) -> Any:
    if vtype == GGUFValueType.STRING:
        return cur.string(what)
    if vtype != GGUFValueType.ARRAY:
        return cur.scalar(vtype, what)
    if depth >= _MAX_ARRAY_DEPTH:
        raise _Bad(f"{what} nests arrays too deeply")
    etype = _value_type(cur.u32(what), what)
    count = cur.u64(what)
    remaining = cur.end - cur.off
    min_size = 8 if etype in (GGUFValueType.STRING, GGUFValueType.ARRAY) else _SCALARS[etype].size
    if count * min_size > remaining:
        raise _Bad(f"{what} claims {count:,} array items, more than the file can hold")
    if etype == GGUFValueType.STRING and (count > MAX_DECODED_ARRAY or offsets is not None):
        _skip_strings(cur, count, what, offsets)
        return ArraySummary("string", count)
    if etype in _SCALARS and count > MAX_DECODED_ARRAY:
        cur.off += count * _SCALARS[etype].size
        return ArraySummary(GGUFValueType(etype).name.lower(), count)
    cur.items += count
    if cur.items > MAX_HEADER_ITEMS:
        raise _too_large(f"{what} holds more than {MAX_HEADER_ITEMS:,} array items in all")
    return [_read_value(cur, etype, what, depth + 1) for _ in range(count)]


def read_model_info(path: str | Path) -> ModelInfo:
    """Read a GGUF header. Raises ModelFileError for anything that isn't a valid GGUF.

    Only regular files are opened (a pipe or a device named ``*.gguf`` would block or never end), and the
    header is read in bounded chunks rather than mapping the whole file, so a 40 GB model needs a few MB
    of memory and a hostile header stops at MAX_HEADER_BYTES / MAX_HEADER_ITEMS with "header too large".
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ModelFileError(p, "file not found") from None
    except IsADirectoryError:
        raise ModelFileError(p, "this is a folder, not a GGUF file") from None
    except PermissionError:
        raise ModelFileError(p, "no permission to read this file") from None
    except ValueError:  # a NUL byte in the path
        raise ModelFileError(p, "the path contains a character no file name can hold (NUL)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ModelFileError(p, "the path is a loop of symbolic links") from None
        raise ModelFileError(p, f"can't read the file ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ModelFileError(p, "this is a folder, not a GGUF file")
        if not stat.S_ISREG(st.st_mode):
            kind = "a pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
            raise ModelFileError(p, f"this is {kind}, not a regular file, so it was not read")
        size = st.st_size
        if size == 0:
            raise ModelFileError(p, "the file is empty (0 bytes), not a GGUF model")
        buf = bytearray()
        want = min(size, FIRST_READ)
        while True:
            _read_upto(fd, buf, want)
            try:
                return _parse(p, buf, size)
            except _NeedMore as more:
                if len(buf) >= MAX_HEADER_BYTES:
                    raise ModelFileError(p, str(_too_large(f"it is longer than {MAX_HEADER_BYTES // 2**20} MB"))) from None
                want = min(size, MAX_HEADER_BYTES, max(2 * len(buf), more.upto + (1 << 20)))
            except _Bad as exc:
                raise ModelFileError(p, str(exc)) from None
            except (struct.error, ValueError, OverflowError, KeyError, IndexError, TypeError,
                    ZeroDivisionError, UnicodeError, MemoryError, RecursionError) as exc:  # safety net
                raise ModelFileError(p, f"the header is damaged ({type(exc).__name__})") from None
    except ModelFileError:
        raise
    except OSError as exc:
        raise ModelFileError(p, f"can't read the file ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _read_upto(fd: int, buf: bytearray, want: int) -> None:
    """Append the file's bytes [len(buf), want) to ``buf`` (fewer only at the end of the file)."""
    while len(buf) < want:
        chunk = os.pread(fd, min(want - len(buf), 16 << 20), len(buf)) if hasattr(os, "pread") else \
            _seek_read(fd, min(want - len(buf), 16 << 20), len(buf))
        if not chunk:
            return
        buf += chunk


def _seek_read(fd: int, n: int, at: int) -> bytes:  # pragma: no cover - Windows has no os.pread
    os.lseek(fd, at, os.SEEK_SET)
    return os.read(fd, n)


def _parse(p: Path, buf: Any, size: int) -> ModelInfo:
    cur = _Cursor(buf, size)
    if size < 4 or cur.u32("magic") != GGUF_MAGIC:
        raise _Bad("not a GGUF file (the first bytes are not 'GGUF')")
    version = cur.u32("version")
    if version not in _SUPPORTED_VERSIONS:
        raise _Bad(f"unsupported GGUF version {version} (LayerFit reads versions 2 and 3)")
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("metadata count")
    if n_tensors * _MIN_TENSOR_INFO > size:
        raise _Bad(f"the header claims {n_tensors:,} tensors, more than the file can hold: "
                   "it is cut short or damaged (an incomplete download?)")
    if n_tensors > MAX_HEADER_ENTRIES:
        raise _too_large(f"it claims {n_tensors:,} tensors")
    if n_kv > MAX_HEADER_ENTRIES:
        raise _too_large(f"it claims {n_kv:,} metadata entries")
    if n_kv * 13 > size:  # key length (8) + 1-char key + value type (4)
        raise _Bad(f"the header claims {n_kv:,} metadata entries, more than the file can hold: "
                   "it is cut short or damaged (an incomplete download?)")

    meta: dict[str, Any] = {}
    token_offsets: list[int] = []
    for i in range(n_kv):
        key = cur.string(f"metadata key #{i}", keep=4096)
        if key is None:
            raise _Bad(f"metadata key #{i} is absurdly long")
        vtype = _value_type(cur.u32(f"metadata '{key}'"), f"metadata '{key}'")
        offs = token_offsets if key == "tokenizer.ggml.tokens" and vtype == GGUFValueType.ARRAY else None
        meta[key] = _read_value(cur, vtype, f"metadata '{key}'", offsets=offs)

    align = meta.get("general.alignment", 32)
    if not isinstance(align, int) or isinstance(align, bool) or align <= 0 or align & (align - 1):
        raise _Bad(f"general.alignment is {align!r}, not a power of two")

    tensors: list[TensorInfo] = []
    offsets: list[tuple[int, int]] = []
    for i in range(n_tensors):
        name = cur.string(f"tensor #{i} name", keep=4096)
        if name is None:
            raise _Bad(f"tensor #{i} has an absurdly long name")
        n_dims = cur.u32(f"tensor '{name}'")
        if n_dims < 1 or n_dims > _MAX_DIMS:
            raise _Bad(f"tensor '{name}' has {n_dims} dimensions (1 to {_MAX_DIMS} are valid)")
        dims = [cur.u64(f"tensor '{name}'") for _ in range(n_dims)]
        raw_type = cur.u32(f"tensor '{name}'")
        offset = cur.u64(f"tensor '{name}'")
        try:
            qtype = GGMLQuantizationType(raw_type)
            block, type_size = GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise _Bad(f"tensor '{name}' has an unknown tensor type {raw_type}") from None
        if any(d == 0 for d in dims):
            raise _Bad(f"tensor '{name}' has a zero-sized dimension")
        if dims[0] % block:
            raise _Bad(f"tensor '{name}' row of {dims[0]} is not a multiple of the {qtype.name} block ({block})")
        n_el = 1
        for d in dims:
            n_el *= d
        n_bytes = n_el // block * type_size
        if n_bytes > size:
            raise _Bad(f"tensor '{name}' would be {n_bytes:,} bytes, larger than the whole file")
        layer = None
        if name.startswith("blk."):
            head = name[4:].split(".", 1)[0]
            if head.isdigit():
                layer = int(head)
        # GGUF stores dims fastest-first; keep numpy order (rows, cols) as gguf-py's writer takes it.
        tensors.append(TensorInfo(name, qtype.name, tuple(reversed(dims)), n_bytes, layer))
        offsets.append((offset, n_bytes))

    data_offset = -(-cur.off // align) * align
    for (off, nb), t in zip(offsets, tensors, strict=True):
        if data_offset + off + nb > size:
            raise _Bad(f"the file is truncated: tensor data for '{t.name}' runs past the end of the file "
                       f"({size:,} bytes; a partial download?)")
    return _build(p, size, meta, tensors, buf, token_offsets, data_offset, version)


def _resolved(p: Path) -> str:
    """The absolute path (links resolved) when that can be had; the path as given otherwise."""
    try:
        return str(p.resolve()) if p.exists() else str(p)
    except (OSError, RuntimeError, ValueError):  # RuntimeError: a symlink loop (Python 3.11)
        return str(p)


def _scalar_int(meta: dict[str, Any], key: str, default: int | None = None) -> int | None:
    v = meta.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad(f"metadata '{key}' should be a number, not {type(v).__name__}")
    if v < 0:
        raise _Bad(f"metadata '{key}' is negative ({v})")
    return int(v)


def _per_layer(meta: dict[str, Any], key: str, n_layer: int, default: int) -> tuple[int, ...]:
    v = meta.get(key)
    if v is None:
        return (default,) * n_layer
    if isinstance(v, list):
        if len(v) != n_layer or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0
                                        for x in v):
            raise _Bad(f"metadata '{key}' should have one number per layer ({n_layer})")
        return tuple(int(x) for x in v)
    return (_scalar_int(meta, key, default) or 0,) * n_layer


#: llama.cpp's built-in sliding-window patterns (``hparams.set_swa_pattern(n)``: layer il is SWA when
#: ``il % n < n - 1``). Gemma-2 and gpt-oss alternate; Gemma-3 has one global layer in six; Cohere2 one in four.
_SWA_PATTERNS = {"gemma2": 2, "gemma3": 6, "gpt-oss": 2, "cohere2": 4, "gemma3n": 5}


def _swa_layers(meta: dict[str, Any], arch: str, n_layer: int, window: int) -> tuple[bool, ...]:
    if window <= 0:
        return (False,) * n_layer
    pat = meta.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(pat, list):
        if len(pat) != n_layer:
            raise _Bad(f"metadata '{arch}.attention.sliding_window_pattern' should have one entry per layer")
        return tuple(bool(x) for x in pat)
    n = pat if isinstance(pat, int) and not isinstance(pat, bool) and pat > 0 else _SWA_PATTERNS.get(arch, 0)
    if n <= 0:
        return (False,) * n_layer
    return tuple(il % n < n - 1 for il in range(n_layer))


def _token_string(buf: Any, offsets: list[int], token_id: int | None) -> str | None:
    if token_id is None or not 0 <= token_id < len(offsets):
        return None
    off = offsets[token_id]
    n = _U64.unpack_from(buf, off)[0]
    if n > 4096:
        return None
    return bytes(buf[off + 8:off + 8 + n]).decode("utf-8", errors="replace")


def _file_type_name(meta: dict[str, Any], mix: list[tuple[str, int]]) -> str:
    ft = meta.get("general.file_type")
    if isinstance(ft, int) and not isinstance(ft, bool):
        try:
            name = LlamaFileType(ft).name.removeprefix("MOSTLY_")
        except ValueError:
            name = ""
        # Some writers leave file_type at 0 (ALL_F32) for quantized files: trust the tensors then.
        if name and not (name == "ALL_F32" and mix and mix[0][0] != "F32"):
            return name
    return mix[0][0] if mix else ""


def _build(p: Path, size: int, meta: dict[str, Any], tensors: list[TensorInfo], buf: Any,
           token_offsets: list[int], data_offset: int, version: int) -> ModelInfo:
    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise _Bad("the header has no model architecture (general.architecture)")

    def key(k: str) -> str:
        return f"{arch}.{k}"

    n_layer = _scalar_int(meta, key("block_count"))
    if n_layer is None:
        raise _Bad(f"the header has no layer count ({arch}.block_count)")
    if n_layer > 10_000:
        raise _Bad(f"the header claims {n_layer:,} layers")
    n_embd = _scalar_int(meta, key("embedding_length"), 0) or 0
    heads = _per_layer(meta, key("attention.head_count"), n_layer, 0)
    n_head = max(heads, default=0)
    n_head_kv = _per_layer(meta, key("attention.head_count_kv"), n_layer, n_head)
    head_dim = n_embd // n_head if n_head else 0
    key_length = _scalar_int(meta, key("attention.key_length"), head_dim) or 0
    value_length = _scalar_int(meta, key("attention.value_length"), head_dim) or 0
    ffs = _per_layer(meta, key("feed_forward_length"), n_layer, 0)
    n_ff = max(ffs, default=0)
    window = _scalar_int(meta, key("attention.sliding_window"), 0) or 0

    tok = meta.get("tokenizer.ggml.tokens")
    if isinstance(tok, ArraySummary):
        n_vocab = tok.count
    elif isinstance(tok, list):
        n_vocab = len(tok)
    else:
        n_vocab = _scalar_int(meta, key("vocab_size"), 0) or 0
    if not n_vocab:
        emb = next((t for t in tensors if t.name == "token_embd.weight"), None)
        n_vocab = emb.shape[0] if emb is not None else 0

    mix_d: dict[str, int] = {}
    n_params = 0
    for t in tensors:
        mix_d[t.ggml_type] = mix_d.get(t.ggml_type, 0) + t.n_bytes
        n_params += t.n_elements
    mix = sorted(mix_d.items(), key=lambda kv: -kv[1])

    bos_id = _scalar_int(meta, "tokenizer.ggml.bos_token_id")
    eos_id = _scalar_int(meta, "tokenizer.ggml.eos_token_id")
    tmpl = meta.get("tokenizer.chat_template")
    name = meta.get("general.name")
    get: Callable[[str], int] = lambda k: _scalar_int(meta, key(k), 0) or 0  # noqa: E731
    return ModelInfo(
        path=_resolved(p),
        file_size=size,
        name=name if isinstance(name, str) and name else p.stem,
        arch=arch,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        key_length=key_length,
        value_length=value_length,
        n_ctx_train=get("context_length"),
        n_vocab=n_vocab,
        n_expert=get("expert_count"),
        n_expert_used=get("expert_used_count"),
        n_ff=n_ff,
        sliding_window=window,
        swa_layers=_swa_layers(meta, arch, n_layer, window),
        file_type=_file_type_name(meta, mix),
        quant_mix=tuple(mix),
        n_params=n_params,
        chat_template=tmpl if isinstance(tmpl, str) else None,
        bos_token=_token_string(buf, token_offsets, bos_id),
        eos_token=_token_string(buf, token_offsets, eos_id),
        tensors=tuple(tensors),
        metadata=meta,
        n_ff_exp=get("expert_feed_forward_length"),
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        data_offset=data_offset,
        version=version,
    )
