"""A vision projector (mmproj) next to the model: found, sized from its header, reported on the device
where llama.cpp's mtmd puts it (the GPU when one is used), and kept out of the plan's totals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFWriter
from gguf_factory import Shape, write_tiny_model

from core.fit import make_plan
from core.gguf_info import read_model_info
from core.hardware import Hardware
from core.loadsettings import LoadSettings
from core.mmproj import find_projector, projector_for
from core.units import GiB

GPU = Hardware((), 64 * GiB, 60 * GiB, 8).with_vram(16 * GiB, name="Test GPU 16 GiB")


def _mmproj(path: Path) -> Path:
    """A tiny clip-architecture GGUF: a patch embedding and one block, F32 (sizes by hand below)."""
    w = GGUFWriter(str(path), "clip")
    w.add_uint32("clip.vision.block_count", 1)
    w.add_tensor("v.patch_embd.weight", np.zeros((64, 3, 14, 14), dtype=np.float32))  # 64*3*14*14*4 bytes
    w.add_tensor("v.blk.0.attn_q.weight", np.zeros((64, 64), dtype=np.float32))  # 64*64*4 bytes
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_projector_is_found_sized_and_reported(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "model.gguf", Shape())
    assert find_projector(model) is None
    _mmproj(tmp_path / "mmproj-model-f32.gguf")
    proj = projector_for(model)
    assert proj is not None and proj.weights == (64 * 3 * 14 * 14 + 64 * 64) * 4
    info = read_model_info(model)
    with_gpu = make_plan(info, LoadSettings(n_ctx=512), GPU)
    cpu = make_plan(info, LoadSettings(n_ctx=512), Hardware((), 64 * GiB, 60 * GiB, 8, gpu_problem="none"))
    assert with_gpu.to_json()["projector"] == {"path": proj.path, "weights": proj.weights, "device": "gpu"}
    assert cpu.to_json()["projector"]["device"] == "cpu"
    assert any("mmproj-model-f32.gguf" in r and "GPU" in r for r in with_gpu.reasons)
    # Not in the totals: the same plan as without the projector.
    (tmp_path / "mmproj-model-f32.gguf").unlink()
    assert make_plan(info, LoadSettings(n_ctx=512), GPU).gpu == with_gpu.gpu


def test_two_projectors_are_ambiguous_and_a_bad_one_is_ignored(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "model.gguf", Shape())
    (tmp_path / "mmproj-a.gguf").write_bytes(b"not a gguf")
    assert projector_for(model) is None  # unreadable: no projector, no crash
    _mmproj(tmp_path / "mmproj-b.gguf")
    assert find_projector(model) is None  # two candidates: LayerFit does not guess
    r = subprocess.run([sys.executable, "-m", "core", "plan", str(model), "--vram", "0", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "projector" not in json.loads(r.stdout)
