"""Request bodies: a ``POST`` body, JSON or a form (multipart or URL-encoded), read within a
size and a time bound, becomes a flat dict of fields (text, numbers, uploads), or an
``ApiError`` with the 4xx that says what was wrong with it.

Hostile bodies are refused with a 400 here, not a 500 later: JSON numbers of thousands of
digits, ``NaN`` and ``Infinity``, nesting deeper than a request has any use for, text that is
not UTF-8, a field given twice. A body that does not arrive in full within the read timeout
gets a 408 and its connection is closed; one that outgrows the size bound gets a 413; a
client that leaves mid-body gets nothing (``ClientDisconnect``), and no job exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from wan_otel.pipeline.serve.errors import ApiError, short_param
from wan_otel.pipeline.serve.images import Upload
from wan_otel.pipeline.serve.waiters import within

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
JSON_TYPES = ("application/json", "")
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
MAX_NUMBER_CHARS = 40
"""Longest number literal in a JSON body (a seed of 2^63 has 19 digits)."""
MAX_DEPTH = 4
"""Deepest JSON nesting a request needs: ``{"input_reference": {"image_url": ...}}`` is 2."""


class BodyBudget:
    """Bytes of request bodies held at once, over every request of a server: each body is
    bounded, but a thousand connections each trickling one in would hold gigabytes. Used on
    the event loop's thread only, so it needs no lock."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.held = 0

    @contextlib.contextmanager
    def account(self) -> Iterator[Callable[[int], None]]:
        """A ``take(n)`` for one body's chunks; all it took is given back on the way out."""
        taken = 0

        def take(nbytes: int) -> None:
            nonlocal taken
            if self.held + nbytes > self.max_bytes:
                raise ApiError(
                    503,
                    "the server is reading too many request bodies at once; retry shortly",
                    code="server_busy",
                    headers={"Retry-After": "1", "Connection": "close"},
                )
            self.held += nbytes
            taken += nbytes

        try:
            yield take
        finally:
            self.held -= taken


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int = 16 * 1024 * 1024
    """A 10 MiB image, base64-encoded, and the rest."""
    read_timeout_s: float = 30.0
    """Longest time for a whole body to arrive."""
    max_fields: int = 32
    max_files: int = 2
    budget: BodyBudget = field(default_factory=BodyBudget, compare=False)
    """Shared by every request of one server."""


def media_type(headers: Headers) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_fields(headers: Headers, receive: Receive, limits: BodyLimits) -> dict[str, Any]:
    """The request's fields, by its ``Content-Type``."""
    kind = media_type(headers)
    if kind not in (*JSON_TYPES, *FORM_TYPES):
        raise ApiError(
            415,
            f"Content-Type {kind!r} is not taken; send application/json, multipart/form-data "
            "or application/x-www-form-urlencoded",
            code="unsupported_media_type",
        )
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limits.max_bytes:
        raise _too_large(limits)
    with limits.budget.account() as take:
        chunks = _chunks(receive, limits, take)
        if kind == "multipart/form-data":
            return await _multipart(headers, chunks, limits)
        raw = b"".join([chunk async for chunk in chunks])
        # curl -d '{...}' without -H sends JSON as a URL-encoded form: take it for what it is.
        if kind in JSON_TYPES or raw.lstrip().startswith(b"{"):
            return parse_json(raw)
        return await _urlencoded(headers, raw, limits)


def _too_large(limits: BodyLimits) -> ApiError:
    return ApiError(
        413,
        f"the body is over {limits.max_bytes} bytes",
        code="body_too_large",
        headers={"Connection": "close"},
    )


async def _chunks(
    receive: Receive, limits: BodyLimits, take: Callable[[int], None]
) -> AsyncGenerator[bytes, None]:
    """The body's chunks as they come, within the size and time bounds and the server's
    budget (``take``)."""
    deadline = asyncio.get_running_loop().time() + limits.read_timeout_s
    received = 0
    while True:
        try:
            message = await within(receive(), deadline)
        except asyncio.TimeoutError:
            raise ApiError(
                408,
                f"the body did not arrive in full within {limits.read_timeout_s:g} s",
                code="request_timeout",
                headers={"Connection": "close"},
            ) from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limits.max_bytes:
            raise _too_large(limits)
        take(len(chunk))
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or 400 saying where it breaks."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, f"body is not UTF-8: {exc.reason} at byte {exc.start}", code="invalid_json"
        ) from None
    try:
        body = json.loads(
            text,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
            object_pairs_hook=_collect,  # a key given twice is refused, as in a form
        )
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            code="invalid_json",
        ) from None
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object", code="invalid_json")
    if _depth(body) > MAX_DEPTH:
        raise _too_deep()
    return body


def _too_deep() -> ApiError:
    return ApiError(
        400, f"body is nested deeper than {MAX_DEPTH} levels; fields are flat", code="invalid_json"
    )


def _depth(value: Any) -> int:
    """Nesting depth, iteratively: the parser already bounded it, this bounds what we keep."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _number_text(text: str) -> None:
    if len(text) > MAX_NUMBER_CHARS:
        raise ApiError(
            400,
            f"body has a number of {len(text)} characters; at most {MAX_NUMBER_CHARS}",
            code="invalid_json",
        )


def _int(text: str) -> int:
    _number_text(text)
    return int(text)


def _float(text: str) -> float:
    _number_text(text)
    return float(text)


def _constant(text: str) -> float:
    raise ApiError(400, f"body has {text}, which JSON does not allow", code="invalid_json")


def _collect(items: list[tuple[str, Any]]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, value in items:
        if name in fields:
            shown = short_param(name)
            raise ApiError(
                400, f"field {shown!r} is given twice", code="duplicate_parameter", param=shown
            )
        fields[name] = value
    return fields


async def _multipart(
    headers: Headers, chunks: AsyncGenerator[bytes, None], limits: BodyLimits
) -> dict[str, Any]:
    parser = MultiPartParser(
        headers,
        chunks,
        max_files=limits.max_files,
        max_fields=limits.max_fields,
        max_part_size=limits.max_bytes,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, f"multipart body: {exc.message}", code="invalid_multipart") from None
    items: list[tuple[str, Any]] = []
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                items.append((name, Upload(value.filename, value.content_type, data)))
            else:
                items.append((name, value))
    finally:
        await form.close()
    return _collect(items)


async def _urlencoded(headers: Headers, raw: bytes, limits: BodyLimits) -> dict[str, Any]:
    async def once() -> AsyncGenerator[bytes, None]:
        yield raw

    parser = FormParser(headers, once(), max_fields=limits.max_fields, max_part_size=len(raw) + 1)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, f"form body: {exc.message}", code="invalid_form") from None
    return _collect(list(form.multi_items()))
