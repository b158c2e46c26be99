"""End to end: the report built from production backends equals the one from the local store.

The tiny pipeline runs on the CPU while a scripted GPU (the exporter's fake backend) is busy
half of every 3 s. The same script feeds the run's store samples (recorder, every 0.1 s) and
the exporter that a real Prometheus scrapes every second. Spans go both to the store and, in
the Collector file exporter's format, to one traces file. The report from the traces file and
Prometheus must match the store's: durations exactly, SM figures within the tolerance each
report states.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from tests.integration.conftest import StartPrometheus, query
from tests.report.helpers import run_cli
from wan_otel import semconv as sc
from wan_otel.store.otlp_json import encode_spans
from wan_otel.store.run_store import RunStore

pytestmark = pytest.mark.integration
torch = pytest.importorskip("torch")

PROFILE_PERIOD_S = 3.0


class CollectorFileExporter(SpanExporter):
    """What the Collector's file exporter writes: one OTLP JSON payload a line, every run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(encode_spans(spans)) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class SlowSteps:
    """A pipeline listener that holds each denoising step open for ``seconds``: the tiny model
    steps in milliseconds, and 1 s scrapes need windows of seconds to say anything."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_open(self, record: Any) -> None:
        pass

    def on_close(self, record: Any) -> None:
        if record.name == sc.SPAN_DENOISE_STEP:
            time.sleep(self.seconds)


class FakeGpuIdentity(SpanProcessor):
    """Gives the root span the scripted GPU's identity, as a GPU run's system attributes would."""

    def __init__(self, uuid: str) -> None:
        self.uuid = uuid

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        if span.name == sc.SPAN_GENERATE:
            span.set_attribute(sc.GPU_UUID, self.uuid)
            span.set_attribute(sc.GPU_NAME, "NVIDIA H100 80GB HBM3 (fake)")


@pytest.fixture
def scripted_gpu() -> Iterator[tuple[str, Any]]:
    """(exporter target, a second backend on the same script for the store's recorder)."""
    from wan_otel.exporter.collector import SnapshotCollector
    from wan_otel.exporter.fake import ActivityProfile, FakeBackend, FakeGpu
    from wan_otel.exporter.sampler import Sampler
    from wan_otel.exporter.server import ExporterServer, make_app

    def gpu() -> FakeGpu:
        return FakeGpu(profile=ActivityProfile.duty_cycle(0.5, period_s=PROFILE_PERIOD_S))

    # Built back to back: both scripts start within microseconds of each other.
    exporter_backend, recorder_backend = FakeBackend([gpu()]), FakeBackend([gpu()])
    sampler = Sampler(exporter_backend, 0.1)
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(sampler, hostname="it-node"))
    server = ExporterServer(make_app(registry, sampler.ready), "127.0.0.1", 0)
    server.start()
    sampler.start()
    yield f"127.0.0.1:{server.port}", recorder_backend
    sampler.close()
    server.stop()


def _wait_scrapes(base_url: str, count: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = query(base_url, f"count_over_time({sc.GPU_SM_ACTIVE}[1m])")
        if result and float(result[0]["value"][1]) >= count:
            return
        time.sleep(0.25)
    raise AssertionError(f"Prometheus did not scrape {count} times")


def _report(*args: str) -> dict[str, Any]:
    result = run_cli("report", *args, "--format", "json")
    assert result.code == 0, result.err
    return dict(json.loads(result.out))


def test_backend_report_matches_store_report(
    tmp_path: Path, scripted_gpu: tuple[str, Any], start_prometheus: StartPrometheus
) -> None:
    from wan_otel.exporter.fake import fake_uuid
    from wan_otel.exporter.recorder import GpuSampleRecorder
    from wan_otel.pipeline.runner import presets
    from wan_otel.pipeline.runner.model_flags import ModelChoice
    from wan_otel.pipeline.runner.run import RunRequest, run
    from wan_otel.pipeline.runner.telemetry import TelemetryConfig, setup_telemetry

    target, recorder_backend = scripted_gpu
    base_url = start_prometheus([target], scrape_interval="1s")
    _wait_scrapes(base_url, 3)

    store, traces = tmp_path / "store", tmp_path / "traces.jsonl"
    telemetry = setup_telemetry(
        TelemetryConfig(
            store=store,
            otlp=False,
            span_processors=[
                FakeGpuIdentity(fake_uuid(0)),
                SimpleSpanProcessor(CollectorFileExporter(traces)),
            ],
        )
    )
    d = presets.TINY_DEFAULTS
    run_id = "it-backends"
    config = RunRequest(
        model=ModelChoice(presets.TINY, None, torch.device("cpu"), torch.float32, "none"),
        run_id=run_id,
        prompt="a fox in the snow",
        negative_prompt=None,
        height=d.height,
        width=d.width,
        frames=d.frames,
        steps=12,
        guidance=d.guidance,
        fps=d.fps,
        seed=3,
        max_sequence_length=d.max_sequence_length,
        store=RunStore(store),
    )
    # The scripted GPU's samples, recorded around the run and then put in its folder (on a
    # real GPU the run scope records them there itself).
    recorded = tmp_path / "gpu_samples.jsonl"
    recorder = GpuSampleRecorder(recorded, 0.1, backend=recorder_backend)
    assert recorder.start()
    try:
        run(config, telemetry, listeners=[SlowSteps(0.6)])
    finally:
        recorder.stop()
        telemetry.shutdown()
    recorded.rename(RunStore(store).folder(run_id).samples())
    time.sleep(2.5)  # scrapes that bracket the run's end
    _wait_scrapes(base_url, 6)

    from_store = _report("--run-id", run_id, "--store", str(store))
    from_backends = _report("--run-id", run_id, "--traces", str(traces), "--prometheus", base_url)

    assert "backends answered 1 HTTP request(s)" in from_backends["notes"]  # one, per metric
    for key in ("total_s", "step_s_mean", "steps_done", "frames_per_s"):
        assert from_backends["summary"][key] == from_store["summary"][key]
    assert [r["name"] for r in from_backends["trace"]] == [r["name"] for r in from_store["trace"]]
    assert [r["duration_s"] for r in from_backends["trace"]] == [
        r["duration_s"] for r in from_store["trace"]
    ]

    compared = 0
    for ours, theirs in zip(from_backends["trace"], from_store["trace"]):
        if ours["sm_pct"] is None or theirs["sm_pct"] is None:
            continue
        bound = ours["sm_tolerance_pct"] + theirs["sm_tolerance_pct"] + 1.0
        assert abs(ours["sm_pct"] - theirs["sm_pct"]) <= bound, (ours, theirs)
        compared += 1
    total_b, total_s = from_backends["trace"][-1], from_store["trace"][-1]
    assert total_b["sm_pct"] is not None and total_s["sm_pct"] is not None
    assert compared >= 2
    # The run lasts a few seconds of a 50 % duty cycle with a 3 s period.
    assert 10 < total_s["sm_pct"] < 90
    # The bounds are informative, not vacuous: seconds-long windows at 1 s scrapes.
    denoise_b = next(r for r in from_backends["trace"] if r["name"] == "Denoising")
    assert denoise_b["sm_tolerance_pct"] < 40 and total_b["sm_tolerance_pct"] < 35
    assert from_backends["summary"]["sm_source"] == from_store["summary"]["sm_source"] == "gpm"
