"""Trace context of served jobs: the caller's W3C ``traceparent``, the trace id promised in
the ``202`` answer, the queue-wait span and the link to the start-up trace.

The trace of a job is known when it is queued, long before its spans exist. With a
``traceparent`` it is the caller's trace and the caller's span is the parent of the run's
root. Without one the server picks the trace id at once, answers it, and
``runner.trace_ids.MintedTraceIds`` hands it to the SDK when the root span starts, so the
run's root is a trace root with the promised id.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
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
