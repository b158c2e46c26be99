"""Collector: golden exposition, promtool lint, absent-not-zero, lost GPUs, self-metrics."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from wan_otel import semconv
from wan_otel.exporter.backend import ProcessMemory
from wan_otel.exporter.fake import FakeBackend, FakeGpu, fake_uuid
from wan_otel.exporter.sampler import Sampler

from .conftest import ManualClock, registry_for

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("WAN_OTEL_UPDATE_GOLDEN") == "1"
MakeSampler = Callable[..., tuple[Sampler, FakeBackend]]


def _labels(index: int, **extra: str) -> dict[str, str]:
    return {
        semconv.LABEL_GPU: str(index),
        semconv.LABEL_UUID: fake_uuid(index),
        semconv.LABEL_MODEL_NAME: "NVIDIA H100 80GB HBM3",
        semconv.LABEL_HOSTNAME: "node-a",
        **extra,
    }


@pytest.mark.parametrize(
    ("name", "render"),
    [("metrics.prom", generate_latest), ("metrics.openmetrics", generate_openmetrics)],
)
def test_exposition_matches_golden(
    golden_registry: CollectorRegistry, name: str, render: Callable[[CollectorRegistry], bytes]
) -> None:
    actual = render(golden_registry).decode()
    path = GOLDEN / name
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8")


def test_golden_values_are_the_scripted_ones(golden_registry: CollectorRegistry) -> None:
    get = golden_registry.get_sample_value
    gpm = {**_labels(0, pod="wan-0", namespace="video"), semconv.LABEL_SOURCE: semconv.SOURCE_GPM}
    util = {
        **_labels(1, pod="wan-0", namespace="video"),
        semconv.LABEL_MODEL_NAME: "NVIDIA A10G",
        semconv.LABEL_SOURCE: semconv.SOURCE_NVML_UTIL,
    }
    assert get(semconv.GPU_SM_ACTIVE, gpm) == 1.0  # busy [0, 0.5) and [1.0, 1.5)
    assert get(semconv.GPU_SM_ACTIVE, util) == 0.375  # 25 % over 1.5 s
    assert get(semconv.GPU_TENSOR_ACTIVE, gpm) == 0.875
    base0 = _labels(0, pod="wan-0", namespace="video")
    assert get(semconv.GPU_ENERGY, base0) == 70.0 * 1.5 + 630.0 * 1.0  # idle + busy joules
    # NVML's power on Ampere and newer is the mean over the last second: [0.5, 1.5) is half busy
    assert get(semconv.GPU_POWER, base0) == 70.0 + 630.0 * 0.5
    assert get(semconv.GPU_PCIE_RX, base0) == 1_048_576.0 * 1.5
    assert get(semconv.EXPORTER_SAMPLE_AGE) == 0.25
    assert get(semconv.EXPORTER_UP) == 1.0
    proc = {
        **_labels(0),
        semconv.LABEL_PID: "4242",
        semconv.LABEL_CONTAINER: "ab" * 32,
        semconv.LABEL_POD: "wan-job-7",
        semconv.LABEL_NAMESPACE: "video",
    }
    assert get(semconv.GPU_PROCESS_MEMORY, proc) == 10_737_418_240


def test_unsupported_fields_have_no_series_not_zero(golden_registry: CollectorRegistry) -> None:
    exposition = generate_latest(golden_registry).decode()
    older = [line for line in exposition.splitlines() if 'model_name="NVIDIA A10G"' in line]
    assert any(line.startswith(semconv.GPU_SM_ACTIVE + "{") for line in older)
    for absent in (
        semconv.GPU_SM_OCCUPANCY,
        semconv.GPU_TENSOR_ACTIVE,
        semconv.GPU_DRAM_ACTIVE,
        semconv.GPU_PCIE_RX,
        semconv.GPU_ECC_ERRORS,
    ):
        assert not [line for line in older if line.startswith(absent + "{")], absent


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_check_metrics_is_clean(golden_registry: CollectorRegistry) -> None:
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=generate_latest(golden_registry),
        capture_output=True,
        timeout=30,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, b"")


def test_a_lost_gpu_loses_every_series_and_counts_the_error(
    make_sampler: MakeSampler, clock: ManualClock
) -> None:
    sampler, backend = make_sampler([FakeGpu(), FakeGpu()])
    registry = registry_for(sampler)
    sampler.sample_once()
    clock.advance(0.5)
    backend.lose(1)
    sampler.sample_once()
    exposition = generate_latest(registry).decode()
    assert fake_uuid(0) in exposition
    assert fake_uuid(1) not in exposition
    errors = registry.get_sample_value(
        semconv.EXPORTER_NVML_ERRORS, {semconv.LABEL_CALL: "nvmlDeviceGetMemoryInfo"}
    )
    assert errors == 1.0
    assert registry.get_sample_value(semconv.EXPORTER_UP) == 1.0


def test_backend_down_exports_up_zero_and_no_gpu_series(
    make_sampler: MakeSampler, clock: ManualClock
) -> None:
    sampler, backend = make_sampler([FakeGpu()])
    backend.fail_next_inits(1)
    registry = registry_for(sampler)
    sampler.sample_once()
    clock.advance(0.75)
    get = registry.get_sample_value
    assert get(semconv.EXPORTER_UP) == 0.0
    assert get(semconv.EXPORTER_NVML_ERRORS, {semconv.LABEL_CALL: "nvmlInit"}) == 1.0
    assert get(semconv.EXPORTER_SAMPLE_AGE) == 0.75  # computed at scrape time
    assert "wan_gpu_" not in generate_latest(registry).decode()


def test_collect_never_raises_and_drops_only_the_bad_gpu(
    make_sampler: MakeSampler, clock: ManualClock
) -> None:
    bad = FakeGpu(processes=(ProcessMemory(7, "not a number"),))  # type: ignore[arg-type]
    sampler, _ = make_sampler([FakeGpu(), bad], processes=True)
    registry = registry_for(sampler)
    sampler.sample_once()
    exposition = generate_latest(registry).decode()
    assert fake_uuid(0) in exposition
    assert fake_uuid(1) not in exposition
    assert registry.get_sample_value(semconv.EXPORTER_UP) == 1.0


def test_pod_labels_only_when_the_downward_api_sets_them(
    make_sampler: MakeSampler,
) -> None:
    sampler, _ = make_sampler([FakeGpu()])
    sampler.sample_once()
    plain = registry_for(sampler)
    assert plain.get_sample_value(semconv.GPU_MEMORY_TOTAL, _labels(0)) == 85_520_809_984
    with_pod = registry_for(sampler, pod="wan-0", namespace="video")
    labelled = _labels(0, pod="wan-0", namespace="video")
    assert with_pod.get_sample_value(semconv.GPU_MEMORY_TOTAL, labelled) == 85_520_809_984
    assert with_pod.get_sample_value(semconv.GPU_MEMORY_TOTAL, _labels(0)) is None
