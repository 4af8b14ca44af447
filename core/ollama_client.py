"""A running Ollama, through the official ``ollama`` Python client: version, tags, ps, show, create.

The host comes from ``OLLAMA_HOST`` (the client's own rule; default ``127.0.0.1:11434``). Every call has
a time-out, and every failure becomes one plain line: :class:`OllamaUnavailable` when nothing answers
(not running, wrong host, time-out), :class:`OllamaError` when Ollama answers with an error (an unknown
model, a bad parameter). Nothing that doesn't need the server depends on this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_HOST = "127.0.0.1:11434"
DEFAULT_TIMEOUT = 5.0  # seconds: list/ps/show answer at once from a healthy server
CREATE_TIMEOUT = 120.0  # creating from an existing model only writes small layers, but may wait on a busy server


class OllamaUnavailable(Exception):
    """Ollama could not be reached (not running, wrong host, no answer in time)."""


class OllamaError(Exception):
    """Ollama answered, with an error."""


@dataclass(frozen=True)
class RunningModel:
    """One entry of ``/api/ps``: where Ollama actually put a loaded model."""

    name: str
    size: int  # bytes in memory, GPU and RAM together
    size_vram: int  # of which on GPUs
    context_length: int | None  # the context Ollama allocated (newer Ollama only)
    digest: str = ""
    expires_at: str = ""

    @property
    def processor(self) -> str:
        """As ``ollama ps`` prints it: "100% GPU", "100% CPU" or "48%/52% CPU/GPU"."""
        if self.size <= 0 or self.size_vram <= 0:
            return "100% CPU"
        if self.size_vram >= self.size:
            return "100% GPU"
        gpu = round(100 * self.size_vram / self.size)
        return f"{100 - gpu}%/{gpu}% CPU/GPU"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "size_vram": self.size_vram,
                "context_length": self.context_length, "processor": self.processor, "digest": self.digest,
                "expires_at": self.expires_at}


def default_host() -> str:
    return os.environ.get("OLLAMA_HOST", "").strip() or DEFAULT_HOST


class OllamaServer:
    """A thin, typed wrapper over ``ollama.Client`` that turns every failure into one line."""

    def __init__(self, host: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        from ollama import Client

        self.host = host or default_host()
        self.timeout = timeout
        self._client = Client(host=self.host, timeout=timeout)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import httpx
        import pydantic
        from ollama import ResponseError

        try:
            return fn(*args, **kwargs)
        except ResponseError as exc:
            raise OllamaError(f"Ollama at {self.host} refused {what}: {exc.error} (HTTP {exc.status_code})") from None
        except httpx.TimeoutException:
            raise OllamaUnavailable(f"Ollama at {self.host} did not answer {what} within {self.timeout:g} s") from None
        except (ConnectionError, httpx.TransportError):
            raise OllamaUnavailable(f"Ollama is not running at {self.host}, or can't be reached; set "
                                    "OLLAMA_HOST if it runs elsewhere") from None
        except (pydantic.ValidationError, ValueError, KeyError, TypeError) as exc:
            raise OllamaError(f"Ollama at {self.host} answered {what} with something LayerFit can't read "
                              f"({type(exc).__name__})") from None

    def version(self) -> str:
        """The server's version (``GET /api/version``): the cheap "is it there?" call."""
        def get() -> str:
            r = self._client._request_raw("GET", "/api/version")  # the client has no public version()
            return str(r.json()["version"])
        return str(self._call("the version request", get))

    def tags(self) -> list[str]:
        """Names of the models the server has (``GET /api/tags``)."""
        resp = self._call("the model list", self._client.list)
        return [str(m.model) for m in resp.models if m.model]

    def ps(self) -> list[RunningModel]:
        """The loaded models and where they are (``GET /api/ps``)."""
        resp = self._call("the running-models request", self._client.ps)
        out = []
        for m in resp.models:
            ctx = getattr(m, "context_length", None)
            out.append(RunningModel(name=str(m.model or m.name or ""), size=int(m.size or 0),
                                    size_vram=int(m.size_vram or 0), context_length=int(ctx) if ctx else None,
                                    digest=str(m.digest or ""),
                                    expires_at=m.expires_at.isoformat() if m.expires_at else ""))
        return out

    def show(self, name: str) -> dict[str, Any]:
        """What Ollama knows about ``name`` (``POST /api/show``): parameters, system, details, ..."""
        resp = self._call(f"to show {name}", self._client.show, name)
        return dict(resp.model_dump(exclude_none=True))

    def create(self, name: str, from_: str, parameters: Mapping[str, Any] | None = None,
               system: str | None = None) -> list[str]:
        """Create ``name`` from the existing model ``from_`` (``POST /api/create``), then list it back.

        Returns the status lines. Raises OllamaError when Ollama refuses, or when the new name is not
        in ``/api/tags`` afterwards (then it was not really created).
        """
        from ollama import Client

        slow = Client(host=self.host, timeout=CREATE_TIMEOUT)
        resp = self._call(f"to create {name}", slow.create, model=name, from_=from_,
                          parameters=dict(parameters) if parameters else None, system=system, stream=False)
        statuses = [str(resp.status)] if getattr(resp, "status", None) else []
        if not names_match(name, self.tags()):
            raise OllamaError(f"Ollama at {self.host} said {statuses[-1] if statuses else 'nothing'!r} to "
                              f"creating {name}, but does not list it afterwards")
        return statuses


def names_match(name: str, names: list[str]) -> bool:
    """Whether ``name`` is among ``names`` the way Ollama compares names (defaults filled, any case)."""
    from core.ollama import parse_name

    want = parse_name(name)
    if want is None:
        return False
    return any((n := parse_name(x)) is not None and n.key() == want.key() for x in names)


def create_fields(modelfile_text: str) -> tuple[dict[str, Any], str | None]:
    """``parameters`` and ``system`` for ``/api/create`` from an exported Modelfile.

    Read back with LayerFit's own Modelfile lexer, so the API gets exactly the values the saved
    Modelfile has (typed the way Ollama types them; ``stop`` as a list).
    """
    from core.modelfile import _parse_value, lex_modelfile

    instructions, _comments = lex_modelfile(modelfile_text)
    params: dict[str, Any] = {}
    system: str | None = None
    for cmd in instructions:
        if cmd.word == "parameter":
            value = _parse_value(cmd)
            if cmd.name == "stop":
                params.setdefault("stop", []).append(value)
            else:
                params[cmd.name] = value
        elif cmd.word == "system":
            system = cmd.args
    return params, system
