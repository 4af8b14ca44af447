"""The MODEL argument of ``plan``, ``run`` and ``modelfile``: a GGUF path, or an Ollama model name.

An Ollama name (``deepseek-r1:32b``, ``hf.co/user/repo:Q4_K_M``) resolves through the store
(core.ollama) to its GGUF blob, loaded in place; its params layer gives the default settings
(``num_ctx``, ``num_gpu``, ...) and its system prompt the default system prompt. Options given on the
command line still win.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from core.cli_options import CliError
from core.gguf_info import ModelInfo, read_model_info
from core.loadsettings import LoadSettings
from core.ollama import OllamaModel, OllamaModelNotFound, resolve_model
from core.sampling import SamplingSettings


@dataclass(frozen=True)
class ModelRef:
    path: Path
    ollama: OllamaModel | None = None

    @property
    def label(self) -> str:
        return self.ollama.name if self.ollama else self.path.name

    def load_settings(self) -> LoadSettings | None:
        """The Ollama model's params as LoadSettings (None for a plain file: LayerFit's defaults)."""
        return self.ollama.load_settings() if self.ollama else None

    def sampling(self) -> SamplingSettings | None:
        return self.ollama.sampling() if self.ollama else None

    def read_info(self) -> ModelInfo:
        """The header; an Ollama model keeps its Ollama name (the blob's file name says nothing)."""
        info = read_model_info(self.path)
        return replace(info, name=self.ollama.name) if self.ollama else info


def resolve(text: str) -> ModelRef:
    """A path that exists, else an Ollama name. A bad one raises CliError with one plain line."""
    from core.library import path_problem

    try:
        path, om = resolve_model(text)
    except OllamaModelNotFound as exc:
        if str(exc).startswith("no such model file: "):  # not an Ollama name either: say what the path is
            raise CliError(path_problem(text)) from None
        raise CliError(str(exc)) from None
    if om is None and not path.is_file():  # a pipe, a device: never opened
        raise CliError(path_problem(text))
    return ModelRef(path.resolve() if om is None else path, om)
