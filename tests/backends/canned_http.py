"""A loopback HTTP server answering canned bodies, for backend clients whose servers cannot run
here (Tempo, Jaeger). Bodies follow the backends' documented formats."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Route = Callable[[dict[str, str]], tuple[int, Any]]


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

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
