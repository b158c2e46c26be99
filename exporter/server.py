"""The exporter's HTTP server, built to hold up to a crowd of scrapers and to clients that
misbehave (the endpoints themselves are in ``endpoints``; ``make_app`` is re-exported here):

- one event-loop thread owns every socket (``selectors``): it accepts (listen backlog 1024),
  reads request heads, writes responses and enforces the timeouts, so an idle or slow
  connection costs a socket and a few hundred bytes, never a thread;
- a fixed pool of worker threads runs the endpoints; threads never grow with connections;
- at most ``max_connections`` connections: one more is answered 503 and closed at once;
- a connection gets ``header_timeout_s`` for a request head from its first byte (from accept
  for a new connection): slow clients (slowloris) are cut off with 408; a kept-alive connection
  with no request for ``idle_timeout_s`` is closed; a client that does not take its response
  within ``write_timeout_s`` is dropped;
- every error is plain text with its status (400, 404, 405 with ``Allow``, 408, 414, 431,
  500, 503, 505), never an HTML page; HEAD is answered with the headers of the GET.

``stop`` returns within about a second whatever the clients do (the SIGTERM deadline relies
on it): the loop is woken through a socket pair, and the threads are daemons.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

from wan_otel.exporter import http11
from wan_otel.exporter.endpoints import App, make_app
from wan_otel.exporter.http11 import HttpError, Request, Response

__all__ = ["App", "ExporterServer", "ServerLimits", "make_app"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerLimits:
    """How much the server takes on. Defaults fit a sidecar scraped by a few Prometheus."""

    backlog: int = 1024
    """Listen backlog (the kernel caps it at net.core.somaxconn)."""
    max_connections: int = 1024
    """Open connections; one more is answered 503 and closed (capped below RLIMIT_NOFILE)."""
    workers: int = 4
    """Threads that run the endpoints."""
    header_timeout_s: float = 10.0
    """Time for a whole request head, from its first byte (from accept on a new connection)."""
    idle_timeout_s: float = 60.0
    """Time a kept-alive connection may wait for its next request."""
    write_timeout_s: float = 10.0
    """Time for a client to take its whole response."""
    linger_s: float = 1.0
    """After a final response, time left to the client to close first, so that our close does
    not reset the connection (and lose the response) while its request is still arriving."""
    head: http11.Limits = field(default_factory=http11.Limits)

    def __post_init__(self) -> None:
        counts = (self.backlog, self.max_connections, self.workers)
        timeouts = (self.header_timeout_s, self.idle_timeout_s, self.write_timeout_s, self.linger_s)
        if min(counts) < 1 or not all(0 < t < _NEVER for t in timeouts):
            raise ValueError(f"unusable server limits: {self}")


_READ, _BUSY, _WRITE, _LINGER = "read", "busy", "write", "linger"
_SWEEP_GRANULARITY_S = 0.05  # deadlines are checked at most this often (each check is O(n))
_NEVER = float("inf")


class _Conn:
    __slots__ = ("buffer", "close_after", "deadline", "events", "fresh", "out", "sock", "state")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.state = _READ
        self.deadline = deadline
        self.out = memoryview(b"")
        self.close_after = False
        self.events = 0
        self.fresh = True  # no request served yet: timed from accept, not idle


class ExporterServer:
    """Serves ``app`` on ``host:port`` (port 0: any free port, see ``port``). Listens at once,
    so a busy port fails here (``OSError``) before anything starts."""

    def __init__(
        self,
        app: App,
        host: str = "0.0.0.0",
        port: int = 0,
        *,
        limits: ServerLimits | None = None,
    ) -> None:
        self.limits = limits or ServerLimits()
        self._app = app
        self._max_connections = min(self.limits.max_connections, _fd_budget())
        if self._max_connections < self.limits.max_connections:
            log.warning(
                "at most %d connections, not %d: the open-file limit leaves no room for more",
                self._max_connections,
                self.limits.max_connections,
            )
        self._listener = _listen(host, port, self.limits.backlog)
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ, "listener")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._conns: dict[int, _Conn] = {}  # the loop thread's only
        self._jobs: queue.SimpleQueue[tuple[_Conn, Request] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[_Conn, bytes, bool]] = queue.SimpleQueue()
        self._next_sweep = _NEVER
        self._accept_paused_until = 0.0
        self._stopping = threading.Event()
        self._logged: set[str] = set()
        self._loop = threading.Thread(target=self._run, name="wan-otel-exporter-http", daemon=True)
        self._workers = [
            threading.Thread(target=self._work, name=f"wan-otel-exporter-http-{i}", daemon=True)
            for i in range(self.limits.workers)
        ]

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def connections(self) -> int:
        """Open connections now (read from any thread; exact only between events)."""
        return len(self._conns)

    def start(self) -> None:
        for worker in self._workers:
            worker.start()
        self._loop.start()

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._wake()
        if self._loop.is_alive():
            self._loop.join(timeout=1.0)
        else:
            self._close_all()
        for _ in self._workers:
            self._jobs.put(None)
        deadline = time.monotonic() + 0.5
        for worker in self._workers:
            if worker.is_alive():  # a worker stuck in an endpoint is a daemon: not waited for
                worker.join(timeout=max(0.0, deadline - time.monotonic()))

    # -- the loop thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                timeout = None if self._next_sweep == _NEVER else max(0.0, self._next_sweep - now)
                for key, mask in self._selector.select(timeout):
                    if key.data == "listener":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._on_event(key.data, mask)
                self._finish_responses()
                if time.monotonic() >= self._next_sweep:
                    self._sweep()
        except Exception:  # a bug here would silently stop serving: say so loudly
            log.exception("exporter HTTP loop failed; /metrics is no longer served")
        finally:
            self._close_all()

    def _accept(self) -> None:
        for _ in range(64):  # a bounded batch, so that a flood cannot starve open connections
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: the listener stays readable, so stop polling it for
                    # a moment instead of spinning; pending clients wait in the backlog.
                    self._log_once("accept", "accept failed (%s); pausing accepts", exc)
                    self._selector.unregister(self._listener)
                    self._accept_paused_until = time.monotonic() + 0.1
                    self._schedule(self._accept_paused_until)
                    return
                continue  # ECONNABORTED and the like: that client is gone
            sock.setblocking(False)
            if len(self._conns) >= self._max_connections:
                _refuse(sock, self._max_connections)
                continue
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, time.monotonic() + self.limits.header_timeout_s)
            self._conns[sock.fileno()] = conn
            self._schedule(conn.deadline)
            self._want(conn, selectors.EVENT_READ)

    def _on_event(self, conn: _Conn, mask: int) -> None:
        try:
            if mask & selectors.EVENT_READ:
                self._read(conn)
            if mask & selectors.EVENT_WRITE and conn.state == _WRITE:
                self._write(conn)
        except Exception:
            self._log_once("connection", "exporter HTTP connection failed; closed it")
            self._close(conn)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        if conn.state == _LINGER:
            return  # discarded: the client is told to go away and is closing
        if not conn.buffer and not conn.fresh:  # the first byte of a kept-alive request
            conn.deadline = time.monotonic() + self.limits.header_timeout_s
            self._schedule(conn.deadline)
        conn.buffer += data
        self._dispatch(conn)

    def _dispatch(self, conn: _Conn) -> None:
        """Hands a complete request head to the workers, or answers an error itself."""
        try:
            end = http11.find_head_end(conn.buffer, self.limits.head)
            if end < 0:
                return
            head = bytes(conn.buffer[:end])
            del conn.buffer[:end]
            request = http11.parse_head(head, self.limits.head)
        except HttpError as exc:
            self._send(conn, _error_bytes(exc), close=True)
            return
        conn.state, conn.deadline, conn.fresh = _BUSY, _NEVER, False
        self._want(conn, 0)
        self._jobs.put((conn, request))

    def _finish_responses(self) -> None:
        while True:
            try:
                conn, data, close = self._done.get_nowait()
            except queue.Empty:
                return
            if conn.sock.fileno() >= 0:  # not closed while the worker ran
                self._send(conn, data, close)

    def _send(self, conn: _Conn, data: bytes, close: bool) -> None:
        conn.state, conn.out, conn.close_after = _WRITE, memoryview(data), close
        conn.deadline = time.monotonic() + self.limits.write_timeout_s
        self._schedule(conn.deadline)
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        conn.out = conn.out[sent:]
        if conn.out:
            self._want(conn, selectors.EVENT_WRITE)
        elif conn.close_after:
            self._linger(conn)
        else:
            conn.state, conn.deadline = _READ, time.monotonic() + self.limits.idle_timeout_s
            self._schedule(conn.deadline)
            self._want(conn, selectors.EVENT_READ)
            if conn.buffer:  # a pipelined request is already here
                self._read_pipelined(conn)

    def _read_pipelined(self, conn: _Conn) -> None:
        conn.deadline = time.monotonic() + self.limits.header_timeout_s
        self._schedule(conn.deadline)
        self._dispatch(conn)

    def _linger(self, conn: _Conn) -> None:
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.state, conn.buffer = _LINGER, bytearray()
        conn.deadline = time.monotonic() + self.limits.linger_s
        self._schedule(conn.deadline)
        self._want(conn, selectors.EVENT_READ)

    def _sweep(self) -> None:
        now = time.monotonic()
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._selector.register(self._listener, selectors.EVENT_READ, "listener")
        earliest = self._accept_paused_until or _NEVER
        for conn in list(self._conns.values()):
            if conn.deadline <= now:
                self._expire(conn)
            if conn.sock.fileno() >= 0:  # still open, maybe with a new deadline
                earliest = min(earliest, conn.deadline)
        self._next_sweep = (
            max(earliest, now + _SWEEP_GRANULARITY_S) if earliest < _NEVER else earliest
        )

    def _expire(self, conn: _Conn) -> None:
        if conn.state == _READ and conn.buffer:  # a partial head: a slow or stuck client
            limit = self.limits.header_timeout_s
            error = HttpError(408, f"request head not received within {limit:g} s")
            self._send(conn, _error_bytes(error), close=True)  # then lingers, then closes
        else:
            self._close(conn)  # idle, slow reader, or done lingering

    def _schedule(self, deadline: float) -> None:
        if deadline < self._next_sweep:
            self._next_sweep = deadline

    def _want(self, conn: _Conn, events: int) -> None:
        if events == conn.events:
            return
        if conn.events == 0:
            self._selector.register(conn.sock, events, conn)
        elif events == 0:
            self._selector.unregister(conn.sock)
        else:
            self._selector.modify(conn.sock, events, conn)
        conn.events = events

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd < 0:
            return
        self._want(conn, 0)
        self._conns.pop(fd, None)
        conn.sock.close()
        conn.buffer = bytearray()
        conn.out = memoryview(b"")

    def _close_all(self) -> None:
        for conn in list(self._conns.values()):
            self._close(conn)
        self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: the loop is due to wake anyway; closed: stopped
            self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass

    def _log_once(self, kind: str, message: str, *args: object) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning(message, *args, exc_info=kind == "connection")

    # -- worker threads ----------------------------------------------------------------------

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            conn, request = job
            try:
                response = self._app(request)
            except Exception:
                self._log_once("app", "exporter endpoint %s failed", request.path)
                log.debug("endpoint failure", exc_info=True)
                response = Response(500, b"500 Internal Server Error: see the exporter's log\n")
            close = not request.keep_alive or request.has_body or self._stopping.is_set()
            version = f"HTTP/{request.version[0]}.{request.version[1]}"
            data = http11.serialize(
                response, head_only=request.method == "HEAD", close=close, version=version
            )
            self._done.put((conn, data, close))
            self._wake()


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0..65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _fd_budget() -> int:
    """Connections that fit under the process's open-file limit, leaving room for the rest."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 1 << 30
    return 1 << 30 if soft == resource.RLIM_INFINITY else max(16, soft - 64)


def _refuse(sock: socket.socket, limit: int) -> None:
    """Answers one connection over the limit with 503 without keeping it."""
    error = HttpError(503, f"too many connections (limit {limit}); retry", [("Retry-After", "1")])
    with contextlib.suppress(OSError):
        sock.recv(65536)  # what already came: unread input would turn our close into a reset
    with contextlib.suppress(OSError):
        sock.send(_error_bytes(error))
        sock.shutdown(socket.SHUT_WR)
    sock.close()


def _error_bytes(error: HttpError) -> bytes:
    """A refusal, whole: the connection closes after it."""
    response = http11.error_response(error)
    return http11.serialize(response, head_only=False, close=True, version="HTTP/1.1")
