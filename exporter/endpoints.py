"""The exporter's endpoints: ``/metrics`` (Prometheus text or OpenMetrics, from the ``Accept``
header as prometheus_client chooses; gzip when accepted), ``/healthz`` (the process answers),
``/readyz`` (200 only while the backend is up and the snapshot is fresh, else 503) and ``/``.

Everything else is 404; every answer but ``/metrics`` is one line of plain text.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.registry import Collector

from wan_otel.exporter.exposition import Exposition
from wan_otel.exporter.http11 import Request, Response

App = Callable[[Request], Response]


def make_app(metrics: Collector | Exposition, ready: Callable[[], bool]) -> App:
    """The endpoints over ``metrics`` (a registry, or an ``Exposition`` of one that the caller
    also prepares after each sample)."""
    exposition = metrics if isinstance(metrics, Exposition) else Exposition(metrics)

    def app(request: Request) -> Response:
        if request.path == "/metrics":
            rendered = exposition.render(
                request.header("accept"), request.header("accept-encoding")
            )
            headers = [("Vary", "Accept, Accept-Encoding")]
            if rendered.gzipped:
                headers.append(("Content-Encoding", "gzip"))
            return Response(200, rendered.body, headers, rendered.content_type)
        if request.path == "/healthz":
            return Response(200, b"ok\n")
        if request.path == "/readyz":
            if ready():
                return Response(200, b"ready\n")
            return Response(503, b"not ready: GPU backend down or no fresh sample\n")
        if request.path == "/":
            return Response(200, b"wan-otel GPU exporter: /metrics /healthz /readyz\n")
        return Response(404, b"404 Not Found: try /metrics, /healthz or /readyz\n")

    return app
