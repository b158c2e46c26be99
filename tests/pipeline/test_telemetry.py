"""SDK wiring: a dead, refusing or hanging OTLP endpoint neither fails nor slows a run, and
the spans it lost are counted; Prometheus serves the contract's metric names."""

from __future__ import annotations

import http.server
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from wan_otel import semconv as sc
from wan_otel.pipeline.runner.model_flags import ModelChoice
from wan_otel.pipeline.runner.presets import TINY, TINY_DEFAULTS
from wan_otel.pipeline.runner.run import RunRequest, run
from wan_otel.pipeline.runner.telemetry import TelemetryConfig, resource, setup_telemetry
from wan_otel.store.run_store import RunStore

SHUTDOWN_S = 1.5
EXPORT_TIMEOUT_S = 4


def tiny_config(
    store: Path | None, run_id: str, device: str = "cpu", **overrides: Any
) -> RunRequest:
    d = TINY_DEFAULTS
    model = ModelChoice(TINY, None, torch.device(device), torch.float32, "none")
    config = RunRequest(
        model=model, run_id=run_id, prompt="a cat", negative_prompt=None, height=d.height,
        width=d.width, frames=d.frames, steps=d.steps, guidance=d.guidance, fps=d.fps, seed=1,
        max_sequence_length=d.max_sequence_length,
        store=RunStore(store) if store is not None else None,
    )  # fmt: skip
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def hanging_endpoint() -> Iterator[str]:
    """Accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


class _Collector(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def working_endpoint() -> Iterator[str]:
    _Collector.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _otlp_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str, run_id: str
) -> tuple[float, float, Any, InMemoryMetricReader, list[bool]]:
    """One run with OTLP on; returns generation and shutdown seconds, the shutdown report,
    the metric reader, and for each export call whether it ran on the calling thread."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    # Longer than the shutdown bound: a blocking exporter would show in both timings.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", str(EXPORT_TIMEOUT_S))
    reader = InMemoryMetricReader()
    telemetry = setup_telemetry(
        TelemetryConfig(store=tmp_path, shutdown_timeout_s=SHUTDOWN_S, metric_readers=[reader])
    )
    assert telemetry.otlp_exporter is not None
    inner = telemetry.otlp_exporter.inner
    original, on_caller = inner.export, []

    def spy(spans: Any) -> Any:
        on_caller.append(threading.current_thread() is threading.main_thread())
        return original(spans)

    inner.export = spy  # type: ignore[method-assign]
    started = time.monotonic()
    run(tiny_config(tmp_path, run_id), telemetry)
    generated = time.monotonic()
    report = telemetry.shutdown()
    return generated - started, time.monotonic() - generated, report, reader, on_caller


def _baseline_s(tmp_path: Path) -> float:
    telemetry = setup_telemetry(TelemetryConfig(store=tmp_path))
    run(tiny_config(tmp_path, "warm"), telemetry)  # first call in a process: warm-up
    started = time.monotonic()
    run(tiny_config(tmp_path, "baseline"), telemetry)
    elapsed = time.monotonic() - started
    telemetry.shutdown()
    return elapsed


def _dropped_counter(reader: InMemoryMetricReader) -> int:
    data = reader.get_metrics_data()
    assert data is not None
    total = 0
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                if metric.name == sc.METRIC_SPANS_DROPPED:
                    total += sum(int(p.value) for p in metric.data.data_points)
    return total


@pytest.mark.parametrize("kind", ["refused", "hanging"])
def test_a_dead_otlp_endpoint_neither_fails_nor_slows_the_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    hanging_endpoint: str,
    kind: str,
) -> None:
    baseline = _baseline_s(tmp_path)
    endpoint = f"http://127.0.0.1:{_free_port()}" if kind == "refused" else hanging_endpoint
    with caplog.at_level(logging.WARNING, logger="wan_otel.pipeline.runner.telemetry"):
        generation_s, shutdown_s, report, reader, on_caller = _otlp_run(
            tmp_path, monkeypatch, endpoint, kind
        )
    stored = RunStore(tmp_path).read(kind).spans
    summary = RunStore(tmp_path).summary(kind)
    assert summary is not None and summary.status == "ok"
    assert not any(on_caller)  # exports run on the processor's thread, never the run's
    # A blocking export would add EXPORT_TIMEOUT_S; the margin absorbs a loaded CI machine.
    assert generation_s < baseline * 2 + EXPORT_TIMEOUT_S / 2
    assert shutdown_s < SHUTDOWN_S + 1.0  # one deadline for every exporter, plus a margin
    assert report.dropped_spans == len(stored)
    assert _dropped_counter(reader) == len(stored)
    assert report.dropped_metric_points > 0  # the final metric export: failed or cut off
    warnings = [r for r in caplog.records if "could not be delivered" in r.getMessage()]
    assert len(warnings) == 1 and str(len(stored)) in warnings[0].getMessage()


def test_a_working_otlp_endpoint_gets_every_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, working_endpoint: str
) -> None:
    _, _, report, reader, on_caller = _otlp_run(
        tmp_path, monkeypatch, working_endpoint, "delivered"
    )
    assert on_caller and not any(on_caller)
    assert report.dropped_spans == 0
    assert _dropped_counter(reader) == 0
    assert "/v1/traces" in _Collector.requests and "/v1/metrics" in _Collector.requests


def test_prometheus_serves_the_contract_names_without_run_ids(tmp_path: Path) -> None:
    telemetry = setup_telemetry(
        TelemetryConfig(store=None, prometheus_port=0, prometheus_addr="127.0.0.1")
    )
    try:
        run(tiny_config(None, "scraped"), telemetry)
        url = f"http://127.0.0.1:{telemetry.prometheus_port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    finally:
        telemetry.shutdown()
    for name in (
        "wan_generation_duration_seconds_bucket",
        "wan_stage_duration_seconds_bucket",
        "wan_denoise_step_duration_seconds_count",
        "wan_generations_total",
        "wan_frames_generated_total",
    ):
        assert name in text, name
    assert 'le="7200.0"' in text
    assert "scraped" not in text and "run_id" not in text
    assert 'model="Wan2.2-TI2V-5B-tiny"' in text and 'offload="none"' in text


def test_resource_honours_otel_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert resource().attributes["service.name"] == "wan-otel"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "video-worker")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=wan-0")
    attrs = resource().attributes
    assert attrs["service.name"] == "video-worker" and attrs["k8s.pod.name"] == "wan-0"
