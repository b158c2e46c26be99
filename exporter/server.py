"""The exporter's HTTP endpoints: ``/metrics`` (Prometheus text or OpenMetrics, chosen from the
``Accept`` header by prometheus_client), ``/healthz`` (the process answers) and ``/readyz``
(200 only while the backend is up and the snapshot is fresh, else 503).

A threaded WSGI server on a daemon thread; ``stop`` returns within about 0.1 s (the serve loop's
poll interval), which the SIGTERM deadline relies on.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _text() -> list[tuple[str, str]]:
    # A new list each time: wsgiref appends Content-Length to the list it is given.
    return [("Content-Type", "text/plain; charset=utf-8")]


def make_app(registry: CollectorRegistry, ready: Callable[[], bool]) -> WsgiApp:
    """The WSGI application: routes the three endpoints, 404 elsewhere."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            start_response("200 OK", _text())
            return [b"ok\n"]
        if path == "/readyz":
            if ready():
                start_response("200 OK", _text())
                return [b"ready\n"]
            start_response("503 Service Unavailable", _text())
            return [b"not ready: GPU backend down or no fresh sample\n"]
        if path == "/":
            start_response("200 OK", _text())
            return [b"wan-otel GPU exporter: /metrics /healthz /readyz\n"]
        start_response("404 Not Found", _text())
        return [b"not found\n"]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow client must not hold up exit
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line a scrape on stderr is noise


class ExporterServer:
    """Serves a WSGI app on ``host:port`` (port 0: any free port, see ``port``)."""

    def __init__(self, app: WsgiApp, host: str = "0.0.0.0", port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(_Server):
            address_family = family

        self._httpd = make_server(host, port, app, Server, _QuietHandler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="wan-otel-exporter-http",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
