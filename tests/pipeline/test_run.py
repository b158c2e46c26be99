"""The run's GPU sampler hook-up: started on a GPU with a store, writing beside the spans;
tolerated when the exporter package or NVML is missing."""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from tests.pipeline.test_telemetry import tiny_config
from wan_otel.pipeline.runner.run import RunRequest
from wan_otel.pipeline.runner.run_scope import gpu_samples
from wan_otel.store.run_store import RunFolder


def _gpu_samples(config: RunRequest) -> Any:
    folder = config.store.folder(config.run_id) if config.store is not None else None
    return gpu_samples(config.model.device, folder.samples() if folder is not None else None)


class _FakeRecorder:
    made: ClassVar[list[_FakeRecorder]] = []

    def __init__(self, path: Path, interval_s: float = 0.1) -> None:
        self.path, self.interval_s = path, interval_s
        self.started = self.stopped = False
        _FakeRecorder.made.append(self)

    def start(self) -> bool:
        self.started = True
        return True

    def stop(self) -> None:
        self.stopped = True


def _fake_module(monkeypatch: pytest.MonkeyPatch, recorder: Any) -> None:
    module = types.ModuleType("wan_otel.exporter.recorder")
    module.GpuSampleRecorder = recorder  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wan_otel.exporter.recorder", module)


def test_sampler_runs_around_a_gpu_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _FakeRecorder.made = []
    _fake_module(monkeypatch, _FakeRecorder)
    config = tiny_config(tmp_path, "gpu-run", device="cuda")
    with _gpu_samples(config):
        (recorder,) = _FakeRecorder.made
        assert recorder.started and not recorder.stopped
    assert recorder.stopped
    assert recorder.path == RunFolder("gpu-run", tmp_path / "gpu-run").samples()
    assert recorder.interval_s == 0.1


def test_no_sampler_on_cpu_or_without_a_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _FakeRecorder.made = []
    _fake_module(monkeypatch, _FakeRecorder)
    with _gpu_samples(tiny_config(tmp_path, "cpu-run")):
        pass
    with _gpu_samples(tiny_config(None, "no-store", device="cuda")):
        pass
    assert _FakeRecorder.made == []


def test_a_missing_or_broken_sampler_is_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("NVML exploded")

    _fake_module(monkeypatch, broken)
    config = tiny_config(tmp_path, "gpu-run", device="cuda")
    with (
        caplog.at_level(logging.WARNING, logger="wan_otel.pipeline.runner.run_scope"),
        _gpu_samples(config),
    ):
        pass
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["GPU samples will not be recorded: NVML exploded"]


class _EnergyRecorder(_FakeRecorder):
    """A GPU sampler whose GPU used 1,234.5 J over the run."""

    def energy_used_j(self, uuid: str) -> float | None:
        return 1234.5 if uuid == "GPU-test" else None


def test_a_gpu_runs_energy_goes_into_the_energy_histogram(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metrics: Any, spans: Any
) -> None:
    import time as clock

    from wan_otel import semconv as sc
    from wan_otel.pipeline.instrumentation.generation_metrics import PipelineMetrics
    from wan_otel.pipeline.instrumentation.guard import Guard
    from wan_otel.pipeline.instrumentation.span_stream import SpanStream
    from wan_otel.pipeline.runner.run_scope import RunPlan, run_scope
    from wan_otel.store import RunStore

    _FakeRecorder.made = []
    _fake_module(monkeypatch, _EnergyRecorder)
    plan = RunPlan(
        "energy",
        torch.device("cuda"),
        RunStore(tmp_path),
        attributes={sc.GPU_UUID: "GPU-test", sc.MODEL_NAME: "m"},
    )
    pipeline_metrics = PipelineMetrics(metrics.provider)
    stream = SpanStream(spans.provider.get_tracer("t"))
    with run_scope(plan, stream, guard=Guard(), flush=lambda: None, metrics=pipeline_metrics):
        clock.sleep(1.05)  # the counter updates every 0.1 s: shorter runs record no energy
    (point,) = metrics.points(sc.METRIC_GENERATION_ENERGY)
    assert point.sum == 1234.5 and point.count == 1
    assert point.attributes[sc.LABEL_MODEL] == "m"
