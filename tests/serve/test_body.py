"""Request bodies: hostile JSON is a 400 that says why, forms become fields, and a body that
outgrows the bound, stops arriving or is abandoned never becomes fields."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import pytest
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect

from wan_otel.pipeline.serve.body import BodyBudget, BodyLimits, parse_json, read_fields
from wan_otel.pipeline.serve.errors import ApiError
from wan_otel.pipeline.serve.images import Upload


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"{", "body is not valid JSON: Expecting property name enclosed in double quotes at "
               "line 1 column 2"),
        (b"[1, 2]", "body must be a JSON object"),
        (b"\xff\xfe{}", "body is not UTF-8: invalid start byte at byte 0"),
        (b'{"seed": ' + b"9" * 5000 + b"}", "body has a number of 5000 characters; at most 40"),
        (b'{"guidance_scale": 1' + b"0" * 400 + b".5}", "a number of 403 characters"),
        (b'{"guidance_scale": NaN}', "body has NaN, which JSON does not allow"),
        (b'{"seconds": -Infinity}', "body has -Infinity"),
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested deeper than 4 levels"),
        (b'{"a": [[[[[1]]]]]}', "nested deeper than 4 levels"),
    ],
)  # fmt: skip
def test_hostile_json_is_a_400_that_says_why(raw: bytes, says: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_json(raw)
    assert (info.value.status, info.value.code) == (400, "invalid_json")
    assert says in info.value.message


def test_a_lone_surrogate_parses_and_is_left_to_validation() -> None:
    assert parse_json(b'{"prompt": "a\\ud800"}') == {"prompt": "a\ud800"}
    assert parse_json(json.dumps({"seed": 2**63 - 1}).encode()) == {"seed": 2**63 - 1}


DEFAULT = BodyLimits()


def read(
    body: bytes | list[bytes], content_type: str, limits: BodyLimits = DEFAULT,
    *, then: str = "end",
) -> dict[str, Any]:  # fmt: skip
    """``read_fields`` over messages as uvicorn delivers them; ``then``: what follows the
    chunks (``end`` of body, a ``disconnect``, or ``silence``)."""
    chunks = [body] if isinstance(body, bytes) else body
    messages: list[MutableMapping[str, Any]] = [
        {"type": "http.request", "body": c, "more_body": True} for c in chunks
    ]
    if then == "end":
        messages.append({"type": "http.request", "body": b"", "more_body": False})
    elif then == "disconnect":
        messages.append({"type": "http.disconnect"})

    async def receive() -> MutableMapping[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # silence: the client sends nothing more
        raise AssertionError("unreachable")

    headers = Headers({"content-type": content_type})
    return asyncio.run(read_fields(headers, receive, limits))


def test_multipart_fields_and_an_upload() -> None:
    boundary = "b0undary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na cat\r\n',
        f'--{boundary}\r\nContent-Disposition: form-data; name="seed"\r\n\r\n7\r\n',
        f'--{boundary}\r\nContent-Disposition: form-data; name="input_reference"; '
        'filename="f.png"\r\nContent-Type: image/png\r\n\r\n',
    ]
    body = "".join(parts).encode() + b"\x89PNG-bytes\r\n" + f"--{boundary}--\r\n".encode()
    fields = read([body[:50], body[50:]], f"multipart/form-data; boundary={boundary}")
    assert fields == {
        "prompt": "a cat",
        "seed": "7",
        "input_reference": Upload("f.png", "image/png", b"\x89PNG-bytes"),
    }
    with pytest.raises(ApiError) as info:
        read(body, "multipart/form-data")
    assert info.value.message == "multipart body: Missing boundary in multipart."


def test_bodies_over_the_bound_late_or_abandoned() -> None:
    small = BodyLimits(max_bytes=10, read_timeout_s=0.2)
    with pytest.raises(ApiError) as info:
        read([b"{" * 6, b"}" * 6], "application/json", small)
    assert (info.value.status, info.value.headers) == (413, {"Connection": "close"})
    with pytest.raises(ApiError) as info:
        read(b'{"prompt":', "application/json", small, then="silence")
    assert (info.value.status, info.value.code) == (408, "request_timeout")
    assert info.value.message == "the body did not arrive in full within 0.2 s"
    with pytest.raises(ClientDisconnect):
        read(b'{"prompt":', "application/json", then="disconnect")
    with pytest.raises(ApiError) as info:
        read(b"x", "text/plain")
    assert info.value.status == 415


def test_bodies_held_at_once_share_one_budget() -> None:
    """Each body is bounded, and so is what all of them hold together: a thousand
    connections each trickling in a large body must not hold gigabytes."""
    limits = BodyLimits(max_bytes=100, read_timeout_s=5.0, budget=BodyBudget(150))
    slow_started, slow_go = asyncio.Event(), asyncio.Event()

    async def slow_receive_factory() -> Any:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                slow_started.set()
                return {
                    "type": "http.request",
                    "body": b'{"prompt": "' + b"a" * 86,
                    "more_body": True,
                }
            await slow_go.wait()
            return {"type": "http.request", "body": b'"}', "more_body": False}

        return receive

    async def fast_receive() -> dict[str, Any]:
        return {
            "type": "http.request",
            "body": b'{"prompt": "' + b"b" * 50 + b'"}',
            "more_body": False,
        }

    async def scenario() -> tuple[Any, Any, int, Any]:
        json_headers = Headers({"content-type": "application/json"})
        slow = asyncio.create_task(read_fields(json_headers, await slow_receive_factory(), limits))
        await slow_started.wait()
        with pytest.raises(ApiError) as refused:
            await read_fields(json_headers, fast_receive, limits)
        held_meanwhile = limits.budget.held
        slow_go.set()
        fields = await slow
        after = await read_fields(json_headers, fast_receive, limits)  # room again
        return refused.value, fields, held_meanwhile, after

    refused, fields, held, after = asyncio.run(scenario())
    assert (refused.status, refused.code) == (503, "server_busy")
    assert refused.headers["Retry-After"] == "1"
    assert held == 98  # the slow body's first chunk; the refused one gave its bytes back
    assert fields == {"prompt": "a" * 86}
    assert after == {"prompt": "b" * 50}
    assert limits.budget.held == 0
