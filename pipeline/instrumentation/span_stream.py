"""Span streaming: a generation's records become OTel spans while it runs, off its thread.

A process-wide daemon thread (``wan-otel-spans``) visits every running generation each
``INTERVAL_S``: a record's span starts once its parent's has and the timeline has resolved its
start mark (the GPU has passed it); it ends once the record is closed for good, every child's
span has ended and its end mark is resolved. Spans carry explicit start and end times, so their
windows are GPU time; nothing on the generation's thread waits for the GPU or does I/O. With
the run store's span processor behind it, a run killed mid-way (SIGKILL, the OOM killer)
keeps every span that ended up to about a second before the kill. ``finish`` (on the
generation's thread, after its one synchronization) ends everything that is left.

Every span carries the run id and the timing source; allocator figures where a memory window
was kept. A child's start is clamped to its parent's, and a parent's end stretched over its
children's (CUDA events on two streams can straddle a boundary by microseconds), so the tree
the report reads is always well nested. Depends on the OTel API.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, Tracer

from wan_otel import semconv
from wan_otel.pipeline.instrumentation.generation import AttributeValue, Generation, Record
from wan_otel.pipeline.instrumentation.record_values import (
    collective_figures,
    deferred_values,
    read_tensors,
    ready_value,
)

_log = logging.getLogger(__name__)

INTERVAL_S = 0.5
"""How often running generations are visited (a killed run loses at most about this much,
plus the store processor's own delay)."""

RootHook = Callable[[trace.Span], None]
"""Called with the live root span after its children ended, before it ends."""
RootScope = Callable[[], contextlib.AbstractContextManager[Any]]
"""Entered around the root span's start (a server mints the trace id it promised)."""


@dataclass
class _Live:
    span: trace.Span
    start_ns: int
    end_ns: int | None = None


class SpanStream:
    """The spans of one generation, written through ``tracer`` as the run goes.

    ``context``: the root's parent (a caller's span; none: the root starts a trace).
    ``links``: links of the root span (a server's runs link to its start-up trace).
    ``attributes``: added to every span (the rank of a multi-GPU run).
    ``on_root``: adds spans that are not records under the root (a server's queue wait),
    before the root ends, so that the run store sees the root last. ``root_scope``: entered
    around the root's start. ``root_context`` is the root span's context once it started.
    """

    def __init__(
        self,
        tracer: Tracer,
        context: Context | None = None,
        *,
        links: Sequence[Link] = (),
        attributes: Mapping[str, AttributeValue] | None = None,
        on_root: RootHook | None = None,
        root_scope: RootScope | None = None,
    ) -> None:
        self._tracer = tracer
        self._context = context
        self._links = tuple(links)
        self._extra = dict(attributes or {})
        self._on_root = on_root
        self._root_scope = root_scope
        self._live: dict[Record, _Live] = {}
        self._ended: set[Record] = set()
        self._lock = threading.Lock()
        self._generation: Generation | None = None
        self.root_context: SpanContext | None = None

    # -- the generation's side ------------------------------------------------------------

    def attach(self, generation: Generation) -> None:
        self._generation = generation
        _flusher().add(self)

    def finish(self, generation: Generation) -> None:
        """End every span that is left (the timeline is resolved by now)."""
        _flusher().discard(self)
        read_tensors(generation.records)
        self.pump(final=True)

    # -- the stream -----------------------------------------------------------------------

    def pump(self, final: bool = False) -> None:
        """Start and end what can be started and ended now."""
        generation = self._generation
        if generation is None:
            return
        with self._lock:
            common: dict[str, AttributeValue] = {
                semconv.RUN_ID: generation.run_id,
                semconv.TIMING_SOURCE: generation.timeline.source,
                **self._extra,
            }
            for record in self._ready_to_start(generation, final):
                generation.guard.call(self._start, generation, record, common)
            for record in self._ready_to_end(generation, final):
                # One record our code cannot describe must not hold back the others' spans.
                if generation.guard.call(self._end, generation, record, common) is None:
                    self._end_plainly(record)

    def _ready_to_start(self, generation: Generation, final: bool) -> list[Record]:
        with generation.lock:
            candidates = [
                r
                for r in generation.records
                if r not in self._live
                and not r.merged
                and not (r.provisional and r.end is None and not r.children)
                and not (r.merge_key is not None and r.parent is not None and r.parent.end is None)
            ]
        # Parents come before their children in ``records``: one pass starts a whole chain.
        ready = []
        started = set(self._live)
        for record in candidates:
            if record.parent is not None and record.parent not in started:
                continue
            if not final and generation.timeline.resolved(record.start) is None:
                continue
            ready.append(record)
            started.add(record)
        return ready

    def _ready_to_end(self, generation: Generation, final: bool) -> list[Record]:
        with generation.lock:
            candidates = [
                (r, list(r.children))
                for r in reversed(generation.records)
                if r in self._live and r not in self._ended and r.end is not None and r.sealed
            ]
        ready = []
        ended = set(self._ended)
        for record, children in candidates:
            if any(c not in ended for c in children if not c.merged):
                continue
            if not final and not self._resolvable(generation, record):
                continue
            ready.append(record)
            ended.add(record)
        return ready

    def _resolvable(self, generation: Generation, record: Record) -> bool:
        ends: list[int | None] = [m for pair in record.intervals or () for m in pair]
        marks = ends or [record.end]
        if any(m is None or generation.timeline.resolved(m) is None for m in marks):
            return False
        return all(ready_value(v) for v in record.deferred.values())

    def _start(self, generation: Generation, record: Record, common: dict[str, Any]) -> None:
        time_ns = generation.timeline.time_ns
        start = time_ns(record.start)
        parent = self._live.get(record.parent) if record.parent is not None else None
        if parent is not None:
            start = max(start, parent.start_ns)
        attrs = {**record.attributes, **common}
        if parent is not None:
            context = trace.set_span_in_context(parent.span)
            span = self._tracer.start_span(
                record.name, context, SpanKind.INTERNAL, attrs, start_time=start
            )
        else:
            with self._root_scope() if self._root_scope else contextlib.nullcontext():
                span = self._tracer.start_span(
                    record.name, self._context, SpanKind.INTERNAL, attrs, self._links, start
                )
            self.root_context = span.get_span_context()
        self._live[record] = _Live(span, start)

    def _end(self, generation: Generation, record: Record, common: dict[str, Any]) -> bool:
        live = self._live[record]
        end = max(live.start_ns, _end_ns(generation, record))
        for child in record.children:
            child_live = self._live.get(child)
            if child_live is not None and child_live.end_ns is not None:
                end = max(end, child_live.end_ns)
        attrs: dict[str, Any] = {**record.attributes, **deferred_values(record)}
        attrs.update(collective_figures(generation, record, end - live.start_ns))
        if record.memory is not None:
            attrs.update(record.memory.attributes())
        if record.error_type is not None:
            attrs[semconv.ERROR_TYPE] = record.error_type
        attrs.update(common)
        span = live.span
        span.set_attributes(attrs)
        if record.error_type is not None:
            message = (
                f"{record.error_type}: {record.error_message}" if record.error_message else None
            )
            span.set_status(Status(StatusCode.ERROR, message or record.error_type))
        if record.parent is None and self._on_root is not None:
            try:
                self._on_root(span)
            except Exception:  # the application's hook: the run's own spans must still end
                _log.warning("span hook failed; the root span is emitted without it", exc_info=True)
        span.end(end_time=end)
        live.end_ns = end
        self._ended.add(record)
        return True

    def _end_plainly(self, record: Record) -> None:
        """End a span whose figures failed (counted and logged by the guard) as it started."""
        live = self._live[record]
        if record in self._ended:
            return
        live.span.end(end_time=live.start_ns)
        live.end_ns = live.start_ns
        self._ended.add(record)


def _end_ns(generation: Generation, record: Record) -> int:
    time_ns = generation.timeline.time_ns
    start = time_ns(record.start)
    if record.intervals:
        return start + sum(max(0, time_ns(e) - time_ns(s)) for s, e in record.intervals)
    return time_ns(record.end if record.end is not None else record.start)


class _Flusher:
    """The one background thread that pumps every running generation's stream."""

    def __init__(self) -> None:
        self._streams: weakref.WeakSet[SpanStream] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, stream: SpanStream) -> None:
        with self._lock:
            self._streams.add(stream)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="wan-otel-spans", daemon=True
                )
                self._thread.start()

    def discard(self, stream: SpanStream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def _run(self) -> None:
        while True:
            self._wake.wait(INTERVAL_S)
            with self._lock:
                streams = list(self._streams)
            for stream in streams:
                try:
                    stream.pump()
                except Exception:  # our bug must not kill the thread that writes every run
                    _log.warning("span stream failed; spans follow at the run's end", exc_info=True)


_FLUSHER: _Flusher | None = None
_FLUSHER_LOCK = threading.Lock()


def _flusher() -> _Flusher:
    global _FLUSHER
    with _FLUSHER_LOCK:
        if _FLUSHER is None:
            _FLUSHER = _Flusher()
        return _FLUSHER
