"""The HTTP/1.1 wire format the exporter speaks: parse a request head, write a response.

Pure functions over bytes, no sockets. Strict where leniency would let a request mean two
things (RFC 9112: whitespace before a header's colon, folded lines, ``Content-Length`` with
``Transfer-Encoding``, a missing ``Host`` on HTTP/1.1), lenient where it is harmless (bare LF
line ends, empty lines before the request line). Every refusal is an ``HttpError`` with the
status to answer and a one-line reason; the server answers it in plain text and closes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus

ALLOWED_METHODS = ("GET", "HEAD")
TEXT = "text/plain; charset=utf-8"

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # CTLs except HTAB


class HttpError(Exception):
    """A request the server refuses: ``status`` and a one-line ``reason`` for the body."""

    def __init__(self, status: int, reason: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = tuple(headers)


@dataclass(frozen=True)
class Request:
    """A parsed request head. Header names are lower-case; repeated headers are joined with
    ``", "`` (RFC 9110 section 5.3)."""

    method: str
    path: str
    query: str
    version: tuple[int, int]
    headers: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str:
        return self.headers.get(name, "")

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.header("connection").split(",")}
        if self.version >= (1, 1):
            return "close" not in tokens
        return "keep-alive" in tokens

    @property
    def has_body(self) -> bool:
        # Bodies are never read: a request with one is answered, then its connection closed,
        # so the body can never be taken for the next request.
        return "transfer-encoding" in self.headers or self.header("content-length") not in (
            "",
            "0",
        )


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    headers: Sequence[tuple[str, str]] = ()
    content_type: str = TEXT


@dataclass(frozen=True)
class Limits:
    """Sizes of a request head the parser accepts."""

    max_request_line: int = 8192
    """Longer request lines (method, target, version) are answered 414."""
    max_head_bytes: int = 32768
    """Longer heads (request line and headers) are answered 431."""
    max_headers: int = 100
    """More header lines are answered 431."""


def find_head_end(buffer: bytes | bytearray, limits: Limits) -> int:
    """Offset just past the head's closing blank line, or -1 if incomplete. ``HttpError``
    414/431 once the buffer holds more than a head may."""
    start = len(buffer) - len(bytes(buffer).lstrip(b"\r\n"))
    match = _HEAD_END.search(buffer, start)
    line_end = buffer.find(b"\n", start)
    if (line_end < 0 and len(buffer) - start > limits.max_request_line) or (
        line_end - start > limits.max_request_line
    ):
        raise HttpError(414, f"request line longer than {limits.max_request_line} bytes")
    if match is None:
        if len(buffer) - start > limits.max_head_bytes:
            raise HttpError(431, f"request head longer than {limits.max_head_bytes} bytes")
        return -1
    if match.end() - start > limits.max_head_bytes:
        raise HttpError(431, f"request head longer than {limits.max_head_bytes} bytes")
    return match.end()


def parse_head(head: bytes, limits: Limits) -> Request:
    """The request in ``head`` (everything up to and including the blank line)."""
    lines = head.lstrip(b"\r\n").split(b"\n")
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise HttpError(400, "empty request")
    method, path, query, version = _request_line(lines[0])
    if len(lines) - 1 > limits.max_headers:
        raise HttpError(431, f"more than {limits.max_headers} header lines")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, value = _header(line)
        if name in headers:
            if name in ("host", "content-length"):
                raise HttpError(400, f"repeated {name} header")
            headers[name] += ", " + value
        else:
            headers[name] = value
    if version >= (1, 1) and "host" not in headers:
        raise HttpError(400, "HTTP/1.1 request without a Host header")
    length = headers.get("content-length")
    if length is not None:
        if "transfer-encoding" in headers:
            raise HttpError(400, "both Content-Length and Transfer-Encoding")
        if not length.isdigit() or not length.isascii():
            raise HttpError(400, "malformed Content-Length")
    request = Request(method, path, query, version, headers)
    if method not in ALLOWED_METHODS:
        raise HttpError(
            405, f"method {method} not allowed", [("Allow", ", ".join(ALLOWED_METHODS))]
        )
    return request


def _request_line(line: bytes) -> tuple[str, str, str, tuple[int, int]]:
    parts = line.split(b" ")
    if len(parts) != 3 or not all(parts):
        raise HttpError(400, "malformed request line")
    method, target, version_text = parts
    if _TOKEN.fullmatch(method) is None:
        raise HttpError(400, "malformed request line: bad method")
    version = _VERSION.fullmatch(version_text)
    if version is None:
        raise HttpError(400, "malformed request line: bad HTTP version")
    major, minor = int(version[1]), int(version[2])
    if major != 1:
        raise HttpError(505, f"HTTP/{major}.{minor} not supported; use HTTP/1.1")
    if any(b < 0x21 or b > 0x7E for b in target):
        raise HttpError(400, "malformed request target")
    text = target.decode("ascii")
    if text.startswith(("http://", "https://")):  # absolute form (RFC 9112 section 3.2.2)
        text = "/" + text.split("://", 1)[1].partition("/")[2]
    if not text.startswith("/") or "#" in text:
        raise HttpError(400, "malformed request target")
    path, _, query = text.partition("?")
    return method.decode("ascii"), path, query, (major, minor)


def _header(line: bytes) -> tuple[str, str]:
    if line[:1] in (b" ", b"\t"):
        raise HttpError(400, "folded header line")
    name, colon, value = line.partition(b":")
    if not colon or _TOKEN.fullmatch(name) is None:
        raise HttpError(400, "malformed header line")
    value = value.strip(b" \t")
    if _BAD_VALUE.search(value):
        raise HttpError(400, "control character in a header value")
    return name.decode("ascii").lower(), value.decode("latin-1")


class _Date:
    """The ``Date`` header (RFC 9110 section 6.6.1), formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._text, self._second = formatdate(now, usegmt=True), now
        return self._text


_date = _Date()


def serialize(response: Response, *, head_only: bool, close: bool, version: str) -> bytes:
    """The response's bytes; ``head_only`` (HEAD) keeps ``Content-Length`` and drops the body.
    ``version`` is the request's (an HTTP/1.0 client that asked for keep-alive is told)."""
    status = HTTPStatus(response.status)
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Date: {_date()}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    if close:
        lines.append("Connection: close")
    elif version == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


def error_response(error: HttpError) -> Response:
    status = HTTPStatus(error.status)
    body = f"{status.value} {status.phrase}: {error.reason}\n".encode()
    return Response(error.status, body, error.headers)
