"""A loopback HTTP server answering canned bodies, for backend clients whose servers cannot run
here (Tempo, Jaeger). Bodies follow the backends' documented formats."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Route = Callable[[dict[str, str]], tuple[int, Any]]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer (a body refused for its size) is expected here;
        the default prints a traceback to stderr, which the CLI tests capture."""


@contextmanager
def canned_server(
    routes: dict[str, Route],
) -> Iterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    """Serve ``routes`` (path prefix -> handler(params) -> (status, body)); yields the base URL
    and the list of requests seen."""
    seen: list[tuple[str, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urllib.parse.urlparse(self.path)
            params = dict(urllib.parse.parse_qsl(parsed.query))
            seen.append((parsed.path, params))
            for prefix, route in routes.items():
                if parsed.path.startswith(prefix):
                    status, body = route(params)
                    break
            else:
                status, body = 404, {"error": "no route"}
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    # A short poll: shutdown() waits up to one poll interval, at the end of every test.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def raw_server(reply: bytes, drip_s: float = 0.0, hold: bool = False) -> Iterator[str]:
    """A loopback TCP server that answers every connection with ``reply`` verbatim (not
    necessarily HTTP), one byte every ``drip_s`` seconds when given, then closes (or, with
    ``hold``, keeps the connection open and silent). Yields the base URL. Stops its threads on
    exit, also when the client gave up mid-drip."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)  # the request; its content does not matter here
                if not drip_s:
                    conn.sendall(reply)
                for i in range(len(reply) if drip_s else 0):
                    if stop.wait(drip_s):
                        return
                    conn.sendall(reply[i : i + 1])
                if hold:
                    stop.wait()
            except OSError:
                pass  # the client closed first

    def serve() -> None:
        workers = []
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            worker = threading.Thread(target=answer, args=(conn,), daemon=True)
            worker.start()
            workers.append(worker)
        for worker in workers:
            worker.join()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()
