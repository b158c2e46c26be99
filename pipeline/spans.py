"""Emission: a finished generation's records become OTel spans with explicit start and end.

Runs once per generation, after the timeline is resolved. Every span carries the run id and
the timing source; allocator figures where a memory window was kept. A child's window is
clamped into its parent's (CUDA event times on several streams can straddle a boundary by
microseconds), so the tree the report reads is always well nested. Depends on the OTel API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, Tracer

from wan_otel import semconv
from wan_otel.pipeline.generation import MERGED_MOVES, AttributeValue, Generation, Record
from wan_otel.pipeline.timing import Timeline

_log = logging.getLogger(__name__)

RootHook = Callable[[trace.Span], None]
"""Called with the live root span after its children were emitted, before it ends."""


class SpanEmitter:
    """The finisher that writes a generation's spans through ``tracer``.

    ``context``: the root's parent (a caller's span; none: the root starts a trace).
    ``links``: links of the root span (a server's runs link to its start-up trace).
    ``on_root``: adds spans that are not records under the root (a server's queue wait),
    before the root ends, so that the run store sees the root last. After emission,
    ``root_context`` is the root span's context.
    """

    def __init__(
        self,
        tracer: Tracer,
        context: Context | None = None,
        *,
        links: Sequence[Link] = (),
        on_root: RootHook | None = None,
    ) -> None:
        self._tracer = tracer
        self._context = context
        self._links = tuple(links)
        self._on_root = on_root
        self.root_context: SpanContext | None = None

    def __call__(self, generation: Generation) -> None:
        emitter = _emit(generation, self._tracer, self._context, self._links, self._on_root)
        self.root_context = emitter.root_context


def emit_spans(generation: Generation, tracer: Tracer, context: Context | None = None) -> int:
    """Create and end one span per record, parents before children; returns the count."""
    return _emit(generation, tracer, context, (), None).count


def _emit(
    generation: Generation,
    tracer: Tracer,
    context: Context | None,
    links: Sequence[Link],
    on_root: RootHook | None,
) -> _Emitter:
    common: dict[str, AttributeValue] = {
        semconv.RUN_ID: generation.run_id,
        semconv.TIMING_SOURCE: generation.timeline.source,
    }
    _fetch_tensors(generation.root)
    emitter = _Emitter(tracer, generation.timeline, common, links, on_root)
    emitter.visit(generation.root, None, context, None)
    return emitter


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
    def __init__(
        self,
        tracer: Tracer,
        timeline: Timeline,
        common: dict[str, AttributeValue],
        links: Sequence[Link] = (),
        on_root: RootHook | None = None,
    ):
        self._tracer = tracer
        self._timeline = timeline
        self._common = common
        self._links = links
        self._on_root = on_root
        self.count = 0
        self.root_context: SpanContext | None = None

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
        is_root = parent is None
        span = self._tracer.start_span(
            record.name,
            context=ctx,
            kind=SpanKind.INTERNAL,
            attributes=attrs,
            start_time=start,
            links=self._links if is_root else None,
        )
        if is_root:
            self.root_context = span.get_span_context()
        if record.error_type is not None:
            message = (
                f"{record.error_type}: {record.error_message}" if record.error_message else None
            )
            span.set_status(Status(StatusCode.ERROR, message or record.error_type))
        for child in record.children:
            self.visit(child, span, None, (start, end))
        if is_root and self._on_root is not None:
            try:
                self._on_root(span)
            except Exception:  # the application's hook: the run's own spans must still end
                _log.warning("span hook failed; the root span is emitted without it", exc_info=True)
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
