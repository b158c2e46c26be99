"""SDK wiring for ``wan-otel run``: tracer and meter providers, the run store, OTLP, Prometheus.

Telemetry must never slow or break a generation, whatever the backends do:

- spans go through ``BatchSpanProcessor``s (bounded queues, background threads); the run
  store's is flushed at the run's end (a local file: fast);
- OTLP (``http/protobuf``; standard ``OTEL_*`` variables: endpoint, protocol, headers,
  timeout, service name, resource attributes) uses a short request timeout unless
  ``OTEL_EXPORTER_OTLP[_TRACES]_TIMEOUT`` says otherwise, and is shut down on a helper
  thread joined with a bound, so a hanging collector costs at most that bound at exit;
- spans that did not reach the OTLP endpoint (failed exports, queue overflow, still queued at
  the bound) are counted: ``wan.telemetry.spans_dropped`` plus one warning;
- Prometheus: a ``PrometheusMetricReader`` served on ``--prometheus-port`` when asked.

Providers are not installed globally: ``wan-otel run`` passes them to ``instrument``.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Sampler

from wan_otel import semconv
from wan_otel.pipeline.metrics import METER_NAME
from wan_otel.store.span_exporter import RunStoreSpanExporter

_log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "wan-otel"
OTLP_TIMEOUT_S = 5.0
"""Per-request OTLP timeout unless the standard variables set one (the SDK's default is 10)."""
SHUTDOWN_TIMEOUT_S = 5.0
"""Longest wait for the OTLP exporters at the end of a run."""
STORE_QUEUE_SIZE = 65536
"""The store's span queue: a generation's spans are emitted at once when it ends."""

_HISTOGRAMS = (
    semconv.METRIC_GENERATION_DURATION,
    semconv.METRIC_STAGE_DURATION,
    semconv.METRIC_STEP_DURATION,
)


@dataclass
class TelemetryConfig:
    store: Path | None
    prometheus_port: int | None = None
    prometheus_addr: str = "0.0.0.0"
    otlp: bool | None = None
    """None: from the environment (an OTLP endpoint variable is set)."""
    shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S
    span_processors: Sequence[SpanProcessor] = ()
    metric_readers: Sequence[MetricReader] = ()
    sampler: Sampler | None = None
    """None: the SDK's (``OTEL_TRACES_SAMPLER``, parent-based always-on by default)."""
    id_generator: IdGenerator | None = None
    """None: random ids."""


@dataclass
class ShutdownReport:
    dropped_spans: int = 0
    otlp_endpoint: str | None = None


class CountingSpanExporter(SpanExporter):
    """Counts the spans its inner exporter delivered; an exception counts as a failure."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.delivered = 0
        self.failed = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:
            _log.debug("OTLP export raised: %s", exc)
            result = SpanExportResult.FAILURE
        with self._lock:
            if result is SpanExportResult.SUCCESS:
                self.delivered += len(spans)
            else:
                self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class CountingSpanProcessor(SpanProcessor):
    """Counts the spans handed to its inner processor."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner
        self.submitted = 0

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.submitted += 1
        self.inner.on_end(span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    store_processor: SpanProcessor | None = None
    otlp_processor: SpanProcessor | None = None
    otlp_counting: CountingSpanProcessor | None = None
    otlp_exporter: CountingSpanExporter | None = None
    otlp_endpoint: str | None = None
    prometheus_server: Any = None
    prometheus_port: int | None = None
    shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def flush_store(self) -> None:
        if self.store_processor is not None:
            self.store_processor.force_flush()

    def shutdown(self) -> ShutdownReport:
        """Flush the store, stop the exporters within the bound, count what was dropped."""
        report = ShutdownReport(otlp_endpoint=self.otlp_endpoint)
        if self.store_processor is not None:
            self.store_processor.force_flush()
            self.store_processor.shutdown()
        processor, counting = self.otlp_processor, self.otlp_counting
        if processor is not None and counting is not None:
            _bounded(
                lambda: _shutdown_batch(processor, self.shutdown_timeout_s), self.shutdown_timeout_s
            )
            delivered = self.otlp_exporter.delivered if self.otlp_exporter is not None else 0
            report.dropped_spans = max(0, counting.submitted - delivered)
        if report.dropped_spans:
            meter = self.meter_provider.get_meter(METER_NAME)
            meter.create_counter(
                semconv.METRIC_SPANS_DROPPED, unit="{span}", description="Spans not delivered"
            ).add(report.dropped_spans)
            _log.warning(
                "%d span(s) could not be delivered to the OTLP endpoint %s%s",
                report.dropped_spans,
                self.otlp_endpoint,
                " (the local run store has them)" if self.store_processor is not None else "",
            )
        _bounded(
            lambda: self.meter_provider.shutdown(int(self.shutdown_timeout_s * 1000)),
            self.shutdown_timeout_s,
        )
        for close in self._closers:
            _bounded(close, 1.0)
        return report


def _shutdown_batch(processor: SpanProcessor, timeout_s: float) -> None:
    """``BatchSpanProcessor.shutdown()`` waits up to 30 s for its worker; its inner batch
    processor takes the bound we want (guarded: a private attribute of the SDK)."""
    inner = getattr(processor, "_batch_processor", None)
    if inner is not None and "timeout_millis" in inspect.signature(inner.shutdown).parameters:
        inner.shutdown(timeout_millis=int(timeout_s * 1000))
    else:
        processor.shutdown()


def _bounded(fn: Callable[[], Any], timeout_s: float) -> None:
    """Run ``fn`` on a daemon thread; give up waiting after ``timeout_s`` (the process may
    exit with it still blocked on a dead network peer)."""
    thread = threading.Thread(target=_quiet(fn), name="wan-otel-shutdown", daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)
    if thread.is_alive():
        _log.warning("telemetry shutdown still waiting after %.1f s; not waiting longer", timeout_s)


def _quiet(fn: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception as exc:
            _log.debug("telemetry shutdown: %s", exc)

    return run


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _enabled(signal: str) -> bool:
    """An endpoint is configured for ``signal`` and ``OTEL_<signal>_EXPORTER`` allows otlp."""
    if (_env("OTEL_SDK_DISABLED") or "").lower() == "true":
        return False
    chosen = _env(f"OTEL_{signal}_EXPORTER")
    if chosen is not None and "otlp" not in [c.strip() for c in chosen.split(",")]:
        return False
    return _env("OTEL_EXPORTER_OTLP_ENDPOINT", f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") is not None


def _timeout(signal: str) -> float | None:
    """None lets the exporter read the standard variables; else our short default."""
    if _env("OTEL_EXPORTER_OTLP_TIMEOUT", f"OTEL_EXPORTER_OTLP_{signal}_TIMEOUT"):
        return None
    return OTLP_TIMEOUT_S


def _check_protocol(signal: str) -> None:
    protocol = _env(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol != "http/protobuf":
        _log.warning(
            "OTLP protocol %r is not supported by wan-otel run; using http/protobuf", protocol
        )


def _span_exporter() -> tuple[SpanExporter, str]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    _check_protocol("TRACES")
    exporter = OTLPSpanExporter(timeout=_timeout("TRACES"))
    return exporter, str(getattr(exporter, "_endpoint", "?"))


def _metric_reader() -> MetricReader:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    _check_protocol("METRICS")
    timeout = _timeout("METRICS")
    exporter = OTLPMetricExporter(timeout=timeout)
    interval = int(_env("OTEL_METRIC_EXPORT_INTERVAL") or 60000)
    return PeriodicExportingMetricReader(
        exporter,
        export_interval_millis=interval,
        export_timeout_millis=(timeout or OTLP_TIMEOUT_S) * 1000,
    )


def resource() -> Resource:
    """``OTEL_RESOURCE_ATTRIBUTES`` / ``OTEL_SERVICE_NAME``, with our service name by default."""
    detected = Resource.create({})
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        detected = detected.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return detected


def setup_telemetry(config: TelemetryConfig) -> Telemetry:
    res = resource()
    tracer_provider = TracerProvider(
        resource=res,
        shutdown_on_exit=False,
        sampler=config.sampler,
        id_generator=config.id_generator,
    )
    readers: list[MetricReader] = list(config.metric_readers)
    telemetry_kwargs: dict[str, Any] = {}
    closers: list[Callable[[], None]] = []
    if config.prometheus_port is not None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        readers.append(PrometheusMetricReader())
        server, _thread = start_http_server(config.prometheus_port, config.prometheus_addr)
        telemetry_kwargs["prometheus_server"] = server
        telemetry_kwargs["prometheus_port"] = server.server_address[1]
        closers.append(server.shutdown)
    otlp = _enabled("TRACES") if config.otlp is None else config.otlp
    if otlp and _enabled("METRICS"):
        readers.append(_metric_reader())
    views = [
        View(
            instrument_name=name,
            aggregation=ExplicitBucketHistogramAggregation(list(semconv.DURATION_BUCKETS_S)),
        )
        for name in _HISTOGRAMS
    ]
    meter_provider = MeterProvider(
        metric_readers=readers, resource=res, views=views, shutdown_on_exit=False
    )
    telemetry = Telemetry(
        tracer_provider,
        meter_provider,
        shutdown_timeout_s=config.shutdown_timeout_s,
        _closers=closers,
        **telemetry_kwargs,
    )
    if config.store is not None:
        processor = BatchSpanProcessor(
            RunStoreSpanExporter(config.store), max_queue_size=STORE_QUEUE_SIZE
        )
        tracer_provider.add_span_processor(processor)
        telemetry.store_processor = processor
    if otlp:
        exporter, endpoint = _span_exporter()
        counting_exporter = CountingSpanExporter(exporter)
        batch = BatchSpanProcessor(counting_exporter)
        counting = CountingSpanProcessor(batch)
        tracer_provider.add_span_processor(counting)
        telemetry.otlp_processor = batch
        telemetry.otlp_counting = counting
        telemetry.otlp_exporter = counting_exporter
        telemetry.otlp_endpoint = endpoint
    for extra in config.span_processors:
        tracer_provider.add_span_processor(extra)
    return telemetry
