"""Emission: a finished generation's records become OTel spans with explicit start and end.

Runs once per generation, after the timeline is resolved. Every span carries the run id and
the timing source; allocator figures where a memory window was kept. A child's window is
clamped into its parent's (CUDA event times on several streams can straddle a boundary by
microseconds), so the tree the report reads is always well nested. Depends on the OTel API.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from wan_otel import semconv
from wan_otel.pipeline.generation import MERGED_MOVES, AttributeValue, Generation, Record
from wan_otel.pipeline.timing import Timeline


class SpanEmitter:
    """The finisher that writes a generation's spans through ``tracer``."""

    def __init__(self, tracer: Tracer, context: Context | None = None) -> None:
        self._tracer = tracer
        self._context = context

    def __call__(self, generation: Generation) -> None:
        emit_spans(generation, self._tracer, self._context)


def emit_spans(generation: Generation, tracer: Tracer, context: Context | None = None) -> int:
    """Create and end one span per record, parents before children; returns the count."""
    common: dict[str, AttributeValue] = {
        semconv.RUN_ID: generation.run_id,
        semconv.TIMING_SOURCE: generation.timeline.source,
    }
    _fetch_tensors(generation.root)
    emitter = _Emitter(tracer, generation.timeline, common)
    emitter.visit(generation.root, None, context, None)
    return emitter.count


def _fetch_tensors(root: Record) -> None:
    """Replace deferred tensor values (timesteps on the GPU) by numbers, with one device copy
    per device: reading them one by one would synchronize once per step."""
    import torch

    found: dict[Any, list[tuple[Record, str, Any]]] = {}
    todo = [root]
    while todo:
        record = todo.pop()
        todo.extend(record.children)
        for key, value in record.deferred.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                found.setdefault((value.device, value.dtype), []).append((record, key, value))
    for entries in found.values():
        try:
            values = torch.stack([v.reshape(()) for _, _, v in entries]).cpu().tolist()
        except Exception:  # a poisoned CUDA context after a model error: leave them out
            for record, key, _ in entries:
                record.deferred.pop(key, None)
            continue
        for (record, key, _), number in zip(entries, values, strict=True):
            record.deferred[key] = float(number)


class _Emitter:
    def __init__(self, tracer: Tracer, timeline: Timeline, common: dict[str, AttributeValue]):
        self._tracer = tracer
        self._timeline = timeline
        self._common = common
        self.count = 0

    def _window(self, record: Record) -> tuple[int, int]:
        ns = self._timeline.time_ns
        start = ns(record.start)
        if record.intervals:
            return start, start + sum(max(0, ns(e) - ns(s)) for s, e in record.intervals)
        return start, ns(record.end if record.end is not None else record.start)

    def visit(
        self,
        record: Record,
        parent: trace.Span | None,
        context: Context | None,
        bounds: tuple[int, int] | None,
    ) -> None:
        start, end = self._window(record)
        if bounds is not None:
            start = min(max(start, bounds[0]), bounds[1])
            end = min(max(end, start), bounds[1])
        end = max(end, start)
        attrs = dict(record.attributes)
        attrs.update(_resolve_deferred(record.deferred))
        if record.memory is not None:
            attrs.update(record.memory.attributes())
        if record.error_type is not None:
            attrs[semconv.ERROR_TYPE] = record.error_type
        attrs.update(self._common)
        ctx = trace.set_span_in_context(parent) if parent is not None else context
        span = self._tracer.start_span(
            record.name, context=ctx, kind=SpanKind.INTERNAL, attributes=attrs, start_time=start
        )
        if record.error_type is not None:
            message = (
                f"{record.error_type}: {record.error_message}" if record.error_message else None
            )
            span.set_status(Status(StatusCode.ERROR, message or record.error_type))
        for child in record.children:
            self.visit(child, span, None, (start, end))
        span.end(end_time=end)
        self.count += 1


def _resolve_deferred(deferred: dict[str, Any]) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    for key, value in deferred.items():
        if key == MERGED_MOVES:
            out[semconv.TRANSFER_MOVES] = int(value)
            continue
        scalar = _scalar(value)
        if scalar is not None:
            out[key] = scalar
    return out


def _scalar(value: Any) -> AttributeValue | None:
    """A number from a tensor or a Python value; tensors are read here, after the run's one
    synchronization, never inside the loop."""
    if isinstance(value, bool | int | float | str):
        return value
    item = getattr(value, "item", None)
    if item is None:
        return None
    try:
        number = item()
    except Exception:  # a multi-element tensor or a poisoned CUDA context: leave it out
        return None
    return float(number) if isinstance(number, float | int) else None
