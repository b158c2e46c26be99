"""Trace context of served jobs: the caller's W3C ``traceparent``, the trace id promised in
the ``202`` answer, the queue-wait span and the link to the start-up trace.

The trace of a job is known when it is queued, long before its spans exist (they are written
when the run ends). With a ``traceparent`` it is the caller's trace and the caller's span is
the parent of the run's root. Without one the server picks the trace id at once, answers it,
and ``MintedTraceIds`` hands it to the SDK when the root span starts, so the run's root is a
trace root with the promised id.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Link, SpanContext, SpanKind, Tracer

from wan_otel import semconv
from wan_otel.pipeline.instrumentation.span_stream import RootHook


def incoming_context(headers: Mapping[str, str]) -> tuple[Context | None, int | None]:
    """The caller's context and trace id from ``traceparent`` (the configured propagators,
    W3C trace context by default); (None, None) when absent or malformed."""
    carrier = {key.lower(): value for key, value in headers.items()}
    context = propagate.extract(carrier)
    span_context = trace.get_current_span(context).get_span_context()
    if not span_context.is_valid:
        return None, None
    return context, span_context.trace_id


def trace_id_hex(trace_id: int) -> str:
    return f"{trace_id:032x}"


class MintedTraceIds(RandomIdGenerator):
    """Random ids, except that a trace id minted earlier is handed out to the next trace root
    started on the thread inside ``minting``."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def new_trace_id(self) -> int:
        return super().generate_trace_id()

    @contextlib.contextmanager
    def minting(self, trace_id: int | None) -> Iterator[None]:
        self._local.pending = trace_id
        try:
            yield
        finally:
            self._local.pending = None

    def generate_trace_id(self) -> int:
        pending = getattr(self._local, "pending", None)
        if pending is not None:
            self._local.pending = None  # one trace root per generation
            return int(pending)
        return super().generate_trace_id()


def startup_link(context: SpanContext | None, startup_run_id: str) -> list[Link]:
    """The link from a request's root span to the server's start-up run (model loading)."""
    if context is None:
        return []
    return [Link(context, {semconv.SERVER_STARTUP_RUN_ID: startup_run_id})]


def queue_wait_hook(tracer: Tracer, run_id: str, queued_ns: int, position: int) -> RootHook:
    """Emits ``wan.server.queue_wait`` under the run's root: from the request's arrival to the
    root's start (the generation's first mark)."""

    def emit(root: trace.Span) -> None:
        start_ns = getattr(root, "start_time", None) or queued_ns
        span = tracer.start_span(
            semconv.SPAN_QUEUE_WAIT,
            context=trace.set_span_in_context(root),
            kind=SpanKind.INTERNAL,
            attributes={semconv.RUN_ID: run_id, semconv.SERVER_QUEUE_POSITION: position},
            start_time=min(queued_ns, start_ns),
        )
        span.end(end_time=start_ns)

    return emit
