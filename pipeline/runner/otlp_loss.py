"""What the OTLP exporters lost, counted; and shutting exporters down under one deadline.

Spans and metric points that did not reach the OTLP endpoint (failed exports, queue overflow,
exports cut off at exit) are counted by wrappers around the SDK's exporters and processors:
``wan.telemetry.spans_dropped`` and ``wan.telemetry.metric_points_dropped`` (observable
counters, read when metrics are collected) and ``TelemetryLoss`` at shutdown. Every exporter
is stopped on helper threads joined against one deadline, so a dead or hanging collector
costs the exit at most that.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.context import Context
from opentelemetry.metrics import Meter, Observation
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from wan_otel import semconv

_log = logging.getLogger(__name__)


@dataclass
class TelemetryLoss:
    """What did not reach the OTLP endpoint by the end."""

    dropped_spans: int = 0
    dropped_metric_points: int = 0
    otlp_endpoint: str | None = None

    @property
    def dropped(self) -> str | None:
        """One phrase naming what was lost, or None."""
        parts = []
        if self.dropped_spans:
            parts.append(f"{self.dropped_spans} span(s)")
        if self.dropped_metric_points:
            parts.append(f"{self.dropped_metric_points} metric point(s)")
        return " and ".join(parts) or None


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


class CountingMetricExporter(MetricExporter):
    """Counts the data points its inner exporter failed to deliver."""

    def __init__(self, inner: MetricExporter) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self.failed_points = 0
        self.pending_points = 0
        """Points of exports still under way (lost if the process exits now)."""
        self._lock = threading.Lock()

    @property
    def lost_points(self) -> int:
        with self._lock:
            return self.failed_points + self.pending_points

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        points = _points(metrics_data)
        with self._lock:
            self.pending_points += points
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:
            _log.debug("OTLP metric export raised: %s", exc)
            result = MetricExportResult.FAILURE
        with self._lock:
            self.pending_points -= points
            if result is not MetricExportResult.SUCCESS:
                self.failed_points += points
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def _points(data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    )


class CountingSpanProcessor(SpanProcessor):
    """Counts the spans handed to its inner processor."""

    def __init__(self, inner: SpanProcessor, exporter: CountingSpanExporter) -> None:
        self.inner = inner
        self.exporter = exporter
        self.submitted = 0
        self.dropped_at_end: int | None = None

    def dropped(self) -> int:
        """Spans lost so far: failed exports, and at the end everything not delivered."""
        if self.dropped_at_end is not None:
            return self.dropped_at_end
        return self.exporter.failed

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.submitted += 1
        self.inner.on_end(span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def shutdown_batch(processor: SpanProcessor, timeout_s: float) -> None:
    """``BatchSpanProcessor.shutdown()`` waits up to 30 s for its worker; its inner batch
    processor takes the bound we want (guarded: a private attribute of the SDK)."""
    inner = getattr(processor, "_batch_processor", None)
    if inner is not None and "timeout_millis" in inspect.signature(inner.shutdown).parameters:
        inner.shutdown(timeout_millis=int(timeout_s * 1000))
    else:
        processor.shutdown()


def bounded(tasks: list[Callable[[], Any]], deadline: float) -> None:
    """Run ``tasks`` on daemon threads at once; stop waiting at ``deadline`` (the process may
    exit with one still blocked on a dead network peer)."""
    threads = [
        threading.Thread(target=_quiet(task), name="wan-otel-shutdown", daemon=True)
        for task in tasks
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        _log.warning("telemetry shutdown: an exporter is still waiting at the deadline; exiting")


def _quiet(fn: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception as exc:
            _log.debug("telemetry shutdown: %s", exc)

    return run


def loss_counters(
    meter: Meter, counting: CountingSpanProcessor | None, metrics: CountingMetricExporter | None
) -> None:
    """Counters of what the OTLP exporters lost, read when the metrics are collected."""
    if counting is not None:
        meter.create_observable_counter(
            semconv.METRIC_SPANS_DROPPED,
            callbacks=[lambda options: [Observation(counting.dropped())]],
            unit="{span}",
            description="Spans not delivered",
        )
    if metrics is not None:
        meter.create_observable_counter(
            semconv.METRIC_METRIC_POINTS_DROPPED,
            callbacks=[lambda options: [Observation(metrics.failed_points)]],
            unit="{point}",
            description="Metric points not delivered",
        )
