"""Ollama's model store, read-only: the user's Ollama models by name, their GGUF blobs and parameters.

Ollama keeps every model as content-addressed blobs (``blobs/sha256-<hex>``) behind small JSON
manifests (``manifests/<host>/<namespace>/<model>/<tag>``). A manifest lists layers by media type: the
GGUF weights, a ``params`` JSON object (``num_ctx``, ``stop``, ...), the chat ``template``, the
``system`` prompt, a vision ``projector``, a LoRA ``adapter``. Tags share blobs: a model created with
``FROM deepseek-r1:32b`` plus ``PARAMETER num_ctx 131072`` points at the very same 19 GB weights file.

Names follow Ollama's ``types/model/name.go``: ``ParseName`` fills a missing host, namespace and tag
with ``registry.ollama.ai``, ``library`` and ``latest``; ``DisplayShortest`` drops the default host
(and the ``library`` namespace with it), so ``registry.ollama.ai/library/llama3/latest`` shows as
``llama3:latest`` and ``hf.co/user/repo/Q4_K_M`` as ``hf.co/user/repo:Q4_K_M``. Names compare
case-insensitively, as Ollama's ``EqualFold`` does.

Nothing here ever writes into the store. A broken manifest, a missing blob or a blob that is not a
GGUF becomes a ``problem`` line on that one entry; the rest of the list still shows.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.loadsettings import LoadSettings
from core.sampling import SamplingSettings

MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_PROJECTOR = "application/vnd.ollama.image.projector"
MEDIA_ADAPTER = "application/vnd.ollama.image.adapter"
MEDIA_LICENSE = "application/vnd.ollama.image.license"
MEDIA_MESSAGES = "application/vnd.ollama.image.messages"

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_DIGEST = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")
_MAX_MANIFEST = 1024 * 1024  # a manifest is a few hundred bytes; refuse to slurp anything huge
_MAX_TEXT_LAYER = 4 * 1024 * 1024  # params / system / template layers are small text


class OllamaModelNotFound(LookupError):
    """An Ollama name that isn't in any store. The message says so in one line, with close names."""


@dataclass(frozen=True)
class OllamaName:
    host: str
    namespace: str
    model: str
    tag: str

    @property
    def display(self) -> str:
        """Ollama's ``DisplayShortest``: the default host (and ``library``) left out, the tag kept."""
        if self.host.lower() != DEFAULT_HOST:
            prefix = f"{self.host}/{self.namespace}/"
        elif self.namespace.lower() != DEFAULT_NAMESPACE:
            prefix = f"{self.namespace}/"
        else:
            prefix = ""
        return f"{prefix}{self.model}:{self.tag}"

    def key(self) -> tuple[str, str, str, str]:
        """For case-insensitive comparison (Ollama's ``Name.EqualFold``)."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())


def parse_name(text: str) -> OllamaName | None:
    """Ollama's ``ParseName``: ``[host/][namespace/]model[:tag]`` with the defaults filled in.

    Returns None for text that can't be an Ollama name (empty parts, spaces, a path with ``..``).
    """
    s = text.strip()
    for scheme in ("https://", "http://"):
        if s.startswith(scheme):
            s = s[len(scheme):]
    if not s or any(c.isspace() for c in s) or "\\" in s:
        return None
    tag = ""
    if s.rfind(":") > s.rfind("/"):
        s, tag = s[:s.rfind(":")], s[s.rfind(":") + 1:]
        if not tag:
            return None
    parts = s.split("/")
    if any(not part for part in parts):
        return None  # "a//b", "/abs/path": a part promised by a "/" is missing
    if len(parts) == 1:
        host, namespace, model = "", "", parts[0]
    elif len(parts) == 2:
        host, namespace, model = "", parts[0], parts[1]
    elif len(parts) == 3:
        host, namespace, model = parts
    else:
        return None
    name = OllamaName(host or DEFAULT_HOST, namespace or DEFAULT_NAMESPACE, model, tag or DEFAULT_TAG)
    ok = (_valid_part(name.host, host=True) and _valid_part(name.namespace, namespace=True)
          and _valid_part(name.model) and _valid_part(name.tag))
    return name if ok else None


def _valid_part(s: str, *, host: bool = False, namespace: bool = False) -> bool:
    """``isValidPart`` of name.go: alphanumeric or ``_`` first, then ``-_.`` too (no ``.`` in a
    namespace; ``:`` only in a host, for a port)."""
    if not s or len(s) > (350 if host else 80):
        return False
    if not (s[0].isascii() and (s[0].isalnum() or s[0] == "_")):
        return False
    for c in s[1:]:
        if c.isascii() and (c.isalnum() or c in "_-"):
            continue
        if c == "." and not namespace:
            continue
        if c == ":" and host:
            continue
        return False
    return ".." not in s


# --- where the stores are ---------------------------------------------------------------------------


def store_dirs(env: Mapping[str, str] | None = None, platform: str | None = None) -> list[Path]:
    """The folders Ollama keeps models in: ``OLLAMA_MODELS`` when set, else the defaults.

    The defaults are ``~/.ollama/models``; on Linux also ``/usr/share/ollama/.ollama/models``, where
    the systemd service (user ``ollama``) keeps them; on Windows ``%USERPROFILE%\\.ollama\\models``.
    """
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    custom = env.get("OLLAMA_MODELS", "").strip()
    if custom:
        return [Path(custom).expanduser()]
    if platform.startswith("win"):
        home = env.get("USERPROFILE") or str(Path.home())
        return [Path(home) / ".ollama" / "models"]
    dirs = [Path.home() / ".ollama" / "models"]
    if platform.startswith("linux"):
        dirs.append(Path("/usr/share/ollama/.ollama/models"))
    return dirs


# --- what a manifest says ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OllamaModel:
    """One Ollama name (one manifest) and what its layers hold.

    ``path`` is the GGUF blob (what LayerFit loads, in place); ``problem`` says in one line why the
    entry can't be planned (the rest of the fields then hold whatever could be read).
    """

    name: str  # as Ollama shows it: "deepseek-r1:32b", "hf.co/user/repo:Q4_K_M"
    full_name: str  # host/namespace/model:tag
    manifest: str
    store: str
    path: str | None = None  # the GGUF blob
    digest: str | None = None  # "sha256:<hex>" of the GGUF blob
    size: int = 0  # bytes of the GGUF blob
    params: Mapping[str, Any] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    projectors: tuple[str, ...] = ()  # blob paths (vision projector: loaded too, so its memory counts)
    projector_size: int = 0
    adapters: tuple[str, ...] = ()  # blob paths (LoRA)
    shared_with: tuple[str, ...] = ()  # other names whose GGUF blob is this one
    problem: str | None = None

    @property
    def source(self) -> str:
        return "ollama"

    def load_settings(self, base: LoadSettings | None = None) -> LoadSettings:
        """``base`` (default: LayerFit's defaults) with this model's params applied."""
        return settings_from_params(self.params, base)

    def sampling(self, base: SamplingSettings | None = None) -> SamplingSettings:
        """``base`` with this model's params and system prompt applied."""
        return sampling_from_params(self.params, self.system, base)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name, "full_name": self.full_name, "source": "ollama", "path": self.path,
            "digest": self.digest, "size": self.size, "manifest": self.manifest, "store": self.store,
            "params": dict(self.params), "system": self.system, "has_template": self.template is not None,
            "projectors": list(self.projectors), "projector_size": self.projector_size,
            "adapters": list(self.adapters), "shared_with": list(self.shared_with),
        }
        if self.problem:
            d["error"] = self.problem
        return d


@dataclass(frozen=True)
class OllamaBlob:
    """A GGUF blob and every name that uses it (tags share blobs: listed once)."""

    digest: str
    path: str
    size: int
    names: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "path": self.path, "size": self.size, "names": list(self.names)}


@dataclass(frozen=True)
class OllamaStore:
    """Everything found in the store folders; ``problems`` are store-level lines (unreadable folder)."""

    dirs: tuple[str, ...]
    models: tuple[OllamaModel, ...]
    problems: tuple[str, ...] = ()

    @property
    def blobs(self) -> list[OllamaBlob]:
        """The GGUF blobs, each once, with the names that use it (in list order; broken entries left out)."""
        seen: dict[str, list[OllamaModel]] = {}
        for m in self.models:
            if m.digest and m.path and not m.problem:
                seen.setdefault(m.digest, []).append(m)
        return [OllamaBlob(d, ms[0].path or "", ms[0].size, tuple(m.name for m in ms)) for d, ms in seen.items()]

    def find(self, text: str) -> OllamaModel | None:
        """The model called ``text`` (any spelling Ollama accepts: ``llama3`` = ``llama3:latest``)."""
        name = parse_name(text)
        if name is None:
            return None
        key = name.key()
        for m in self.models:
            n = parse_name(m.full_name)
            if n is not None and n.key() == key:
                return m
        return None

    def to_json(self) -> dict[str, Any]:
        return {"stores": list(self.dirs), "problems": list(self.problems),
                "models": [m.to_json() for m in self.models], "blobs": [b.to_json() for b in self.blobs]}


def blob_path(store: Path, digest: str) -> Path | None:
    """``blobs/sha256-<hex>`` for a ``sha256:<hex>`` digest; None for anything else (never a path
    outside the store, whatever a manifest says)."""
    m = _DIGEST.fullmatch(digest or "")
    if m is None:
        return None
    return store / "blobs" / f"sha256-{m.group(1).lower()}"


def _read_small(path: Path, limit: int) -> bytes:
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit // 1024} KiB")
    return data


def _why(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "missing"
    if isinstance(exc, PermissionError):
        return "not readable (permission denied)"
    return exc.strerror or str(exc)


def read_manifest(store: Path, manifest: Path, name: OllamaName) -> OllamaModel:
    """One manifest's model. Never raises for bad content: the entry carries a ``problem`` instead."""
    base = OllamaModel(name=name.display, full_name=f"{name.host}/{name.namespace}/{name.model}:{name.tag}",
                       manifest=str(manifest), store=str(store))
    try:
        doc = json.loads(_read_small(manifest, _MAX_MANIFEST).decode("utf-8"))
    except OSError as exc:
        return _with(base, problem=f"the manifest is {_why(exc)}")
    except (ValueError, UnicodeDecodeError):
        return _with(base, problem="the manifest is not valid JSON (damaged or cut short)")
    layers = doc.get("layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list):
        return _with(base, problem="the manifest has no list of layers")

    fields: dict[str, Any] = {}
    problems: list[str] = []
    projectors: list[str] = []
    adapters: list[str] = []
    projector_size = 0
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        media, digest = layer.get("mediaType"), layer.get("digest")
        if not isinstance(media, str) or not isinstance(digest, str):
            continue
        path = blob_path(store, digest)
        if path is None:
            problems.append(f"a {media.rsplit('.', 1)[-1]} layer has an invalid digest {digest[:40]!r}")
            continue
        if media == MEDIA_MODEL:
            if "path" in fields:
                continue  # the first model layer is the model (name.go's GetModel does the same)
            fields["digest"] = f"sha256:{path.name[7:]}"
            fields["path"] = str(path)
            try:
                fields["size"] = path.stat().st_size
                with open(path, "rb") as f:
                    magic = f.read(4)
                if magic != b"GGUF":
                    problems.append(f"the model blob {path.name[:19]}… is not a GGUF file")
            except OSError as exc:
                problems.append(f"the model blob {path.name[:19]}… is {_why(exc)}")
        elif media == MEDIA_PROJECTOR:
            projectors.append(str(path))
            try:
                projector_size += path.stat().st_size
            except OSError as exc:
                problems.append(f"the projector blob {path.name[:19]}… is {_why(exc)}")
        elif media == MEDIA_ADAPTER:
            adapters.append(str(path))
        elif media in (MEDIA_PARAMS, MEDIA_TEMPLATE, MEDIA_SYSTEM):
            what = media.rsplit(".", 1)[-1]
            try:
                text = _read_small(path, _MAX_TEXT_LAYER).decode("utf-8", errors="replace")
            except (OSError, ValueError) as exc:
                problems.append(f"the {what} layer is {_why(exc) if isinstance(exc, OSError) else exc}")
                continue
            if media == MEDIA_PARAMS:
                try:
                    params = json.loads(text)
                except ValueError:
                    problems.append("the params layer is not valid JSON")
                    continue
                if isinstance(params, dict):
                    fields["params"] = params
                else:
                    problems.append("the params layer is not a JSON object")
            else:
                fields[what] = text
    if "path" not in fields:
        problems.insert(0, "the manifest has no GGUF model layer")
    return _with(base, projectors=tuple(projectors), projector_size=projector_size, adapters=tuple(adapters),
                 problem="; ".join(problems) or None, **fields)


def _with(m: OllamaModel, **changes: Any) -> OllamaModel:
    from dataclasses import replace

    return replace(m, **changes)


def scan_store(store: Path) -> tuple[list[OllamaModel], list[str]]:
    """The models of one store folder, and its store-level problems."""
    root = store / "manifests"
    models: list[OllamaModel] = []
    problems: list[str] = []
    if not root.is_dir():
        return models, problems
    if not os.access(root, os.R_OK | os.X_OK):
        return models, [f"{root}: not readable (permission denied)"]

    def onerror(exc: OSError) -> None:
        problems.append(f"{exc.filename}: {_why(exc)}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root).parts
        if len(rel) != 3:  # host/namespace/model/<tag files>
            continue
        for fn in sorted(filenames):
            name = parse_name(f"{rel[0]}/{rel[1]}/{rel[2]}:{fn}")
            if name is None or fn.startswith("."):
                continue
            models.append(read_manifest(store, Path(dirpath) / fn, name))
    return models, problems


def read_store(dirs: Iterable[str | Path] | None = None) -> OllamaStore:
    """All the Ollama models in ``dirs`` (default: ``store_dirs()``), sorted by name, shared blobs noted."""
    folders = [Path(d) for d in (store_dirs() if dirs is None else dirs)]
    models: list[OllamaModel] = []
    problems: list[str] = []
    seen: set[tuple[str, str, str, str]] = set()
    for folder in folders:
        found, probs = scan_store(folder)
        problems += probs
        for m in found:
            key = parse_name(m.full_name)
            if key is None or key.key() in seen:
                continue  # the same name in two stores: the first store wins, as OLLAMA_MODELS does
            seen.add(key.key())
            models.append(m)
    models.sort(key=lambda m: m.name.lower())
    by_digest: dict[str, list[str]] = {}
    for m in models:
        if m.digest and not m.problem:
            by_digest.setdefault(m.digest, []).append(m.name)
    models = [_with(m, shared_with=tuple(n for n in by_digest.get(m.digest or "", []) if n != m.name))
              for m in models]
    return OllamaStore(tuple(str(f) for f in folders), tuple(models), tuple(problems))


def find_model(text: str, dirs: Iterable[str | Path] | None = None) -> OllamaModel:
    """The Ollama model called ``text``. Raises OllamaModelNotFound with a one-line message."""
    store = read_store(dirs)
    m = store.find(text)
    if m is not None:
        return m
    import difflib

    close = difflib.get_close_matches(text, [x.name for x in store.models], n=3, cutoff=0.5)
    where = ", ".join(store.dirs) or "no store folder"
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    if not store.models:
        raise OllamaModelNotFound(f"no Ollama model called {text!r}: no Ollama models found in {where}")
    raise OllamaModelNotFound(f"no Ollama model called {text!r} in {where}{hint}")


# --- params → LayerFit settings ------------------------------------------------------------------------


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def _float(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    return float(v) if isinstance(v, (int, float)) else None


def settings_from_params(params: Mapping[str, Any], base: LoadSettings | None = None) -> LoadSettings:
    """LoadSettings from an Ollama params layer (``num_ctx``, ``num_gpu``, ``num_batch``, ...).

    ``num_gpu`` is a layer count (llama.cpp's ``-ngl``; -1 = let Ollama decide, LayerFit's auto).
    Values of the wrong type are ignored, as the rest of the file still means something.
    """
    s = base or LoadSettings()
    changes: dict[str, Any] = {}
    ctx = _int(params.get("num_ctx"))
    if ctx is not None and ctx > 0:
        changes["n_ctx"] = ctx
    gpu = _int(params.get("num_gpu"))
    if gpu is not None:
        changes["n_gpu_layers"] = gpu if gpu >= 0 else None
    batch = _int(params.get("num_batch"))
    if batch is not None and batch > 0:
        changes["n_batch"] = batch
        changes["n_ubatch"] = min(s.n_ubatch, batch)
    threads = _int(params.get("num_thread"))
    if threads is not None and threads > 0:
        changes["n_threads"] = threads
    if isinstance(params.get("use_mmap"), bool):
        changes["use_mmap"] = params["use_mmap"]
    return s.with_(**changes)


def sampling_from_params(params: Mapping[str, Any], system: str | None = None,
                         base: SamplingSettings | None = None) -> SamplingSettings:
    """SamplingSettings from an Ollama params layer and system prompt."""
    s = base or SamplingSettings()
    changes: dict[str, Any] = {}
    for key in ("temperature", "top_p", "min_p", "repeat_penalty"):
        v = _float(params.get(key))
        if v is not None:
            changes[key] = v
    for key, attr in (("top_k", "top_k"), ("repeat_last_n", "repeat_last_n"), ("seed", "seed"),
                      ("num_predict", "max_tokens")):
        v = _int(params.get(key))
        if v is not None:
            changes[attr] = v
    if changes.get("max_tokens", 1) < 1:
        changes.pop("max_tokens")  # Ollama's -1/-2 ("until the context is full"): keep LayerFit's cap
    stop = params.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, list) and all(isinstance(x, str) for x in stop):
        changes["stop"] = tuple(stop)
    if system is not None:
        changes["system"] = system
    return s.with_(**changes)


def looks_like_path(text: str) -> bool:
    """Text that is meant as a file path, never an Ollama name: ``/x``, ``./x``, ``~/x``, ``*.gguf``."""
    t = text.strip()
    return (t.startswith(("/", ".", "~")) or t.lower().endswith(".gguf") or "\\" in t
            or (len(t) > 1 and t[1] == ":" and t[0].isalpha() and t[2:3] in ("\\", "/")))


def resolve_model(text: str, dirs: Iterable[str | Path] | None = None) -> tuple[Path, OllamaModel | None]:
    """A MODEL argument: an existing file, else an Ollama name. Raises OllamaModelNotFound (one line).

    A folder that happens to have a model's name (``llama3``) does not hide the Ollama model.
    """
    p = Path(text).expanduser()
    if p.is_file():
        return p, None
    if not looks_like_path(text) and parse_name(text) is not None:
        try:
            m = find_model(text, dirs)
        except OllamaModelNotFound as exc:
            if p.is_dir():
                raise OllamaModelNotFound(f"{text} is a folder; give the path of a .gguf file or an Ollama "
                                          "model name") from None
            raise OllamaModelNotFound(f"no such model file, and {exc}") from None
        if m.problem or not m.path:
            raise OllamaModelNotFound(f"Ollama model {m.name}: {m.problem or 'no GGUF model layer'}")
        return Path(m.path), m
    if p.is_dir():
        raise OllamaModelNotFound(f"{text} is a folder; give the path of a .gguf file or an Ollama model name")
    if p.exists():
        return p, None  # not a regular file (a pipe, a device): the header reader says what is wrong
    raise OllamaModelNotFound(f"no such model file: {text}")
