"""The listening socket and uvicorn, on a thread of their own with one event loop.

The socket is bound here, before uvicorn starts, so a busy port is one clear error at start
and ``--port 0`` is known at once; its listen backlog is ``ConnectionLimits.backlog``, so a
burst of clients waits in the kernel instead of being reset. ``start`` returns once uvicorn
accepts connections; ``stop`` closes the socket, lets answers under way finish for a moment,
and joins the thread. uvicorn installs no signal handlers off the main thread: signals stay
the CLI's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

import uvicorn

from wan_otel.errors import WanOtelError
from wan_otel.pipeline.serve.connections import ConnectionLimits, GuardedH11Protocol

START_TIMEOUT_S = 30.0
STOP_GRACE_S = 2.0
"""On stop: how long answers under way may take to finish."""


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket; a busy port or a bad address is a ``WanOtelError``."""
    try:
        family, kind, proto, _, _ = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise WanOtelError(f"cannot listen on {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit it: uvicorn writes a response's head and body apart, and
        # Nagle's algorithm would hold the body for the client's delayed ACK (40 ms).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise WanOtelError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, saying when it accepts connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.serving = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.serving.set()


class HttpServer:
    def __init__(self, app: Any, sock: socket.socket, limits: ConnectionLimits) -> None:
        self.sock = sock
        config = uvicorn.Config(
            app,
            http=GuardedH11Protocol.bound(limits),
            loop="asyncio",
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
            proxy_headers=False,
            backlog=limits.backlog,
            timeout_keep_alive=max(1, round(limits.idle_timeout_s)),
            timeout_graceful_shutdown=max(1, round(STOP_GRACE_S)),
        )
        # Hostile or broken clients must not fill the log (each is answered with a 4xx that
        # says what was wrong); errors still show.
        for name in ("uvicorn.error", "python_multipart"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self._server = _Uvicorn(config)
        self._thread = threading.Thread(target=self._run, name="wan-otel-http", daemon=True)
        self._failure: BaseException | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self.sock]))
        except BaseException as exc:  # surfaced by start() or logged
            self._failure = exc
            self._server.serving.set()
            logging.getLogger(__name__).error("the HTTP server stopped: %r", exc)

    def start(self) -> None:
        self._thread.start()
        if not self._server.serving.wait(START_TIMEOUT_S) or self._failure is not None:
            raise WanOtelError(f"the HTTP server did not start: {self._failure!r}")

    def stop(self) -> None:
        if not self._thread.is_alive():
            self.sock.close()
            return
        self._server.should_exit = True
        self._thread.join(STOP_GRACE_S + 3.0)
        if self._thread.is_alive():  # answers still going: cut them
            self._server.force_exit = True
            self._thread.join(2.0)
        self.sock.close()
