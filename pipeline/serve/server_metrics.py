"""OTel instruments of the server: queue wait, queue depth and capacity, jobs, HTTP requests
(counted by an ASGI middleware as each answer starts).

Depth and capacity are observable gauges read from the queue at each collection (a scrape of
``/metrics``), so they are exact whenever they are read. Labels are bounded: the model, a
job's final status, the route template (never an id), method and status code. Depends on the
OTel API only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from wan_otel import __version__, semconv
from wan_otel.pipeline.serve.asgi import Asgi, Message, Receive, Scope, Send

METER_NAME = "wan_otel.pipeline.serve"


class ServerMetrics:
    def __init__(
        self, meter_provider: MeterProvider, depth: Callable[[], int], capacity: int
    ) -> None:
        meter = meter_provider.get_meter(METER_NAME, __version__)
        self.queue_wait = meter.create_histogram(
            semconv.METRIC_SERVER_QUEUE_WAIT,
            unit="s",
            description="Time from a request's arrival to the start of its generation",
            explicit_bucket_boundaries_advisory=list(semconv.DURATION_BUCKETS_S),
        )
        self.jobs = meter.create_counter(
            semconv.METRIC_SERVER_JOBS, unit="{job}", description="Jobs that reached a final status"
        )
        self.requests = meter.create_counter(
            semconv.METRIC_SERVER_REQUESTS, unit="{request}", description="HTTP requests answered"
        )

        def observe_depth(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(depth())]

        def observe_capacity(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(capacity)]

        meter.create_observable_gauge(
            semconv.METRIC_SERVER_QUEUE_DEPTH,
            callbacks=[observe_depth],
            unit="{job}",
            description="Requests waiting (the running one not counted)",
        )
        meter.create_observable_gauge(
            semconv.METRIC_SERVER_QUEUE_CAPACITY,
            callbacks=[observe_capacity],
            unit="{job}",
            description="Most requests that may wait",
        )

    def waited(self, seconds: float, model: str) -> None:
        self.queue_wait.record(seconds, {semconv.LABEL_MODEL: model})

    def finished(self, status: str) -> None:
        self.jobs.add(1, {semconv.LABEL_JOB_STATUS: status})

    def answered(self, method: str, route: str, status: int) -> None:
        self.requests.add(
            1,
            {
                semconv.HTTP_REQUEST_METHOD: method,
                semconv.HTTP_ROUTE: route,
                semconv.HTTP_RESPONSE_STATUS_CODE: status,
            },
        )


HTTP_METHODS = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")
)
OTHER_METHOD = "_OTHER"
"""What the HTTP conventions record for a method outside the standard ones: h11 accepts any
token as a method, and a label or span name per token would be unbounded."""


def known_method(scope: Scope) -> str:
    method = str(scope.get("method", ""))
    return method if method in HTTP_METHODS else OTHER_METHOD


def counting(app: Asgi, metrics: ServerMetrics, route_of: Callable[[Scope], str]) -> Asgi:
    """``app`` with each HTTP answer counted by method, route template and status."""

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                metrics.answered(known_method(scope), route_of(scope), int(message["status"]))
            await send(message)

        await app(scope, receive, counting_send)

    return counted
