"""Trace context of served jobs: the HTTP server spans (OpenTelemetry's ASGI
instrumentation), the request's span as the parent of its run's root, the queue-wait span and
the link to the start-up trace.

The ASGI middleware reads a request's ``traceparent`` (the configured propagators) and opens
the request's server span under it. A job's run starts long after its ``POST`` was answered,
so the job carries that span's context through the queue, and the run's root span becomes
its child: caller -> ``POST /v1/videos`` -> ``wan.pipeline.generate``. Without any span (the
instrumentation off), the server picks the trace id at once, answers it, and
``runner.trace_ids.MintedTraceIds`` hands it to the SDK when the root span starts.

HTTP spans go to a tracer provider of their own: to OTLP and the extra processors, never to
the run store (a poll is not part of any run).
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace import Link, SpanContext, SpanKind, Tracer

from wan_otel import semconv
from wan_otel.pipeline.instrumentation.span_stream import RootHook
from wan_otel.pipeline.runner.telemetry import Telemetry, resource
from wan_otel.pipeline.runner.trace_ids import MintedTraceIds
from wan_otel.pipeline.serve.asgi import Asgi, Receive, Scope, Send
from wan_otel.pipeline.serve.server_metrics import OTHER_METHOD, known_method

SANITIZED_HEADERS = ["authorization", "cookie", "set-cookie", "x-api-key"]
"""Never recorded, even when ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*`` asks for them."""
UNTRACED_PATHS = ("/healthz$", "/health$", "/readyz$", "/metrics$")
"""Probes and scrapes make no spans (``OTEL_PYTHON_ASGI_EXCLUDED_URLS`` adds to these)."""


def excluded_urls() -> str:
    """Patterns of untraced URLs: ours, and the standard variables' (comma-separated)."""
    env = os.environ.get("OTEL_PYTHON_ASGI_EXCLUDED_URLS") or os.environ.get(
        "OTEL_PYTHON_EXCLUDED_URLS", ""
    )
    return ",".join([*UNTRACED_PATHS, *(p.strip() for p in env.split(",") if p.strip())])


def request_context() -> tuple[Context | None, int | None]:
    """The current request's context and trace id (its server span, under the caller's
    ``traceparent`` if any); (None, None) without a valid span."""
    current = otel_context.get_current()
    span_context = trace.get_current_span(current).get_span_context()
    if not span_context.is_valid:
        return None, None
    return current, span_context.trace_id


def trace_id_hex(trace_id: int) -> str:
    return f"{trace_id:032x}"


def http_tracer_provider(
    telemetry: Telemetry, extra: Sequence[SpanProcessor] = ()
) -> TracerProvider:
    """The HTTP spans' provider: same resource, the SDK's sampler (``OTEL_TRACES_SAMPLER``,
    parent-based by default), the OTLP processor if there is one, and ``extra``."""
    # Ids from the operating system's randomness, as the runs' (``MintedTraceIds``).
    provider = TracerProvider(
        resource=resource(), shutdown_on_exit=False, id_generator=MintedTraceIds()
    )
    if telemetry.otlp_counting is not None:  # shut down with the run spans' provider
        provider.add_span_processor(telemetry.otlp_counting)
    for processor in extra:
        provider.add_span_processor(processor)
    return provider


def span_details(
    route_of: Callable[[MutableMapping[str, Any]], str],
) -> Callable[[MutableMapping[str, Any]], tuple[str, dict[str, Any]]]:
    """Server span names by route template (``GET /v1/videos/{video_id}``), never by id."""

    def details(scope: MutableMapping[str, Any]) -> tuple[str, dict[str, Any]]:
        route = route_of(scope)
        method = known_method(scope)
        return f"{'HTTP' if method == OTHER_METHOD else method} {route}", {
            semconv.HTTP_ROUTE: route
        }

    return details


ORIGINAL_HEADERS = "wan_otel.original_headers"
POLL_ROUTE = "/v1/videos/{video_id}"


def shielded(
    instrumented: Callable[[Asgi], Asgi], app: Asgi, untraced: Callable[[Scope], bool]
) -> Asgi:
    """``instrumented(app)``, except for requests ``untraced`` picks (they go to ``app``
    straight), with header values that are not UTF-8 replaced in the copy of the scope the
    instrumentation reads, and restored for ``app``. OpenTelemetry's ASGI middleware decodes
    headers as UTF-8, else as ``unicode_escape``, which raises on some bytes (a trailing
    backslash): one such header would turn any request into a 500."""

    async def restore(scope: Scope, receive: Receive, send: Send) -> None:
        original = scope.pop(ORIGINAL_HEADERS, None)
        if original is not None:
            scope["headers"] = original
        await app(scope, receive, send)

    traced = instrumented(restore)

    async def shield(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or untraced(scope):
            await app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        if not all(_utf8(v) and _utf8(k) for k, v in headers):
            clean = [(_clean(k), _clean(v)) for k, v in headers]
            scope = {**scope, "headers": clean, ORIGINAL_HEADERS: list(headers)}
        await traced(scope, receive, send)

    return shield


def polls(route_of: Callable[[Scope], str]) -> Callable[[Scope], bool]:
    """``GET /v1/videos/{video_id}``: a client polls it every few hundred milliseconds while
    its job runs. A span each would bury the job's trace (the POST and its run) under polls,
    and cost each poll a quarter of a millisecond; they are counted in the request metric."""

    def is_poll(scope: Scope) -> bool:
        return scope.get("method") == "GET" and route_of(scope) == POLL_ROUTE

    return is_poll


def _utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _clean(value: bytes) -> bytes:
    return value.decode("utf-8", "replace").encode("utf-8")


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
