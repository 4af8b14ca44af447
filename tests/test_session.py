"""core.session without Qt: one owner for the model, its settings, the hardware, the plan and the load.

Expected numbers are worked out here (from the GGUF's own tensor table read with gguf-py, or from the
settings the test set), never copied from the code under test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from gguf import GGUFReader
from gguf_factory import QWEN3_30B_A3B, QWEN25_32B, write_sparse_model, write_tiny_model

from core.engine import LoadResult
from core.fit import make_plan
from core.gguf_info import read_model_info
from core.hardware import Hardware
from core.loadsettings import LoadSettings
from core.modelfile import ModelfileSpec
from core.placement import Placement
from core.sampling import SamplingSettings
from core.session import THIS_MACHINE, Change, MeterSource, Session, describe_placement
from core.settings import AppSettings
from core.tradeoff import Where, spill_point, sweep
from core.units import GiB, MiB

RAM = 64 * GiB
GPU_BOX = Hardware((), RAM, 60 * GiB, 8).with_vram(16 * GiB, name="Test GPU 16 GiB")
CPU_BOX = Hardware((), RAM, 60 * GiB, 8, gpu_problem="no NVIDIA driver answered")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("session-models")
    return {"tiny": str(write_tiny_model(d / "tiny.gguf")),
            "big": str(write_sparse_model(d / "qwen32b.gguf", QWEN25_32B)),
            "moe": str(write_sparse_model(d / "qwen3-30b-a3b.gguf", QWEN3_30B_A3B))}


def _measured(plan):  # type: ignore[no-untyped-def]
    """A LoadResult as the engine reports one: the plan's own numbers, measured."""
    pl = Placement(True, plan.processor, plan.gpu_layers, plan.model.n_layer, plan.gpu, plan.host)
    return LoadResult(pl, plan.settings, (), load_seconds=0.1, plan=plan)


def test_core_session_needs_no_qt() -> None:
    # a fresh interpreter: importing the session (and planning with it) loads no Qt and no gui module
    code = ("import sys, core.session, core.tradeoff, core.export, core.modelfile_report; "
            "bad = [m for m in sys.modules if m.startswith(('PySide6', 'gui'))]; print(bad); sys.exit(bool(bad))")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_settings_are_kept_per_model_and_survive_a_restart(models: dict[str, str]) -> None:
    tiny, big = read_model_info(models["tiny"]), read_model_info(models["big"])
    app = AppSettings()
    s = Session(app, GPU_BOX)
    s.select_model(big)
    s.set_settings(s.settings.with_(n_ctx=32768))
    s.select_model(tiny)
    assert s.settings.n_ctx == 2048  # the tiny model's own default: its trained context caps LayerFit's 4096
    s.set_settings(s.settings.with_(n_ctx=1024, type_k="q8_0", type_v="q8_0"))
    s.select_model(big)
    assert s.settings.n_ctx == 32768  # the context set for the 32B model came back
    assert s.plan is not None and s.plan.settings.n_ctx == 32768
    s.save_into(app)

    again = Session(app, GPU_BOX)  # a restart
    again.select_model(tiny)
    assert (again.settings.n_ctx, again.settings.type_v) == (1024, "q8_0")
    again.select_model(big)
    assert again.settings.n_ctx == 32768


def test_export_is_the_selected_models_plan_not_the_loaded_one(models: dict[str, str]) -> None:
    tiny, big = read_model_info(models["tiny"]), read_model_info(models["big"])
    s = Session(AppSettings(), GPU_BOX)
    s.select_model(tiny)
    asked = s.load_plan()
    assert asked is not None and s.plan_inputs is not None
    s.on_loaded(asked, s.plan_inputs, _measured(asked))
    assert s.meter_source() is MeterSource.MEASURED
    s.select_model(big)
    s.set_settings(s.settings.with_(n_ctx=8192))
    assert s.meter_source() is MeterSource.ESTIMATE
    out = s.export_spec()
    assert out is not None
    assert out.spec.from_path == big.path and out.spec.num_ctx == 8192
    # 32B Q4_K_M on a 16 GiB card: some layers, not 0 and not all 65
    assert out.num_gpu is not None and 0 < out.num_gpu < big.n_layer + 1


def test_a_suggestion_changes_exactly_what_it_names_and_keeps_auto(models: dict[str, str]) -> None:
    big = read_model_info(models["big"])
    s = Session(AppSettings(), GPU_BOX)
    s.select_model(big)
    s.set_settings(LoadSettings(n_ctx=65536))  # layers Auto, flash attention Auto
    advised = s.advise()
    assert advised is not None and advised.suggestions
    ctx_sugg = next(x for x in advised.suggestions if x.text.startswith("num_ctx"))
    assert dict(ctx_sugg.changes) == {"n_ctx": ctx_sugg.settings.n_ctx}
    assert ctx_sugg.speed_effect()  # the speed it buys is shown too
    s.apply_suggestion(ctx_sugg)
    assert s.settings.n_gpu_layers is None and s.settings.flash_attn == "auto"
    assert s.settings.n_ctx == ctx_sugg.settings.n_ctx
    # back to 4K: Auto answers for 4K, not the layer count the suggestion showed
    s.set_settings(s.settings.with_(n_ctx=4096))
    auto_4k = make_plan(big, LoadSettings(n_ctx=4096), GPU_BOX, s.headroom, suggest=False)
    assert s.plan is not None and s.plan.gpu_layers == auto_4k.gpu_layers
    assert auto_4k.gpu_layers > ctx_sugg.gpu_layers


def test_moe_tradeoff_need_line_holds_every_expert(models: dict[str, str]) -> None:
    moe = read_model_info(models["moe"])
    reader = GGUFReader(models["moe"])
    weights_off_host = sum(int(t.n_bytes) for t in reader.tensors if not t.name.startswith("token_embd"))
    s = Session(AppSettings(), Hardware((), RAM, 60 * GiB, 8))
    s.set_hardware("rtx3060")
    s.select_model(moe)
    s.set_settings(s.settings.with_(n_ctx=32768))
    data = sweep(moe, s.settings, s.hardware(), s.headroom)
    for p in data.points:
        assert p.need_gpu >= weights_off_host  # every layer AND every expert on the GPU
    first = spill_point(data.points)
    assert first is not None and first.where is Where.LAYERS and first.gpu_layers < moe.n_layer + 1

    # with the experts in RAM (the suggestion applied), every layer is on the GPU: the chart says the
    # experts moved, not that layers spilled, and the meter's line says so too
    s.set_settings(s.settings.with_(experts_on_cpu=True))
    assert s.plan is not None and s.plan.gpu_layers == moe.n_layer + 1
    assert describe_placement(s.plan) == "49 of 49 layers on the GPU, MoE expert weights in RAM"
    data = sweep(moe, s.settings, s.hardware(), s.headroom)
    at_32k = next(p for p in data.points if p.ctx == 32768)
    assert at_32k.where is Where.EXPERTS and at_32k.need_gpu >= weights_off_host
    assert at_32k.planned_gpu < weights_off_host


def test_after_a_load_the_reasons_are_the_measured_plans(models: dict[str, str]) -> None:
    tiny = read_model_info(models["tiny"])
    s = Session(AppSettings(), CPU_BOX)
    s.set_hardware("t4")
    s.select_model(tiny)
    assert s.plan is not None and s.plan.fits_gpu  # on the what-if T4 everything fits
    asked = s.load_plan()  # but the load runs on this CPU-only machine
    assert asked is not None and asked.gpu_layers == 0
    assert s.plan_inputs is not None
    s.on_loaded(asked, s.plan_inputs, _measured(asked))
    assert s.meter_source() is MeterSource.MEASURED
    shown = s.advise()
    assert shown is s.shown_plan() and shown is not None
    assert shown.processor == "100% CPU"
    assert not any("fit on the GPU" in r for r in shown.reasons)


def test_what_if_ram_is_the_what_if_machines(models: dict[str, str]) -> None:
    big = read_model_info(models["big"])
    s = Session(AppSettings(), GPU_BOX)
    s.set_hardware("t4", whatif_ram=2 * GiB)
    s.select_model(big)
    assert s.hardware().ram_available == 2 * GiB
    # 17.4 GiB of weights, 15 GiB of VRAM on the T4: more than 2 GiB stays in RAM
    assert s.plan is not None and not s.plan.fits
    s.set_hardware("t4", whatif_ram=0)  # back to this machine's 60 GiB
    assert s.hardware().ram_available == 60 * GiB and s.plan is not None and s.plan.fits
    app = s.save_into()
    s.set_hardware("t4", whatif_ram=12 * GiB)
    s.save_into(app)
    assert Session(app).whatif_ram == 12 * GiB
    with pytest.raises(ValueError):
        s.set_hardware("t4", whatif_ram=-1)


def test_export_semantics(models: dict[str, str]) -> None:
    tiny, big = read_model_info(models["tiny"]), read_model_info(models["big"])
    cpu = Session(AppSettings(), CPU_BOX)
    cpu.select_model(tiny)
    out = cpu.export_spec()
    assert out is not None and out.num_gpu is None and out.spec.num_gpu is None  # never num_gpu 0
    assert any("not written as 0" in n for n in out.notes)
    assert out.spec.omit_num_predict  # the user never set a reply length

    gpu = Session(AppSettings(), GPU_BOX)
    gpu.select_model(tiny)
    assert gpu.export_spec().num_gpu == tiny.n_layer + 1  # type: ignore[union-attr]
    assert gpu.export_spec(let_ollama_decide=True).num_gpu is None  # type: ignore[union-attr]
    gpu.set_sampling(SamplingSettings(max_tokens=2000))
    assert not gpu.export_spec().spec.omit_num_predict  # type: ignore[union-attr]

    small = Session(AppSettings(), Hardware((), 8 * GiB, 6 * GiB, 8).with_vram(4 * GiB, name="Small"))
    small.select_model(big)
    small.set_settings(small.settings.with_(n_gpu_layers=65))  # pinned beyond what fits
    warn = small.export_spec()
    assert warn is not None and not warn.fits
    assert any(n.startswith("Warning") for n in warn.notes)
    assert warn.num_gpu == 65  # the user's pin is the user's word


def test_an_import_waits_for_its_model_then_applies(models: dict[str, str]) -> None:
    tiny, big = read_model_info(models["tiny"]), read_model_info(models["big"])
    s = Session(AppSettings(), GPU_BOX)
    seen: list[Change] = []
    s.subscribe(seen.append)
    s.select_model(big)
    spec = ModelfileSpec(from_path=tiny.path, num_ctx=1536, num_gpu=3, sampling=SamplingSettings(temperature=0.2))
    assert not s.begin_import(spec)
    assert s.sampling.temperature == 0.2 and s.settings.n_ctx != 1536
    s.select_model(tiny)
    assert (s.settings.n_ctx, s.settings.n_gpu_layers) == (1536, 3)
    assert s.pending_import is None
    assert Change.SETTINGS in seen and Change.SAMPLING in seen


def test_a_bad_saved_hardware_choice_is_reported_not_fatal() -> None:
    app = AppSettings(hardware_choice="a potato", headroom_mib=-5)
    s = Session(app, GPU_BOX)
    assert s.hardware_choice == THIS_MACHINE and s.headroom == 768 * MiB
    assert len(s.restore_problems) == 2 and "hardware" in " ".join(s.restore_problems)
