"""The API key: ``/v1/`` routes need ``Authorization: Bearer <key>`` (the SDK's ``api_key``),
probes and metrics stay open, and the key is never logged, traced or echoed."""

from __future__ import annotations

import logging
import warnings

import openai
import pytest

from tests.serve.conftest import FAST, STRICT_KEY, Running, error_of
from wan_otel.pipeline.serve.auth import key_from_header


def test_api_routes_need_the_key_probes_do_not(
    strict: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    anonymous = strict.client(api_key="", keepalive=False)
    anonymous.http.headers.pop("Authorization", None)
    wrong = strict.client(api_key="sesame-0123456780", keepalive=False)
    for client in (anonymous, wrong):
        for method, path in (("POST", "/v1/videos"), ("GET", "/v1/videos"),
                             ("GET", "/v1/models"), ("DELETE", "/v1/videos/x")):  # fmt: skip
            answer = client.request(method, path, json=FAST if method == "POST" else None)
            assert answer.status == 401, (method, path)
            assert answer.headers["WWW-Authenticate"] == "Bearer"
            error = error_of(answer)
            assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")
            assert STRICT_KEY not in answer.raw.decode()
        for path in ("/healthz", "/readyz", "/metrics"):
            assert client.request("GET", path).status == 200
    keyed = strict.client(keepalive=False)
    job = keyed.submit().body["id"]
    assert keyed.wait(job)["status"] == "completed"
    assert not [r for r in caplog.records if STRICT_KEY in r.getMessage()]


def test_the_sdk_sends_its_api_key(strict: Running) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert [m.id for m in strict.sdk(STRICT_KEY).models.list()] == ["Wan2.2-TI2V-5B-tiny"]
        with pytest.raises(openai.AuthenticationError):
            strict.sdk("not-the-key").videos.list()


def test_the_key_is_never_in_a_span(strict: Running) -> None:
    """The fixture asks for the Authorization header on HTTP spans; it comes out redacted."""
    client = strict.client(keepalive=False)
    job = client.submit().body["id"]
    client.wait(job)
    posts = [
        s
        for s in strict.finished_spans()
        if s.name == "POST /v1/videos" and (s.attributes or {}).get("http.status_code") == 202
    ]
    assert posts and all(
        s.attributes["http.request.header.authorization"] == ("[REDACTED]",) for s in posts
    )
    values = [
        str(value)
        for span in strict.finished_spans()
        for value in [*(span.attributes or {}).values(), span.name]
    ]
    assert values and not [v for v in values if STRICT_KEY in v]


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer abc", b"abc"),
        (b"bearer   abc ", b"abc"),
        (b"Basic abc", None),
        (b"Bearer", None),
        (b"Bearer ", None),
        (None, None),
    ],
)
def test_bearer_tokens(header: bytes | None, token: bytes | None) -> None:
    assert key_from_header(header) == token
