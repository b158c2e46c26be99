"""The API's one error type and its JSON body (OpenAI's shape: ``{"error": {...}}``).

Everything a client did wrong or cannot have now (bad input, unknown id, full queue, not
ready, no key) is raised as an ``ApiError`` where it is found; the HTTP layer turns it into
the status, headers and body, so no handler builds an error response by hand. Bodies are
written with ASCII escapes: a message may quote a client's text, lone surrogates included.
"""

from __future__ import annotations

import json
from typing import Any

from wan_otel.pipeline.serve.asgi import Send

JSON_TYPE = "application/json"
STATUS_PHRASES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class ApiError(Exception):
    """An HTTP error answer: status, a message that says what is allowed, a stable code."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    @property
    def kind(self) -> str:
        """OpenAI's ``type``: the client's fault (4xx) or the server's state (5xx)."""
        if self.status == 401:
            return "authentication_error"
        return "invalid_request_error" if self.status < 500 else "server_error"

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }

    def encoded(self) -> bytes:
        return json_bytes(self.body())


PARAM_CHARS = 64
"""An error's ``param`` names the field at fault; a hostile field name is cut to this."""


def short_param(name: str) -> str:
    """A field name as an error names it (a hostile one can be megabytes)."""
    return name if len(name) <= PARAM_CHARS else name[: PARAM_CHARS - 3] + "..."


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=True).encode("ascii")


async def send_error(send: Send, error: ApiError) -> None:
    """Answer ``error`` on a raw ASGI ``send`` (middleware that runs before any route)."""
    body = error.encoded()
    headers = [
        (b"content-type", JSON_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()),
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def raw_response(error: ApiError) -> bytes:
    """A whole HTTP/1.1 response for ``error``, closing the connection: for the connection
    layer, which answers before any request exists (a head that never completed)."""
    body = error.encoded()
    phrase = STATUS_PHRASES.get(error.status, "Error")
    head = (
        f"HTTP/1.1 {error.status} {phrase}\r\ncontent-type: {JSON_TYPE}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
