"""SDK wiring for ``wan-otel run``: tracer and meter providers, the run store, OTLP, Prometheus.

Telemetry must never slow or break a generation, whatever the backends do:

- spans go through ``BatchSpanProcessor``s (bounded queues, background threads); the run
  store's writes every half second (a local file: a killed run keeps what was written) and
  is flushed at the run's end;
- OTLP (``http/protobuf``; standard ``OTEL_*`` variables: endpoint, protocol, headers,
  timeout, service name, resource attributes) uses a short request timeout unless
  ``OTEL_EXPORTER_OTLP[_TRACES]_TIMEOUT`` says otherwise; at exit every exporter is shut down
  on helper threads under one deadline (``SHUTDOWN_TIMEOUT_S``, 2 s), so a dead or hanging
  collector adds at most that to the exit;
- spans and metric points that did not reach the OTLP endpoint (failed exports, queue
  overflow, still queued at the deadline) are counted: ``wan.telemetry.spans_dropped``,
  ``wan.telemetry.metric_points_dropped`` and one warning naming both;
- Prometheus: a ``PrometheusMetricReader`` served on ``--prometheus-port`` when asked.

Providers are not installed globally: ``wan-otel run`` passes them to ``instrument``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Sampler

from wan_otel import semconv
from wan_otel.errors import WanOtelError
from wan_otel.pipeline.instrumentation.generation_metrics import METER_NAME
from wan_otel.pipeline.runner.otlp_loss import (
    CountingMetricExporter,
    CountingSpanExporter,
    CountingSpanProcessor,
    TelemetryLoss,
    bounded,
    loss_counters,
    shutdown_batch,
)
from wan_otel.store.run_store import RunStore
from wan_otel.store.span_exporter import RunStoreSpanExporter

_log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "wan-otel"
OTLP_TIMEOUT_S = 5.0
"""Per-request OTLP timeout unless the standard variables set one (the SDK's default is 10)."""
SHUTDOWN_TIMEOUT_S = 2.0
"""Longest wait for the exporters at the end of a run (all of them, together)."""
METRICS_SHARE_S = 0.3
"""Of the deadline, what the metric readers' last collection and export get at least."""
STORE_QUEUE_SIZE = 65536
"""The store's span queue (a failed run's last spans come at once)."""
STORE_DELAY_MS = 500
"""How long a span waits before the store writes it (what a SIGKILL can lose)."""

_HISTOGRAMS = {
    semconv.METRIC_GENERATION_DURATION: semconv.DURATION_BUCKETS_S,
    semconv.METRIC_STAGE_DURATION: semconv.DURATION_BUCKETS_S,
    semconv.METRIC_STEP_DURATION: semconv.DURATION_BUCKETS_S,
    semconv.METRIC_COMM_DURATION: semconv.DURATION_BUCKETS_S,
    semconv.METRIC_WAIT_DURATION: semconv.DURATION_BUCKETS_S,
    semconv.METRIC_GENERATION_ENERGY: semconv.ENERGY_BUCKETS_J,
}
"""Bucket bounds pinned by views too, for SDKs that ignore the instruments' advice."""


@dataclass
class TelemetryConfig:
    store: RunStore | Path | None
    store_writer: str | None = None
    """This process's name in the run folder (``rank1``...: the other ranks of a run)."""
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
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    store_processor: SpanProcessor | None = None
    otlp_processor: SpanProcessor | None = None
    otlp_counting: CountingSpanProcessor | None = None
    otlp_exporter: CountingSpanExporter | None = None
    otlp_endpoint: str | None = None
    otlp_metrics: CountingMetricExporter | None = None
    prometheus_server: Any = None
    prometheus_port: int | None = None
    shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def flush_store(self) -> None:
        if self.store_processor is not None:
            self.store_processor.force_flush()

    def shutdown(self) -> TelemetryLoss:
        """Flush the store, stop every exporter under one deadline, count what was lost."""
        loss = TelemetryLoss(otlp_endpoint=self.otlp_endpoint)
        if self.store_processor is not None:
            self.store_processor.force_flush()
            self.store_processor.shutdown()
        deadline = time.monotonic() + self.shutdown_timeout_s
        processor, counting = self.otlp_processor, self.otlp_counting
        if processor is not None and counting is not None:
            # Spans get the deadline less the metrics' share.
            timeout_s = max(0.0, self.shutdown_timeout_s - METRICS_SHARE_S)
            bounded([lambda: shutdown_batch(processor, timeout_s)], deadline - METRICS_SHARE_S)
            delivered = self.otlp_exporter.delivered if self.otlp_exporter is not None else 0
            loss.dropped_spans = max(0, counting.submitted - delivered)
            counting.dropped_at_end = loss.dropped_spans  # the counter's last value
        # The metric readers' last collection and export, in what is left (at least their share).
        end = max(deadline, time.monotonic() + METRICS_SHARE_S)
        remaining_ms = int((end - time.monotonic()) * 1000)
        tasks: list[Callable[[], Any]] = [lambda: self.meter_provider.shutdown(remaining_ms)]
        bounded([*tasks, *self._closers], end)
        if self.otlp_metrics is not None:
            loss.dropped_metric_points = self.otlp_metrics.lost_points
        if loss.dropped is not None:
            _log.warning(
                "%s could not be delivered to the OTLP endpoint %s%s",
                loss.dropped,
                self.otlp_endpoint,
                " (the local run store has the spans)" if self.store_processor is not None else "",
            )
        return loss


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


def _metric_reader() -> tuple[MetricReader, CountingMetricExporter]:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    _check_protocol("METRICS")
    timeout = _timeout("METRICS")
    exporter = CountingMetricExporter(OTLPMetricExporter(timeout=timeout))
    interval = int(_env("OTEL_METRIC_EXPORT_INTERVAL") or 60000)
    return exporter_reader(exporter, interval, timeout), exporter


def exporter_reader(
    exporter: MetricExporter, interval_ms: int, timeout_s: float | None
) -> MetricReader:
    return PeriodicExportingMetricReader(
        exporter,
        export_interval_millis=interval_ms,
        export_timeout_millis=(timeout_s or OTLP_TIMEOUT_S) * 1000,
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

        try:
            server, _thread = start_http_server(config.prometheus_port, config.prometheus_addr)
        except OSError as exc:
            raise WanOtelError(
                f"--prometheus-port {config.prometheus_port}: cannot listen ({exc.strerror})"
            ) from None
        readers.append(PrometheusMetricReader())
        telemetry_kwargs["prometheus_server"] = server
        telemetry_kwargs["prometheus_port"] = server.server_address[1]
        closers.append(server.shutdown)
    otlp = _enabled("TRACES") if config.otlp is None else config.otlp
    if otlp and _enabled("METRICS"):
        reader, counting_metrics = _metric_reader()
        readers.append(reader)
        telemetry_kwargs["otlp_metrics"] = counting_metrics
    views = [
        View(instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(list(bounds)))
        for name, bounds in _HISTOGRAMS.items()
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
        store = config.store if isinstance(config.store, RunStore) else RunStore(config.store)
        processor = BatchSpanProcessor(
            RunStoreSpanExporter(store, config.store_writer),
            max_queue_size=STORE_QUEUE_SIZE,
            schedule_delay_millis=STORE_DELAY_MS,
        )
        tracer_provider.add_span_processor(processor)
        telemetry.store_processor = processor
    if otlp:
        exporter, endpoint = _span_exporter()
        counting_exporter = CountingSpanExporter(exporter)
        batch = BatchSpanProcessor(counting_exporter)
        counting = CountingSpanProcessor(batch, counting_exporter)
        tracer_provider.add_span_processor(counting)
        telemetry.otlp_processor = batch
        telemetry.otlp_counting = counting
        telemetry.otlp_exporter = counting_exporter
        telemetry.otlp_endpoint = endpoint
    for extra in config.span_processors:
        tracer_provider.add_span_processor(extra)
    loss_counters(
        meter_provider.get_meter(METER_NAME), telemetry.otlp_counting, telemetry.otlp_metrics
    )
    return telemetry
