"""Pipeline test fixtures: in-memory span and metric backends, and the tiny Wan2.2 pipeline.

Providers are created per test and passed in (no globals). The tiny pipeline is built from
configs in code on the CPU, like ``wan-otel run --preset tiny``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from tests.pipeline.helpers import build_tiny

torch.set_num_threads(2)


@dataclass
class SpanBackend:
    provider: TracerProvider
    exporter: InMemorySpanExporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def spans() -> Iterator[SpanBackend]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield SpanBackend(provider, exporter)
    provider.shutdown()


@dataclass
class MetricBackend:
    provider: MeterProvider
    reader: InMemoryMetricReader

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        if data is None:
            return found
        for resource_metrics in data.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found


@pytest.fixture
def metrics() -> Iterator[MetricBackend]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield MetricBackend(provider, reader)
    provider.shutdown()


@pytest.fixture
def tiny_pipe() -> Any:
    return build_tiny()


@pytest.fixture(autouse=True)
def _uninstrument_leftovers() -> Iterator[None]:
    """Tests leave no instrumented pipeline behind (the class-level ``__call__`` wrapper is
    removed with the last instrumented instance)."""
    yield
    from wan_otel.pipeline import uninstrument
    from wan_otel.pipeline.instrumentation.wrappers import _CALL_PATCHES

    for patch in list(_CALL_PATCHES.values()):
        for pipe in list(patch.instances):
            uninstrument(pipe)
