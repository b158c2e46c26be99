"""HTTP endpoints over a real socket on loopback: content negotiation, health, readiness and
recovery; then the server under clients that misbehave: a full backlog, crowds, idle and slow
connections, bad requests, other methods, HEAD."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path

import pytest

from wan_otel import semconv
from wan_otel.exporter.exposition import Exposition
from wan_otel.exporter.fake import FakeBackend, FakeGpu
from wan_otel.exporter.http11 import Request, Response
from wan_otel.exporter.sampler import Sampler
from wan_otel.exporter.server import ExporterServer, ServerLimits, make_app

from .conftest import CountingChooser, ManualClock, registry_for

MakeSampler = Callable[..., tuple[Sampler, FakeBackend]]
HUGE_HEADER = b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"b" * 40000  # not even ended
GENEROUS_S = 5.0  # bounds only: a timeout under test is 0.3 s, a failure waits this long


def get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, whatever the status."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request("GET", parts.path, headers={"Accept": accept} if accept else {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        connection.close()


@contextlib.contextmanager
def running(app: Callable[[Request], Response], **limits: float) -> Iterator[ExporterServer]:
    server = ExporterServer(app, "127.0.0.1", 0, limits=ServerLimits(**limits))  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()


def connect(server: ExporterServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=GENEROUS_S)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response off a socket, and not a byte more (the next one may follow): status,
    headers (lower-case names), body."""
    reader = sock.makefile("rb", buffering=0)  # unbuffered: reads nothing past this response
    status_line = reader.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    while len(body) < int(headers.get("content-length", "0")) and (
        chunk := reader.read(int(headers["content-length"]) - len(body))
    ):
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed: EOF (or a reset) rather than our generous timeout."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


@pytest.fixture
def served(make_sampler: MakeSampler) -> Iterator[tuple[str, Sampler, FakeBackend]]:
    sampler, backend = make_sampler([FakeGpu()])
    with running(make_app(registry_for(sampler), sampler.ready)) as server:
        yield f"http://127.0.0.1:{server.port}", sampler, backend


@pytest.fixture
def app(make_sampler: MakeSampler) -> Callable[[Request], Response]:
    sampler, _ = make_sampler([FakeGpu()])
    sampler.sample_once()
    return make_app(registry_for(sampler), sampler.ready)


def test_metrics_negotiates_prometheus_text_and_openmetrics(
    served: tuple[str, Sampler, FakeBackend],
) -> None:
    url, sampler, _ = served
    sampler.sample_once()
    status, ctype, body = get(url + "/metrics")
    assert (status, ctype) == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert "# TYPE wan_gpu_sm_active_seconds_total counter" in body
    status, ctype, body = get(url + "/metrics", "application/openmetrics-text; version=1.0.0")
    assert status == 200 and ctype.startswith("application/openmetrics-text; version=1.0.0")
    assert "# UNIT wan_gpu_sm_active_seconds seconds" in body
    assert body.endswith("# EOF\n")


def test_readyz_is_503_while_nvml_fails_then_200_after_recovery(
    served: tuple[str, Sampler, FakeBackend], clock: ManualClock
) -> None:
    url, sampler, backend = served
    backend.fail_next_inits(1)
    sampler.sample_once()
    assert get(url + "/healthz")[0] == 200  # the process is alive all along
    status, _, body = get(url + "/readyz")
    assert (status, body) == (503, "not ready: GPU backend down or no fresh sample\n")
    assert f"{semconv.EXPORTER_UP} 0.0" in get(url + "/metrics")[2]

    clock.advance(1.0)  # first backoff
    sampler.sample_once()
    assert get(url + "/readyz")[:1] == (200,)
    assert f"{semconv.EXPORTER_UP} 1.0" in get(url + "/metrics")[2]

    clock.advance(sampler.stale_after_s + 0.5)  # the sampler stalls: no fresh sample
    assert get(url + "/readyz")[0] == 503


def test_unknown_paths_are_404_in_plain_text(served: tuple[str, Sampler, FakeBackend]) -> None:
    status, ctype, body = get(served[0] + "/nope")
    assert (status, ctype) == (404, "text/plain; charset=utf-8")
    assert body == "404 Not Found: try /metrics, /healthz or /readyz\n"


def test_scrapes_never_call_the_backend(served: tuple[str, Sampler, FakeBackend]) -> None:
    url, sampler, backend = served
    sampler.sample_once()
    reads = backend.read_calls
    for _ in range(5):
        assert get(url + "/metrics")[0] == 200
    assert backend.read_calls == reads == 1


def test_ten_scrapes_over_http_serve_one_encoding(
    make_sampler: MakeSampler, clock: ManualClock
) -> None:
    sampler, _ = make_sampler([FakeGpu()])
    chooser = CountingChooser()
    exposition = Exposition(registry_for(sampler), choose=chooser)
    sampler.sample_once()
    with running(make_app(exposition, sampler.ready)) as server:
        bodies = {get(f"http://127.0.0.1:{server.port}/metrics")[2] for _ in range(10)}
    assert len(bodies) == 1  # the manual clock stands still: ten identical bodies
    assert chooser.encoded["text", "wan_gpu_sm_active_seconds"] == 1


def test_gzip_when_accepted(app: Callable[[Request], Response]) -> None:
    with running(app) as server, connect(server) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n")
        status, headers, body = read_response(sock)
    assert (status, headers["content-encoding"]) == (200, "gzip")
    assert b"# TYPE wan_gpu_sm_active_seconds_total counter" in gzip.decompress(body)


def test_backlog_holds_128_connections_before_the_first_accept(
    app: Callable[[Request], Response],
) -> None:
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    if somaxconn < 128:
        pytest.skip(f"net.core.somaxconn is {somaxconn}: the kernel caps any backlog there")
    pass
    server = ExporterServer(app, "127.0.0.1", 0)  # listening, not yet accepting
    clients: list[socket.socket] = []
    try:
        # With the standard library's backlog of 5, the kernel drops the SYNs from the 7th on
        # and these connects time out instead of completing at once.
        for _ in range(128):
            clients.append(connect(server))
        server.start()
        for sock in clients:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert [read_response(sock)[0] for sock in clients] == [200] * 128
    finally:
        for sock in clients:
            sock.close()
        server.stop()


def test_200_concurrent_connections_add_no_thread(app: Callable[[Request], Response]) -> None:
    with running(app, workers=2) as server:
        threads = threading.active_count()
        clients = [connect(server) for _ in range(200)]
        try:
            for sock in clients:  # every request in flight at once: heads not yet complete
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")
            deadline = time.monotonic() + GENEROUS_S
            while server.connections < 200:
                assert time.monotonic() < deadline, server.connections
                time.sleep(0.01)
            assert threading.active_count() <= threads
            for sock in clients:
                sock.sendall(b"\r\n")
            assert {read_response(sock)[0] for sock in clients} == {200}
            assert threading.active_count() <= threads
        finally:
            for sock in clients:
                sock.close()


def test_connections_over_the_limit_are_answered_503_at_once(
    app: Callable[[Request], Response],
) -> None:
    with running(app, max_connections=3) as server:
        held = [connect(server) for _ in range(3)]
        try:
            deadline = time.monotonic() + GENEROUS_S
            while server.connections < 3:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            with connect(server) as extra:
                status, headers, body = read_response(extra)
                assert (status, headers["retry-after"]) == (503, "1")
                assert body == b"503 Service Unavailable: too many connections (limit 3); retry\n"
                assert closed_by_server(extra)
            held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")  # the held ones serve
            assert read_response(held[0])[:1] == (200,)
        finally:
            for sock in held:
                sock.close()


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout(
    app: Callable[[Request], Response],
) -> None:
    with running(app, idle_timeout_s=0.3) as server, connect(server) as sock:
        for _ in range(2):  # kept alive between requests
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(sock)[:1] == (200,)
        assert closed_by_server(sock)
        assert server.connections == 0


def test_a_connection_that_never_sends_is_closed_after_the_header_timeout(
    app: Callable[[Request], Response],
) -> None:
    with running(app, header_timeout_s=0.3) as server, connect(server) as sock:
        assert sock.recv(100) == b""  # closed without an answer: there was no request


def test_a_slow_client_is_cut_off_with_408(app: Callable[[Request], Response]) -> None:
    with running(app, header_timeout_s=0.3) as server, connect(server) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")
        reply = b""
        deadline = time.monotonic() + GENEROUS_S
        # slowloris: one more header byte every 50 ms; the deadline runs from the first byte.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while time.monotonic() < deadline:
                sock.sendall(b"X")
                time.sleep(0.05)
                sock.setblocking(False)
                try:
                    reply += sock.recv(65536)
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
                if reply:
                    break
        sock.settimeout(GENEROUS_S)
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), reply
    assert b"Content-Type: text/plain; charset=utf-8\r\n" in reply
    assert reply.endswith(b"\r\n\r\n408 Request Timeout: request head not received within 0.3 s\n")


def test_a_client_that_does_not_read_is_dropped_after_the_write_timeout(
    make_sampler: MakeSampler,
) -> None:
    def big(request: Request) -> Response:
        return Response(200, b"x" * (32 << 20))  # far more than loopback socket buffers hold

    with running(big, write_timeout_s=0.3) as server, connect(server) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        deadline = time.monotonic() + GENEROUS_S
        while server.connections:
            assert time.monotonic() < deadline, "the stalled reader was never dropped"
            time.sleep(0.05)


def test_head_answers_the_headers_of_get_without_a_body(
    app: Callable[[Request], Response],
) -> None:
    with running(app) as server:
        for path, ctype in (
            ("/metrics", "text/plain; version=0.0.4; charset=utf-8"),
            ("/healthz", "text/plain; charset=utf-8"),
        ):
            with connect(server) as sock:
                sock.sendall(
                    f"HEAD {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()
                )
                reply = b""
                while chunk := sock.recv(65536):
                    reply += chunk
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert f"Content-Type: {ctype}\r\n".encode() in head + b"\r\n"
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            assert length == len(get(f"http://127.0.0.1:{server.port}{path}")[2])
            assert body == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_are_405_in_plain_text_with_allow(
    app: Callable[[Request], Response], method: str
) -> None:
    with running(app) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=GENEROUS_S)
        try:
            connection.request(
                method, "/metrics", body=b"x=1" if method in ("POST", "PUT") else None
            )
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
    assert response.status == 405
    assert response.getheader("Allow") == "GET, HEAD"
    assert response.getheader("Content-Type") == "text/plain; charset=utf-8"
    assert body == f"405 Method Not Allowed: method {method} not allowed\n".encode()


@pytest.mark.parametrize(
    ("request_bytes", "status", "reason"),
    [
        (b"GARBAGE\r\n\r\n", 400, "malformed request line"),
        (b"GET /metrics\r\n\r\n", 400, "malformed request line"),
        (b"GET /metrics HTTP/1.1\r\n\r\n", 400, "HTTP/1.1 request without a Host header"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nBad header\r\n\r\n", 400, "malformed header line"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414, "request line longer than 8192 bytes"),
        (HUGE_HEADER, 431, "request head longer than 32768 bytes"),
        (b"GET / HTTP/3.0\r\nHost: t\r\n\r\n", 505, "HTTP/3.0 not supported; use HTTP/1.1"),
    ],
)  # fmt: skip
def test_bad_requests_get_their_status_in_plain_text_and_a_close(
    app: Callable[[Request], Response], request_bytes: bytes, status: int, reason: str
) -> None:
    with running(app) as server, connect(server) as sock:
        sock.sendall(request_bytes)
        got_status, headers, body = read_response(sock)
        phrase = HTTPStatus(status).phrase
        assert (got_status, body) == (status, f"{status} {phrase}: {reason}\n".encode())
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert headers["connection"] == "close"
        assert closed_by_server(sock)


def test_pipelined_requests_are_answered_in_order(app: Callable[[Request], Response]) -> None:
    with running(app) as server, connect(server) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        assert [read_response(sock)[0] for _ in range(3)] == [200, 404, 200]
        assert closed_by_server(sock)


def test_an_endpoint_that_fails_is_a_plain_500_and_the_server_carries_on() -> None:
    def broken(request: Request) -> Response:
        if request.path == "/boom":
            raise RuntimeError("bug")
        return Response(200, b"fine\n")

    with running(broken) as server, connect(server) as sock:
        sock.sendall(b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\nGET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock)[::2] == (
            500,
            b"500 Internal Server Error: see the exporter's log\n",
        )
        assert read_response(sock)[::2] == (200, b"fine\n")


def test_stop_returns_promptly_with_connections_in_every_state(
    app: Callable[[Request], Response],
) -> None:
    server = ExporterServer(app, "127.0.0.1", 0)
    server.start()
    clients = [connect(server) for _ in range(20)]
    try:
        clients[0].sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")  # a partial head
        clients[1].sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")  # kept alive
        read_response(clients[1])
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2.0  # generous: the SIGTERM path has 1 s in all
        assert all(closed_by_server(sock) for sock in clients)
        with pytest.raises(OSError):
            connect(server)
    finally:
        for sock in clients:
            sock.close()


@pytest.mark.parametrize(
    "limits",
    [{"workers": 0}, {"max_connections": 0}, {"idle_timeout_s": 0.0}, {"write_timeout_s": -1.0}],
)
def test_unusable_limits_are_refused(limits: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="unusable server limits"):
        ServerLimits(**limits)  # type: ignore[arg-type]
