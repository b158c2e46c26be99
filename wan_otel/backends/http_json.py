"""A small JSON-over-HTTP client (stdlib only) that turns every failure into one clear line.

Total over what a server can send: any status, any body (not JSON, not UTF-8, nested beyond the
parser, larger than ``MAX_BODY_BYTES``, dripped so slowly that the whole answer takes longer
than the timeout), a broken connection or a reply that is not HTTP all end as one
``WanOtelError`` whose message is one line. Bodies are read in chunks up to the limit, so a huge
answer is refused before it sits in memory whole.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from wan_otel.errors import WanOtelError

DEFAULT_TIMEOUT_S = 30.0
MAX_BODY_BYTES = 64 << 20
"""Largest answer read (64 MiB): a run's trace or a window of samples is far smaller."""
MAX_ERROR_BYTES = 64 << 10
"""Largest error body read: only its first words are shown."""
_CHUNK = 1 << 16


class NotFound(WanOtelError):
    """The backend answered 404."""


def one_line(text: str, limit: int = 200) -> str:
    """``text`` from a server made fit for a one-line message: whitespace and control
    characters collapsed to single spaces, cut to ``limit`` characters."""
    words = "".join(c if c.isprintable() else " " for c in text[: limit * 4]).split()
    line = " ".join(words)
    return line if len(line) <= limit else line[: limit - 3] + "..."


class HttpJsonClient:
    """GETs JSON from one base URL and counts the requests it makes."""

    def __init__(
        self,
        base_url: str,
        name: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise WanOtelError(f"{name} URL must start with http:// or https://: {base_url!r}")
        if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s < 1e6):
            raise WanOtelError(f"{name} timeout must be a positive number of seconds: {timeout_s}")
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        self.requests = 0

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """The JSON answer to ``GET path?params``; ``NotFound`` for 404, ``WanOtelError`` for
        everything else that is not a JSON answer within the timeout and the size limit."""
        where = f"{self.name} at {self.base_url}"
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        self.requests += 1
        # The timeout bounds each socket operation; the deadline bounds the whole answer, so a
        # server dripping a byte at a time cannot hold the report for long.
        deadline = time.monotonic() + self.timeout_s
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = self._read(response, deadline, where, path)
        except urllib.error.HTTPError as exc:
            try:
                detail = _error_detail(exc.read(MAX_ERROR_BYTES))
            except (OSError, http.client.HTTPException):
                detail = "no body"
            finally:
                exc.close()
            if exc.code == 404:
                raise NotFound(f"{where} answered 404: {detail}") from None
            raise WanOtelError(f"{where} answered HTTP {exc.code} for {path}: {detail}") from None
        except http.client.HTTPException as exc:  # a reply that is not HTTP, or cut short
            raise WanOtelError(
                f"{where} answered {path} with something that is not HTTP "
                f"({type(exc).__name__}: {one_line(str(exc), 80)})"
            ) from None
        except TimeoutError:
            raise WanOtelError(
                f"{where} did not answer {path} within {self.timeout_s:g} s"
            ) from None
        except (OSError, ValueError) as exc:
            # URLError (refused, unknown host, timed out connecting) and reset connections are
            # OSErrors; a URL the standard library cannot use is a ValueError.
            reason = getattr(exc, "reason", None) or exc
            raise WanOtelError(f"{where} is unreachable: {one_line(str(reason))}") from None
        try:
            return json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError):
            raise WanOtelError(
                f"{where} answered {path} with something that is not JSON ({body[:60]!r})"
            ) from None

    def _read(
        self, response: http.client.HTTPResponse, deadline: float, where: str, path: str
    ) -> bytes:
        limit = self.max_body_bytes
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise WanOtelError(
                f"{where} answered {path} with {int(length)} bytes, over the "
                f"{limit >> 20} MiB limit"
            )
        chunks, size = [], 0
        # read1: one socket read per chunk, so the deadline is checked however slow the drip.
        while chunk := response.read1(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise WanOtelError(
                    f"{where} answered {path} with more than the {limit >> 20} MiB limit"
                )
            if time.monotonic() > deadline:
                raise WanOtelError(f"{where} did not answer {path} within {self.timeout_s:g} s")
            chunks.append(chunk)
        if response.length:  # the connection closed before the announced Content-Length
            raise WanOtelError(
                f"{where} answered {path} with something that is not HTTP (the body broke off "
                f"{response.length} bytes short of its Content-Length)"
            )
        return b"".join(chunks)


def _error_detail(body: bytes) -> str:
    """The message of an error body, in one line."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return one_line(body[:200].decode("utf-8", "replace")) or "no body"
    try:
        if isinstance(obj, dict):
            error = obj.get("error")
            if isinstance(error, dict):
                return one_line(str(error.get("message", error)))
            if error:
                return one_line(str(error))
            if obj.get("message"):
                return one_line(str(obj["message"]))
        return one_line(json.dumps(obj)) or "no body"
    except (ValueError, RecursionError):  # nested beyond what str() and json.dumps can walk
        return "an unreadable body"
