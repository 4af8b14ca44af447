"""ModelInfo from a GGUF header: architecture, shapes, per-tensor sizes. No tensor data is read.

OWNER: estimator helper — implement ``read_model_info``. The dataclass fields below are the contract
other modules (engine, GUI, CLI, Modelfile) rely on; add fields freely, don't rename these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ModelFileError(Exception):
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

    def to_json(self) -> dict[str, Any]:
        """The ``model`` object of ``layerfit plan --json``."""
        raise NotImplementedError


def read_model_info(path: str | Path) -> ModelInfo:
    """Read a GGUF header. Raises ModelFileError for anything that isn't a valid GGUF."""
    raise NotImplementedError
