"""HTTP/1.1 request heads: what is accepted, and the status of each refusal."""

from __future__ import annotations

import pytest

from wan_otel.exporter.http11 import (
    HttpError,
    Limits,
    Request,
    Response,
    find_head_end,
    parse_head,
    serialize,
)

LIMITS = Limits(max_request_line=64, max_head_bytes=256, max_headers=4)


def parse(head: bytes, limits: Limits = LIMITS) -> Request:
    end = find_head_end(head, limits)
    assert end == len(head), "the test head must be complete"
    return parse_head(head, limits)


def refusal(head: bytes, limits: Limits = LIMITS) -> tuple[int, str]:
    with pytest.raises(HttpError) as info:
        if find_head_end(head, limits) >= 0:
            parse_head(head, limits)
    return info.value.status, info.value.reason


def test_a_get_with_headers_is_parsed() -> None:
    request = parse(
        b"GET /metrics?name[]=x HTTP/1.1\r\nHost: a:9435\r\nAccept: text/plain\r\n"
        b"X-Twice: 1\r\nx-twice:  2 \r\n\r\n"
    )
    assert request == Request(
        "GET",
        "/metrics",
        "name[]=x",
        (1, 1),
        {"host": "a:9435", "accept": "text/plain", "x-twice": "1, 2"},
    )
    assert request.keep_alive and not request.has_body


def test_lenient_where_harmless_bare_lf_leading_blank_lines_absolute_form() -> None:
    request = parse(b"\r\n\nHEAD http://a:9435/healthz HTTP/1.0\nConnection: keep-alive\n\n")
    assert (request.method, request.path, request.version) == ("HEAD", "/healthz", (1, 0))
    assert request.keep_alive


@pytest.mark.parametrize(
    ("head", "keep_alive", "has_body"),
    [
        (b"GET / HTTP/1.0\r\n\r\n", False, False),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", False, False),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", True, False),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", True, True),
        (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", True, True),
    ],
)
def test_keep_alive_and_body(head: bytes, keep_alive: bool, has_body: bool) -> None:
    request = parse(head)
    assert (request.keep_alive, request.has_body) == (keep_alive, has_body)


@pytest.mark.parametrize(
    ("head", "status", "reason"),
    [
        (b"GARBAGE\r\n\r\n", 400, "malformed request line"),
        (b"GET /metrics\r\n\r\n", 400, "malformed request line"),
        (b"GET  /metrics HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line"),
        (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad method"),
        (b"GET / HTTX/1.1\r\nHost: a\r\n\r\n", 400, "bad HTTP version"),
        (b"GET metrics HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request target"),
        (b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request target"),
        (b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request target"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "without a Host header"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "repeated host"),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "malformed header line"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nNo colon\r\n\r\n", 400, "malformed header line"),
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400, "folded header line"),
        (b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", 400, "control character"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, "Content-Length"),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n",
            400,
            "both Content-Length and Transfer-Encoding",
        ),
        (b"GET / HTTP/2.0\r\n\r\n", 505, "HTTP/2.0 not supported"),
        (b"POST /metrics HTTP/1.1\r\nHost: a\r\n\r\n", 405, "method POST not allowed"),
        (b"OPTIONS /metrics HTTP/1.1\r\nHost: a\r\n\r\n", 405, "method OPTIONS not allowed"),
        (b"GET /" + b"a" * 70 + b" HTTP/1.1\r\n\r\n", 414, "longer than 64 bytes"),
        (b"GET /" + b"a" * 70, 414, "longer than 64 bytes"),  # no line end yet
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"b" * 300 + b"\r\n\r\n", 431, "256 bytes"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"b" * 300, 431, "256 bytes"),  # not ended
        (b"GET / HTTP/1.1\r\n" + b"Host: a\r\n" + b"X: 1\r\n" * 4 + b"\r\n", 431, "4 header"),
    ],
)
def test_refusals_carry_their_status(head: bytes, status: int, reason: str) -> None:
    got_status, got_reason = refusal(head)
    assert got_status == status
    assert reason in got_reason


def test_405_names_the_allowed_methods() -> None:
    with pytest.raises(HttpError) as info:
        parse_head(b"DELETE / HTTP/1.1\r\nHost: a\r\n\r\n", LIMITS)
    assert info.value.headers == (("Allow", "GET, HEAD"),)


def test_an_incomplete_head_waits_for_more() -> None:
    assert find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", LIMITS) == -1
    head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next"  # the next request stays in the buffer
    assert find_head_end(head, LIMITS) == len(head) - len(b"GET /next")


def test_head_responses_keep_the_length_and_drop_the_body() -> None:
    response = Response(200, b"hello\n", [("Vary", "Accept")])
    full = serialize(response, head_only=False, close=False, version="HTTP/1.1")
    head = serialize(response, head_only=True, close=False, version="HTTP/1.1")
    assert full == head + b"hello\n"
    assert head.startswith(b"HTTP/1.1 200 OK\r\nDate: ")
    assert head.endswith(
        b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 6\r\nVary: Accept\r\n\r\n"
    )
    closing = serialize(response, head_only=True, close=True, version="HTTP/1.0")
    assert closing.endswith(b"Connection: close\r\n\r\n")
    kept = serialize(response, head_only=True, close=False, version="HTTP/1.0")
    assert kept.endswith(b"Connection: keep-alive\r\n\r\n")
