"""Connection limits: uvicorn's HTTP/1.1 protocol (h11) with the bounds it lacks.

uvicorn times out an idle keep-alive connection only after a first response, and never a
request head that arrives slowly; its concurrency limit answers in plain text. Here:

- a connection with no request under way is closed after ``idle_timeout_s`` (also a fresh
  one that never sends a byte);
- once a request's first byte arrives, its head must be complete within ``read_timeout_s``
  (else a 408 in JSON and the connection closes); the body has the same bound, kept by the
  route that reads it (``body.py``);
- past ``max_connections`` open connections, a new one is served one JSON 503 (with
  ``Retry-After``) and closed; the listen backlog holds the rest, so a burst is answered, not
  reset;
- a request h11 cannot parse gets a 400 in OpenAI's JSON shape, not uvicorn's text.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from wan_otel.pipeline.serve.asgi import Asgi, Receive, Scope, Send
from wan_otel.pipeline.serve.errors import ApiError, raw_response, send_error

OVER_LIMIT = "wan_otel.over_connection_limit"
"""Key in a connection's ASGI state: it was opened past ``max_connections``."""
DRAIN_LIMIT = 1024 * 1024
"""Body bytes read from an over-limit request before its 503 (so the answer is not lost to a
reset); larger bodies are left unread."""


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1024
    idle_timeout_s: float = 15.0
    read_timeout_s: float = 30.0
    backlog: int = 2048


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with head and idle timeouts and a connection bound."""

    limits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = ""

    @classmethod
    def bound(cls, limits: ConnectionLimits) -> type[GuardedH11Protocol]:
        return type("BoundH11Protocol", (cls,), {"limits": limits})

    # -- timers --------------------------------------------------------------------------------

    def _arm(self, kind: str, seconds: float) -> None:
        self._cancel()
        self._timer_kind = kind
        self._timer = self.loop.call_later(seconds, self._expired)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_kind = None, ""

    def _request_active(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _expired(self) -> None:
        self._timer, kind = None, self._timer_kind
        if self.transport.is_closing() or self._request_active():
            return
        if kind == "read" and self.conn.their_state is h11.IDLE:
            # Part of a head arrived, not all of it: say so, then close.
            timeout = ApiError(
                408,
                f"the request head did not arrive within {self.limits.read_timeout_s:g} s",
                code="request_timeout",
            )
            self.transport.write(raw_response(timeout))
        self.transport.close()

    # -- protocol events -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.app_state = {**self.app_state, OVER_LIMIT: True}
        self._arm("idle", self.limits.idle_timeout_s)

    def data_received(self, data: bytes) -> None:
        if self._timer_kind == "idle":
            self._arm("read", self.limits.read_timeout_s)  # not reset by later bytes
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before and self._request_active():
            self._cancel()  # the route bounds the body's time

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self._request_active():
            self._arm("idle", self.limits.idle_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        error = ApiError(400, f"malformed HTTP request: {msg}", code="invalid_http_request")
        self.transport.write(raw_response(error))
        self.transport.close()


def gated(app: Asgi, read_timeout_s: float) -> Asgi:
    """``app``, except that a connection opened past the bound gets one 503 and closes."""
    busy = ApiError(
        503,
        "too many open connections; retry shortly",
        code="too_many_connections",
        headers={"Retry-After": "1", "Connection": "close"},
    )

    async def gate(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("state", {}).get(OVER_LIMIT):
            await app(scope, receive, send)
            return
        drained = 0
        try:
            while drained <= DRAIN_LIMIT:
                message = await asyncio.wait_for(receive(), read_timeout_s)
                drained += len(message.get("body", b""))
                if message["type"] != "http.request" or not message.get("more_body", False):
                    break
        except asyncio.TimeoutError:
            pass  # answer anyway; the connection closes after it
        await send_error(send, busy)

    return gate
