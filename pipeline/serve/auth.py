"""The API key: with ``--api-key`` (or ``$WAN_OTEL_API_KEY``), every ``/v1/`` route needs
``Authorization: Bearer <key>``; health, readiness and metrics stay open for probes and
scrapes.

The key is compared in constant time (``hmac.compare_digest`` on the SHA-256 of each side, so
not even its length leaks through timing), and it is never logged, traced or echoed: a wrong
key is answered with the same 401 as a missing one.
"""

from __future__ import annotations

import hashlib
import hmac

from wan_otel.pipeline.serve.asgi import Asgi, Receive, Scope, Send
from wan_otel.pipeline.serve.errors import ApiError, send_error

API_KEY_ENV = "WAN_OTEL_API_KEY"
PROTECTED_PREFIX = "/v1/"


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def key_from_header(value: bytes | None) -> bytes | None:
    """The token of ``Authorization: Bearer <token>`` (scheme case-insensitive)."""
    if value is None:
        return None
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        return None
    return token.strip()


def requiring_key(app: Asgi, api_key: str) -> Asgi:
    """``app`` behind the key on ``/v1/`` routes."""
    expected = _digest(api_key.encode("utf-8"))
    refusal = ApiError(
        401,
        "an API key is required: send Authorization: Bearer <key>",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(PROTECTED_PREFIX):
            await app(scope, receive, send)
            return
        header = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), None)
        token = key_from_header(header)
        # Both sides hashed: compare_digest's time then depends on neither the key's length
        # nor how much of it a guess got right.
        if token is None or not hmac.compare_digest(_digest(token), expected):
            await send_error(send, refusal)
            return
        await app(scope, receive, send)

    return guarded
