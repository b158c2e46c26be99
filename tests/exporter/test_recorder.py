"""GpuSampleRecorder: records readable by the store, cumulative counters, never raises."""

from __future__ import annotations

import ctypes.util
import logging
import time
from pathlib import Path

import pytest

from wan_otel import semconv
from wan_otel.exporter.fake import ActivityProfile, FakeBackend, FakeGpu, fake_uuid
from wan_otel.exporter.recorder import GpuSampleRecorder
from wan_otel.store.samples import read_samples


def test_records_cumulative_samples_of_every_gpu(tmp_path: Path) -> None:
    path = tmp_path / "run" / "gpu_samples.jsonl"
    gpus = [FakeGpu(profile=ActivityProfile.duty_cycle(0.5, period_s=0.02)), FakeGpu(gpm=False)]
    with GpuSampleRecorder(path, interval_s=0.1, backend=FakeBackend(gpus)) as recorder:
        assert recorder.started
        time.sleep(0.65)
    warnings: list[str] = []
    samples = read_samples(path, warnings)
    assert warnings == []
    by_gpu = {0: [s for s in samples if s.gpu == 0], 1: [s for s in samples if s.gpu == 1]}
    assert 4 <= len(by_gpu[0]) <= 9  # ~6 ticks + the final sample (fewer on a busy CI box)
    assert {s.uuid for s in by_gpu[0]} == {fake_uuid(0)}
    assert {s.source for s in by_gpu[0]} == {semconv.SOURCE_GPM}
    assert {s.source for s in by_gpu[1]} == {semconv.SOURCE_NVML_UTIL}
    first, last = by_gpu[0][0], by_gpu[0][-1]
    assert (first.sm_active_s, first.energy_j) == (0.0, 0.0)  # cumulative from the start
    elapsed = (last.t_ns - first.t_ns) / 1e9
    assert last.sm_active_s == pytest.approx(0.5 * elapsed, abs=0.011)  # period 0.02: error <= 0.01
    assert last.energy_j == pytest.approx(385.0 * elapsed, rel=0.05)  # mean of 70 W and 700 W
    assert last.memory_used_bytes == 12_884_901_888
    times = [s.t_ns for s in by_gpu[0]]
    assert times == sorted(times)


def test_stop_writes_a_final_sample_and_closes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gpu_samples.jsonl"
    recorder = GpuSampleRecorder(path, backend=FakeBackend([FakeGpu()]))
    assert recorder.start() is True
    time.sleep(0.05)  # one tick
    recorder.stop()
    assert len(path.read_text().splitlines()) == 2  # the first tick and the final sample
    recorder.stop()  # idempotent
    assert not recorder.started


def test_start_returns_false_with_one_warning_when_nvml_is_unavailable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = FakeBackend([FakeGpu()])
    backend.fail_next_inits(1)
    recorder = GpuSampleRecorder(tmp_path / "s.jsonl", backend=backend)
    with caplog.at_level(logging.WARNING):
        assert recorder.start() is False
    assert [r.getMessage() for r in caplog.records] == [
        "GPU samples will not be recorded: NVML unavailable "
        "(nvmlInit: NVML Shared Library Not Found)"
    ]
    recorder.stop()
    assert not (tmp_path / "s.jsonl").exists()


@pytest.mark.skipif(
    ctypes.util.find_library("nvidia-ml") is not None, reason="an NVIDIA driver is installed"
)
def test_default_backend_is_nvml_and_a_cpu_machine_gets_false(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), GpuSampleRecorder(tmp_path / "s.jsonl") as recorder:
        assert not recorder.started
    assert len(caplog.records) == 1


def test_interval_below_the_gpm_floor_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"below 0\.1 s"):
        GpuSampleRecorder(tmp_path / "s.jsonl", interval_s=0.05)
