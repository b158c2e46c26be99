"""The API's one error type and its JSON body (OpenAI's shape: ``{"error": {...}}``).

Everything a client did wrong or cannot have now (bad input, unknown id, full queue, not
ready) is raised as an ``ApiError`` where it is found; the HTTP layer turns it into the status,
headers and body, so no handler builds an error response by hand.
"""

from __future__ import annotations

from typing import Any


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
