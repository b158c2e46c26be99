"""Fuzzing the request parsing and validation (hypothesis, derandomized: the same examples on
every run). Whatever a client sends, the answer is a 2xx or a 4xx in OpenAI's JSON shape,
never a 500; a 202 leaves exactly one whole job on disk, and anything refused leaves none."""

from __future__ import annotations

import json
import socket
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serve.conftest import Running, error_of
from wan_otel.pipeline.runner import presets
from wan_otel.pipeline.serve.body import parse_json
from wan_otel.pipeline.serve.errors import ApiError
from wan_otel.pipeline.serve.validation import FIELDS, Limits, ModelNames, validate

FUZZ = settings(
    derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
LIMITS = Limits(32, 4, 256, 33, 50)
NAMES = ModelNames("Wan2.2-TI2V-5B-tiny", ("tiny",))

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["32x32", "64x32", "1", "5", "9", "0.5", "1e3", "-1", "nan", "4", " 32 x 32 "]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
bodies = st.dictionaries(
    st.sampled_from([*FIELDS, "num_steps", "", "prompt\x00"]), values, max_size=8
).map(lambda body: {"prompt": "a cat", **body} if "prompt" not in body else body)


@FUZZ
@given(body=bodies)
def test_validation_answers_a_request_or_a_400(body: dict[str, Any]) -> None:
    try:
        request = validate(body, LIMITS, presets.TINY_DEFAULTS, NAMES)
    except ApiError as error:
        assert error.status == 400 and error.message
        assert error.param is None or error.param in body or error.param in FIELDS
        json.dumps(error.body())  # always renderable
        return
    assert request.prompt.encode("utf-8")
    assert request.width % 32 == 0 and (request.num_frames - 1) % 4 == 0


@FUZZ
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_parse_to_an_object_or_a_400(raw: bytes) -> None:
    try:
        assert isinstance(parse_json(raw), dict)
    except ApiError as error:
        assert (error.status, error.code) == (400, "invalid_json")


CONTENT_TYPES = st.sampled_from([
    "application/json", "multipart/form-data", "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded", "text/plain", "", "application/json; charset=latin-1",
    "multipart/form-data; boundary=" + "b" * 300, "\u00e9/\u00e9",
])  # fmt: skip


def _folders(running: Running) -> set[str]:
    return {p.name for p in running.store.iterdir() if p.is_dir()}


@settings(FUZZ, max_examples=150)
@given(
    payload=st.one_of(
        bodies.map(lambda b: json.dumps(b, default=str).encode()),
        st.binary(max_size=300),
        st.text(alphabet=string.printable, max_size=300).map(str.encode),
    ),
    content_type=CONTENT_TYPES,
    traceparent=st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60),
)
def test_the_live_server_never_answers_500(
    idle: Running, payload: bytes, content_type: str, traceparent: str
) -> None:
    client = idle.shared_client()
    before = _folders(idle)
    headers = {b"traceparent": traceparent.strip().encode("latin-1")} if traceparent.strip() else {}
    if content_type:
        headers[b"content-type"] = content_type.encode("utf-8")
    answer = client.request("POST", "/v1/videos", content=payload, headers=headers)
    assert answer.status in (202, 400, 413, 415, 429), (answer.status, answer.raw[:300])
    new = _folders(idle) - before
    if answer.status == 202:
        assert new == {answer.body["id"]}
        assert (idle.store / answer.body["id"] / "job.json").is_file()
        client.request("DELETE", f"/v1/videos/{answer.body['id']}")
    else:
        error_of(answer)
        assert new == set()


heads = st.lists(
    st.one_of(
        st.sampled_from([b"GET / HTTP/1.1", b"POST /v1/videos HTTP/1.1", b"Host: x",
                         b"Content-Length: 5", b"Content-Length: -1", b"Content-Length: x",
                         b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip", b"",
                         b"GET /v1/videos/%00 HTTP/1.1", b"\xff\xfe", b"Expect: 100-continue",
                         b"GET /v1/models/" + b"a" * 9000 + b" HTTP/1.1"]),
        st.binary(max_size=40),
    ),
    min_size=1, max_size=6,
)  # fmt: skip


@settings(FUZZ, max_examples=60)
@given(lines=heads)
def test_malformed_requests_get_json_or_a_closed_connection(
    strict: Running, lines: list[bytes]
) -> None:
    request = b"\r\n".join(lines) + b"\r\n\r\nhello"
    with socket.create_connection(("127.0.0.1", strict.server.port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    for response in answer.split(b"HTTP/1.1 ")[1:]:
        status = int(response[:3])
        assert status < 500, answer[:400]
        if status >= 400:
            assert b"content-type: application/json" in response.lower(), answer[:400]
