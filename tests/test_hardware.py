"""Hardware probing through a fake NVML boundary, what-if cards and sizes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from core.hardware import PRESETS, find_preset, probe, what_if
from core.units import GiB, MiB, SizeError, fmt_bytes, parse_size


class FakeNVML:
    """The subset of pynvml that core.hardware calls, with two GPUs or a missing driver."""

    class NVMLError(Exception):
        pass

    def __init__(self, gpus: list[tuple[str, int, int]] | None = None, init_error: str | None = None) -> None:
        self.gpus = gpus or []
        self.init_error = init_error
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.init_error:
            raise self.NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"580.65.06"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 13000

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return self.gpus[h][0]

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-{h}"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        _, total, used = self.gpus[h]
        return SimpleNamespace(total=total, used=used, free=total - used)


def test_probe_reads_every_gpu_through_nvml() -> None:
    fake = FakeNVML([("Tesla T4", 15360 * MiB, 300 * MiB), ("NVIDIA GeForce RTX 4090", 24564 * MiB, 1 * GiB)])
    hw = probe(nvml=fake)
    assert [g.name for g in hw.gpus] == ["Tesla T4", "NVIDIA GeForce RTX 4090"]
    assert hw.gpus[0].free == 15060 * MiB
    assert hw.gpus[1].used == GiB
    assert hw.gpus[0].driver == "580.65.06" and hw.gpus[0].cuda_version == "13.0"
    assert hw.gpu_problem is None
    assert hw.vram_free == 15060 * MiB
    assert fake.shutdowns == 1
    assert hw.ram_total > 0 and hw.cpu_threads >= 1


def test_probe_without_driver_is_a_plain_finding_not_an_exception() -> None:
    hw = probe(nvml=FakeNVML(init_error="Driver Not Loaded"))
    assert hw.gpus == ()
    assert hw.vram_free == 0
    assert "no NVIDIA driver" in (hw.gpu_problem or "")
    assert "Driver Not Loaded" in (hw.gpu_problem or "")


def test_probe_on_this_machine_never_raises() -> None:
    hw = probe()  # CI has no driver; a GPU box has one: both must give a Hardware
    assert (hw.gpus == ()) == (hw.gpu_problem is not None)


def test_driver_with_no_gpus_is_explained() -> None:
    hw = probe(nvml=FakeNVML([]))
    assert hw.gpus == () and "lists no GPU" in (hw.gpu_problem or "")


@pytest.mark.parametrize("text,expected", [
    ("16GiB", 16 * 1024**3), ("12000MiB", 12000 * 1024**2), ("8GB", 8 * 10**9), ("1.5 GiB", 3 * 1024**3 // 2),
    ("4096", 4096), ("0", 0), ("512mib", 512 * 1024**2),
])
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GiB", "16 parsecs", "-1GiB", "1..2GiB"])
def test_parse_size_rejects_nonsense_with_a_hint(text: str) -> None:
    with pytest.raises(SizeError, match="16GiB"):
        parse_size(text)


def test_fmt_bytes_units() -> None:
    assert fmt_bytes(3 * GiB // 2) == "1.5 GiB"
    assert fmt_bytes(300 * MiB) == "300 MiB"
    assert fmt_bytes(-2 * GiB) == "-2.0 GiB"


def test_what_if_presets_and_sizes() -> None:
    t4 = what_if("t4")
    assert t4.gpu is not None and t4.gpu.what_if and "T4" in t4.gpu.name
    assert t4.vram_free == 15360 * MiB  # what NVML reports as total on a 16 GB T4
    custom = what_if("20GiB")
    assert custom.vram_free == 20 * GiB
    assert find_preset("RTX4090") is find_preset("4090")
    assert {p.key for p in PRESETS} >= {"t4", "rtx3060", "rtx3090", "rtx4090", "a100-40", "a100-80", "h100"}
    with pytest.raises(SizeError):
        what_if("not-a-card")


def test_with_vram_zero_means_no_gpu() -> None:
    hw = what_if("t4").with_vram(0)
    assert hw.gpus == () and hw.vram_free == 0
    hw2 = probe(nvml=FakeNVML(init_error="x")).with_vram(10 * GiB)
    assert hw2.vram_free == 10 * GiB and hw2.gpu is not None and hw2.gpu.what_if
