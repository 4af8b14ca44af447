"""How each architecture lays out its KV cache and recurrent state, as llama.cpp does it.

Every rule here was read from the llama.cpp that llama-cpp-python 0.3.36 vendors, and each is checked
against llama.cpp's own buffer log lines by ``tests/test_archs_llamacpp.py`` (sparse synthetic GGUFs
with real shapes, loaded on the CPU):

* **Which layers own a KV cache** (``llama_model::create_memory``, ``llama_hparams::has_kv``):
  NextN/MTP layers (the last ``nextn_predict_layers`` blocks) get none; Gemma-3n and Gemma-4 share
  the cache of an earlier layer from ``n_layer_kv_from_start`` on (Gemma-3n: 20, hard-coded; Gemma-4:
  ``n_layer - shared_kv_layers``); hybrid models keep KV only on their attention layers.
* **Row widths** (``llama_kv_cache`` constructor): K is ``n_head_kv(il) * n_embd_head_k(il)``, where
  sliding-window layers may use their own head size (``key_length_swa``, Gemma-4). Without flash
  attention the V cache is transposed and every layer is padded to the widest V row
  (``n_embd_v_gqa_max``). MLA models (``key_length_mla`` and ``value_length_mla`` set: DeepSeek-V2/V3,
  Kimi, GLM-4.7-Flash, …) cache only K (the latent plus the RoPE part) and read V as a view of it.
* **Sliding-window and chunked layers** (``load_swa_pattern`` / ``set_swa_pattern`` in each
  ``src/models/<arch>.cpp``): the built-in patterns and windows below, unless the file carries
  ``sliding_window_pattern``. Llama-4's chunked attention (8192-token chunks, 3 chunked : 1 full) uses
  the same ``pad(n_swa + n_ubatch, 256)`` cache size (``llama_kv_cache_iswa``).
* **Recurrent state** (``llama_memory_recurrent``): f32, per recurrent layer and per sequence,
  ``n_embd_r`` conv state plus ``n_embd_s`` SSM state (``llama_hparams::n_embd_r/n_embd_s``). Which
  layers are recurrent is per architecture (``load_arch_hparams``).

An architecture not in ``VERIFIED`` (or a feature this module does not model) makes the plan say
"not verified for <arch>: numbers may be off" until llama.cpp's no-alloc pass (``core.referee``) has
checked the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.gguf_info import ModelInfo

#: Architectures whose KV, RS and weights ``tests/test_archs_llamacpp.py`` and
#: ``tests/test_crosscheck_llamacpp.py`` check against llama.cpp's buffer lines.
VERIFIED: frozenset[str] = frozenset({
    "llama", "qwen2", "qwen3", "qwen3moe", "gemma2", "gemma3", "gpt-oss", "phi3", "mistral3", "command-r",
    "cohere2", "exaone", "exaone4", "smollm3", "olmo2", "lfm2", "deepseek2", "qwen3next", "qwen35moe", "llama4",
    "gemma3n", "gemma4", "glm4moe", "falcon-h1", "nemotron_h", "nemotron_h_moe", "granitehybrid", "mamba2",
})

#: llama.cpp's built-in sliding-window patterns: arch -> (pattern n, dense_first, default window,
#: needs a window key > 0). Layer il is SWA when ``il % n < n - 1`` (``il % n != 0`` when dense_first).
_SWA_BUILTIN: dict[str, tuple[int, bool, int, bool]] = {
    "gemma2": (2, False, 4096, False),
    "gemma3": (6, False, 0, True),
    "gemma3n": (5, False, 0, False),
    "gemma-embedding": (6, False, 0, False),
    "gpt-oss": (2, False, 0, False),
    "cohere2": (4, False, 0, False),
    "cohere2moe": (4, True, 0, False),
    "olmo2": (4, False, 0, True),
    "exaone-moe": (4, False, 128, False),
    "afmoe": (4, False, 0, True),
    "mellum": (4, False, 0, True),
    "plamo3": (8, False, 0, True),
    "smallthinker": (4, True, 4096, True),
}

#: Architectures whose recurrent layers llama.cpp keeps in ``llama_memory_recurrent``.
_RECURRENT_ALL = {"mamba", "mamba2"}
_HYBRID_BY_HEADS = {"granitehybrid", "lfm2", "lfm2moe", "jamba"}  # recurrent where n_head_kv == 0
_HYBRID_BY_INTERVAL = {"qwen3next", "qwen35", "qwen35moe"}  # full_attention_interval / recurrent_layers
_HYBRID_NEMOTRON = {"nemotron_h", "nemotron_h_moe"}  # recurrent where n_head_kv == 0 and n_ff == 0
#: Mechanisms LayerFit does not model: these archs always warn.
_KNOWN_UNMODELLED = {"rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7", "kimi-linear", "minimax-01", "deepseek4",
                     "deepseek32", "glm-dsa", "minimax-m3", "plamo2", "bailingmoe3", "qwen4exp", "glm5-next",
                     "kimi-k3", "dots3note", "hy-v4"}


@dataclass(frozen=True)
class ArchLayout:
    """Per-layer cache layout of one model (the inputs of the KV and RS terms)."""

    arch: str
    n_layer_trunk: int  # blocks the main graph runs (block_count minus NextN/MTP layers)
    has_kv: tuple[bool, ...]
    swa: tuple[bool, ...]  # per layer: the layer uses the sliding-window (or chunked) cache
    n_swa: int  # window (or chunk) size in tokens; 0 = no SWA cache
    chunked: bool
    k_width: tuple[int, ...]  # K elements per cell, per layer (n_head_kv x head size)
    v_width: tuple[int, ...]  # V elements per cell, per layer with FA (0 for MLA: V is a view of K)
    v_width_max: int  # the padded V row without flash attention
    rs_elems: tuple[int, ...]  # f32 recurrent-state elements per layer per sequence (conv + ssm)
    mla: bool
    verified: bool
    notes: tuple[str, ...] = ()  # why the numbers may be off (empty when verified)

    @property
    def has_swa(self) -> bool:
        return self.n_swa > 0 and any(self.swa)

    def k_v_widths(self, il: int, flash_attn: bool) -> tuple[int, int]:
        """(K, V) elements per cell of layer ``il`` (V padded to the widest row without FA)."""
        if self.mla or self.v_width[il] == 0:
            return self.k_width[il], 0
        return self.k_width[il], (self.v_width[il] if flash_attn else self.v_width_max)


def _meta_int(meta: dict[str, Any], key: str, default: int = 0) -> int:
    v = meta.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return default
    return int(v)


def _per_layer(meta: dict[str, Any], key: str, n: int, default: int) -> list[int]:
    v = meta.get(key)
    if isinstance(v, list) and len(v) == n and all(isinstance(x, (int, float, bool)) for x in v):
        return [int(x) for x in v]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return [int(v)] * n
    return [default] * n


def _swa(model: ModelInfo, meta: dict[str, Any], trunk: int) -> tuple[list[bool], int, bool, list[str]]:
    """(per-layer SWA flags, window, chunked, notes) following each arch's load_arch_hparams."""
    a, n = model.arch, model.n_layer
    notes: list[str] = []
    key_window = f"{a}.attention.sliding_window"
    has_key = key_window in meta
    window = _meta_int(meta, key_window)
    pat_key = f"{a}.attention.sliding_window_pattern"
    pat = meta.get(pat_key)

    def pattern(n_pat: int, dense_first: bool) -> list[bool]:
        if isinstance(pat, list) and len(pat) == n:
            return [bool(x) for x in pat]
        p = pat if isinstance(pat, int) and not isinstance(pat, bool) else n_pat
        if dense_first:
            return [p == 0 or il % p != 0 for il in range(n)]
        return [p == 0 or il % p < p - 1 for il in range(n)]

    none = [False] * n
    if a == "llama4":  # chunked attention, hard-coded (models/llama4.cpp)
        if has_key and window == 0:
            return none, 0, False, notes
        return pattern(4, False), 8192, True, notes
    if a == "exaone4":  # only the 32B (64 layers) has SWA: a built-in 3:1 pattern, window 4096
        if trunk != 64:
            return none, 0, False, notes
        return pattern(4, False), (window if has_key else 4096), False, notes
    if a == "gemma4":
        if isinstance(pat, list) and len(pat) == n:
            return [bool(x) for x in pat], window, False, notes
        notes.append("gemma4 without its sliding_window_pattern array (llama.cpp requires it)")
        return none, window, False, notes
    if a == "lfm2" or a == "lfm2moe":  # SWA on every attention layer when a window is set
        heads = model.n_head_kv
        return ([window > 0 and heads[il] > 0 for il in range(n)], window, False, notes)
    if a == "phi3":  # llama.cpp disables Phi-3 SWA (models/phi3.cpp)
        return none, 0, False, notes
    spec = _SWA_BUILTIN.get(a)
    if spec is not None:
        n_pat, dense_first, default_window, needs_key = spec
        w = window if has_key else default_window
        if needs_key and w <= 0:
            return none, 0, False, notes
        if w <= 0:
            return none, 0, False, notes
        flags = pattern(n_pat, dense_first)
        return [f and il < n for il, f in enumerate(flags)], w, False, notes
    # Not a built-in: trust what gguf_info read (a pattern key in the file), but say so when it matters.
    if window > 0 and any(model.swa_layers):
        if a not in VERIFIED:
            notes.append(f"sliding-window pattern of {a} taken from the file")
        return list(model.swa_layers), window, False, notes
    return none, 0, False, notes


def _recurrent(model: ModelInfo, meta: dict[str, Any], trunk: int, heads_kv: list[int],
               ffs: list[int]) -> list[bool]:
    a, n = model.arch, model.n_layer
    if a in _RECURRENT_ALL or a == "falcon-h1":
        return [il < trunk for il in range(n)]
    if a in _HYBRID_BY_HEADS:
        return [il < trunk and heads_kv[il] == 0 for il in range(n)]
    if a in _HYBRID_NEMOTRON:
        return [il < trunk and heads_kv[il] == 0 and ffs[il] == 0 for il in range(n)]
    if a in _HYBRID_BY_INTERVAL:
        arr = meta.get(f"{a}.attention.recurrent_layers")
        if isinstance(arr, list) and len(arr) == n:
            return [bool(x) for x in arr]
        interval = _meta_int(meta, f"{a}.full_attention_interval", 4) or 4
        return [il < trunk and (il + 1) % interval != 0 for il in range(n)]
    return [False] * n


def _rs_elems(model: ModelInfo, meta: dict[str, Any]) -> int:
    """``n_embd_r() + n_embd_s()`` (llama-hparams.cpp) for Mamba-style and short-conv layers."""
    a = model.arch
    l_cache = _meta_int(meta, f"{a}.shortconv.l_cache")
    if l_cache:
        return model.n_embd * (l_cache - 1)
    d_conv = _meta_int(meta, f"{a}.ssm.conv_kernel")
    d_inner = _meta_int(meta, f"{a}.ssm.inner_size")
    d_state = _meta_int(meta, f"{a}.ssm.state_size")
    n_group = _meta_int(meta, f"{a}.ssm.group_count")
    conv = max(d_conv - 1, 0) * (d_inner + 2 * n_group * d_state)
    return conv + d_state * d_inner


_cache: dict[int, tuple[ModelInfo, ArchLayout]] = {}


def arch_layout(model: ModelInfo) -> ArchLayout:
    """The cache layout llama.cpp builds for ``model`` (cached per ModelInfo object)."""
    hit = _cache.get(id(model))
    if hit is not None and hit[0] is model:
        return hit[1]
    lay = _build(model)
    if len(_cache) > 32:
        _cache.clear()
    _cache[id(model)] = (model, lay)
    return lay


def _build(model: ModelInfo) -> ArchLayout:
    a, n = model.arch, model.n_layer
    meta = model.metadata
    notes: list[str] = []
    nextn = min(_meta_int(meta, f"{a}.nextn_predict_layers"), n)
    trunk = n - nextn
    heads_kv = list(model.n_head_kv) if len(model.n_head_kv) == n else [0] * n
    ffs = _per_layer(meta, f"{a}.feed_forward_length", n, 0)
    swa, n_swa, chunked, swa_notes = _swa(model, meta, trunk)
    notes += swa_notes
    recr = _recurrent(model, meta, trunk, heads_kv, ffs)

    # has_kv: NextN layers, shared-KV layers, recurrent-only layers have none.
    kv_from_start = n
    if a == "gemma3n":
        kv_from_start = 20
    elif a == "gemma4":
        kv_from_start = n - _meta_int(meta, f"{a}.attention.shared_kv_layers")
    has_kv = []
    for il in range(n):
        ok = heads_kv[il] > 0 and il < kv_from_start
        if nextn and trunk > 0 and il >= trunk:
            ok = False
        if a in _HYBRID_BY_INTERVAL and (il >= trunk or recr[il]):
            ok = False
        if a in _HYBRID_NEMOTRON and (recr[il] or ffs[il] != 0):
            ok = False
        if a in _HYBRID_BY_HEADS and recr[il]:
            ok = False
        if a in _RECURRENT_ALL:
            ok = False
        has_kv.append(ok)

    hk_full, hv_full = model.key_length, model.value_length
    hk_swa = _meta_int(meta, f"{a}.attention.key_length_swa", hk_full) or hk_full
    hv_swa = _meta_int(meta, f"{a}.attention.value_length_swa", hv_full) or hv_full
    mla = bool(_meta_int(meta, f"{a}.attention.key_length_mla") and _meta_int(meta, f"{a}.attention.value_length_mla"))
    k_width = tuple(heads_kv[il] * (hk_swa if swa[il] else hk_full) for il in range(n))
    v_width = tuple(0 if mla else heads_kv[il] * (hv_swa if swa[il] else hv_full) for il in range(n))
    v_max = max(v_width, default=0)

    rs_unit = _rs_elems(model, meta) if any(recr) else 0
    rs = tuple(rs_unit if recr[il] else 0 for il in range(n))

    verified = a in VERIFIED and not notes
    if a not in VERIFIED:
        if a in _KNOWN_UNMODELLED:
            notes.append(f"{a} uses a cache layout LayerFit does not model yet")
        else:
            notes.append(f"LayerFit has not checked {a} against llama.cpp")
    if a == "deepseek2" and not mla and _meta_int(meta, f"{a}.attention.kv_lora_rank"):
        notes.append("an old DeepSeek-V2 file without MLA head sizes: llama.cpp may refuse or change it")
        verified = False
    return ArchLayout(arch=a, n_layer_trunk=trunk, has_kv=tuple(has_kv), swa=tuple(swa), n_swa=n_swa,
                      chunked=chunked, k_width=k_width, v_width=v_width, v_width_max=v_max, rs_elems=rs, mla=mla,
                      verified=verified, notes=tuple(notes))


def warning_text(model: ModelInfo) -> str | None:
    """The visible warning for an unverified architecture (None when verified)."""
    lay = arch_layout(model)
    if lay.verified:
        return None
    why = "; ".join(lay.notes)
    return f"not verified for {model.arch}: numbers may be off" + (f" ({why})" if why else "")
