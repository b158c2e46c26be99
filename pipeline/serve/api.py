"""The HTTP layer: routes, request bodies, JSON and file answers, errors, request counts.

Stdlib ``http.server`` (HTTP/1.1 keep-alive, a thread per connection): the heavy work is on
the worker thread, a handler only validates, queues and reads state. Routes::

    POST   /v1/videos                  queue a generation            202 (400 429 503)
    GET    /v1/videos                  recent jobs, newest first     200
    GET    /v1/videos/{id}[?wait=S]    a job (long poll up to S s)   200 (404)
    GET    /v1/videos/{id}/content     the mp4                       200 (404 409)
    DELETE /v1/videos/{id}             cancel                        200 202 (404 409)
    GET    /healthz /readyz /metrics   probes and Prometheus
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from wan_otel import semconv
from wan_otel.pipeline.serve.errors import ApiError
from wan_otel.pipeline.serve.server_metrics import ServerMetrics
from wan_otel.pipeline.serve.service import Service

_log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest request body: a 10 MiB image, base64-encoded, and the rest."""
MAX_WAIT_S = 60.0
"""Longest long poll (``?wait=``)."""

Answer = tuple[int, dict[str, str], bytes]
_ID = r"(?P<id>[A-Za-z0-9][A-Za-z0-9._-]{0,127})"


class ApiServer(ThreadingHTTPServer):
    """The listening socket and what its handlers reach."""

    daemon_threads = True  # a slow or idle keep-alive client must not hold up exit
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        service: Service,
        registry: CollectorRegistry,
        metrics: ServerMetrics,
        ready: Callable[[], str | None],
    ) -> None:
        super().__init__(address, Handler)
        self.service = service
        self.registry = registry
        self.metrics = metrics
        self.ready = ready
        """None when ready, else why not."""


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Answer:
    body = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    return status, {"Content-Type": "application/json", **(headers or {})}, body


def _text(status: int, text: str) -> Answer:
    return status, {"Content-Type": "text/plain; charset=utf-8"}, text.encode()


def _job_headers(record: dict[str, Any]) -> dict[str, str]:
    return {
        semconv.HEADER_RUN_ID: str(record["id"]),
        semconv.HEADER_TRACE_ID: str(record["trace_id"]),
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm the second waits for the
    # client's delayed ACK of the first: 40 ms a response on keep-alive connections.
    disable_nagle_algorithm = True
    server: ApiServer
    _body_read = False

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s " + format, self.address_string(), *args)

    # -- dispatch -----------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        route, status = "other", 500
        self._body_read = False
        try:
            route, operation, params = self._route(method, url.path)
            answer = operation(self, params, parse_qs(url.query))
            if answer is None:  # a file was streamed
                status = 200
                return
            status, headers, body = answer
        except ApiError as exc:
            status, headers, body = _json(exc.status, exc.body(), exc.headers)
        except Exception:
            _log.exception("%s %s failed", method, url.path)
            error = ApiError(500, "internal error; see the server log", code="internal_error")
            status, headers, body = _json(500, error.body())
        finally:
            self.server.metrics.answered(method, route, status)
        sent_body = self.headers.get("Content-Length", "0") != "0"
        if (sent_body or "Transfer-Encoding" in self.headers) and not self._body_read:
            # An unread body would be taken for the next request: this connection ends here.
            self.close_connection = True
            headers["Connection"] = "close"
        self._send(status, headers, body)

    def _route(self, method: str, path: str) -> tuple[str, Operation, dict[str, str]]:
        allowed = []
        for verb, pattern, route, operation in ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if verb == method:
                return route, operation, match.groupdict()
            allowed.append(verb)
        if allowed:
            raise ApiError(
                405,
                f"{method} is not allowed on {path}; allowed: {', '.join(allowed)}",
                code="method_not_allowed",
                headers={"Allow": ", ".join(allowed)},
            )
        raise ApiError(404, f"no route {path}; see /v1/videos", code="not_found")

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise ApiError(411, "a Content-Length header is required", code="length_required")
        if int(length) > MAX_BODY_BYTES:
            raise ApiError(413, f"body over {MAX_BODY_BYTES} bytes", code="body_too_large")
        if self.headers.get_content_type() == "multipart/form-data":
            raise ApiError(
                415,
                "send a JSON body (input_reference as a data URL); multipart is not supported",
                code="unsupported_media_type",
            )
        raw = self.rfile.read(int(length))
        self._body_read = True
        return raw

    # -- routes -------------------------------------------------------------------------------

    def _create(self, params: dict[str, str], query: dict[str, list[str]]) -> Answer:
        raw = self._body()
        record = self.server.service.submit(raw, dict(self.headers.items()))
        headers = {**_job_headers(record), "Location": f"/v1/videos/{record['id']}"}
        return _json(HTTPStatus.ACCEPTED, record, headers)

    def _list(self, params: dict[str, str], query: dict[str, list[str]]) -> Answer:
        limit = _query_number(query, "limit", 20.0, 1.0, 100.0)
        after = query.get("after", [None])[-1]
        return _json(200, self.server.service.list(int(limit), after))

    def _retrieve(self, params: dict[str, str], query: dict[str, list[str]]) -> Answer:
        wait = _query_number(query, "wait", 0.0, 0.0, MAX_WAIT_S)
        record = self.server.service.view(params["id"], wait)
        return _json(200, record, _job_headers(record))

    def _cancel(self, params: dict[str, str], query: dict[str, list[str]]) -> Answer:
        status, record = self.server.service.cancel(params["id"])
        return _json(status, record, _job_headers(record))

    def _content(self, params: dict[str, str], query: dict[str, list[str]]) -> Answer | None:
        variant = query.get("variant", ["video"])[-1]
        if variant != "video":
            raise ApiError(
                400, f"variant {variant!r}: only 'video' exists here", code="invalid_value",
                param="variant",
            )  # fmt: skip
        path, record = self.server.service.content(params["id"])
        with path.open("rb") as handle:
            size = path.stat().st_size
            self.send_response(200)
            for key, value in _job_headers(record).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(size))
            self.send_header("Content-Disposition", f'inline; filename="{record["id"]}.mp4"')
            self.end_headers()
            try:
                shutil.copyfileobj(handle, self.wfile)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client left mid-video
        return None

    def _healthz(self, params: dict[str, str], query: dict[str, list[str]]) -> Answer:
        return _text(200, "ok\n")

    def _readyz(self, params: dict[str, str], query: dict[str, list[str]]) -> Answer:
        why = self.server.ready()
        return _text(200, "ready\n") if why is None else _text(503, f"not ready: {why}\n")

    def _metrics(self, params: dict[str, str], query: dict[str, list[str]]) -> Answer:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        return 200, {"Content-Type": content_type}, encoder(self.server.registry)


Operation = Callable[[Handler, dict[str, str], dict[str, list[str]]], Answer | None]
"""A route's handler: path parameters and query in, an answer out (None: a file was streamed)."""
ROUTES: tuple[tuple[str, re.Pattern[str], str, Operation], ...] = (
    ("POST", re.compile(r"/v1/videos/?"), "/v1/videos", Handler._create),
    ("GET", re.compile(r"/v1/videos/?"), "/v1/videos", Handler._list),
    ("GET", re.compile(rf"/v1/videos/{_ID}"), "/v1/videos/{id}", Handler._retrieve),
    ("DELETE", re.compile(rf"/v1/videos/{_ID}"), "/v1/videos/{id}", Handler._cancel),
    ("GET", re.compile(rf"/v1/videos/{_ID}/content"), "/v1/videos/{id}/content", Handler._content),
    ("GET", re.compile(r"/healthz"), "/healthz", Handler._healthz),
    ("GET", re.compile(r"/readyz"), "/readyz", Handler._readyz),
    ("GET", re.compile(r"/metrics"), "/metrics", Handler._metrics),
)
"""Method, path pattern, route label (the request counter's), operation."""


def _query_number(
    query: dict[str, list[str]], name: str, default: float, lo: float, hi: float
) -> float:
    values = query.get(name)
    if not values:
        return default
    try:
        value = float(values[-1])
    except ValueError:
        value = float("nan")
    if not lo <= value <= hi:
        raise ApiError(
            400, f"{name}: {values[-1]!r}; allowed {lo:g} to {hi:g}", code="invalid_value",
            param=name,
        )  # fmt: skip
    return value
