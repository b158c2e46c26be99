"""Hostile answers from Tempo, Jaeger and Prometheus: one error line and exit 2, or a report
with notes naming what was dropped; never a traceback, never an unbounded read.

Bodies are served by the loopback canned servers; what no HTTP server would send (a reply that
is not HTTP, a lying Content-Length, a drip) comes from a raw TCP server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import promql_parser
import pytest

from tests.backends.canned_http import canned_server, raw_server
from tests.report.helpers import CliResult, run_cli
from wan_otel import semconv as sc
from wan_otel.backends.http_json import MAX_BODY_BYTES, HttpJsonClient
from wan_otel.errors import WanOtelError
from wan_otel.examples.reference_l40s import (
    RUN_ID,
    TRACE_ID,
    UUID,
    reference_samples,
    reference_spans_payload,
)

DEEP = b"[" * 100_000


def _one_line(result: CliResult, *parts: str) -> None:
    assert result.code == 2, result.out[:200]
    assert result.err.startswith("wan-otel: ") and result.err.count("\n") == 1, result.err
    assert "Traceback" not in result.err
    for part in parts:
        assert part in result.err, (part, result.err)


def _tempo(url: str, *extra: str) -> CliResult:
    return run_cli("report", "--run-id", RUN_ID, "--traces", url, "--since", "30d", *extra)


def _search_then(trace: Any) -> dict[str, Any]:
    return {
        "/api/search": lambda p: (200, {"traces": [{"traceID": TRACE_ID}]}),
        "/api/v2/traces/": lambda p: (200, trace),
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (DEEP, "answered /api/search with something that is not JSON (b'[[[["),
        (b"\xff\xfe{}", "with something that is not JSON"),
        (b"", "with something that is not JSON (b'')"),
        ({"traces": "many"}, "answered /api/search without 'traces'"),
        ([1, 2], "answered /api/search without 'traces'"),
    ],
)
def test_tempo_search_bodies_that_are_not_answers(body: Any, message: str) -> None:
    with canned_server({"/api/search": lambda p: (200, body)}) as (url, _):
        _one_line(_tempo(url), message)


def test_tempo_search_ids_are_checked_before_they_enter_a_url() -> None:
    search = {"traces": [5, {"traceID": "../../admin?x="}, {"traceID": 7}, {}]}
    with canned_server({"/api/search": lambda p: (200, search)}) as (url, seen):
        _one_line(_tempo(url), "Tempo traces for reference-l40s hold no span")
    assert [path for path, _ in seen] == ["/api/search"]  # no fetch of a forged path


@pytest.mark.parametrize(
    ("trace", "message"),
    [
        ({"trace": {"resourceSpans": 5}}, "is not OTLP JSON: resourceSpans is not a list (5)"),
        ({"trace": []}, "is not OTLP JSON: no resourceSpans or batches in payload"),
        ("a string", "is not OTLP JSON: payload is not a JSON object"),
        (DEEP, "answered /api/v2/traces/"),
    ],
)
def test_tempo_trace_bodies_that_are_not_traces(trace: Any, message: str) -> None:
    with canned_server(_search_then(trace)) as (url, _):
        _one_line(_tempo(url), message)


def test_tempo_trace_with_bad_spans_reports_the_rest_and_names_them() -> None:
    payload = reference_spans_payload()
    spans = payload["resourceSpans"][0]["scopeSpans"][0]["spans"]
    last = spans[-1]
    spans.append({**last, "name": "bad-time", "startTimeUnixNano": "abc"})
    spans.append({**last, "name": "bad-status", "status": "ERROR"})
    with canned_server(_search_then({"trace": payload, "message": "x\ny"})) as (url, _):
        result = _tempo(url, "--format", "json")
    assert result.code == 0, result.err
    notes = json.loads(result.out)["notes"]
    assert any(
        f"(trace {TRACE_ID}): span 'bad-time' has a startTimeUnixNano that is not an integer"
        in note
        for note in notes
    ), notes
    assert any("span 'bad-status' has a status that is not an object" in n for n in notes)
    assert json.loads(result.out)["summary"]["total_s"] == pytest.approx(593.45)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, b"<html>\n<body>\nInternal\r\nError</body>\n</html>", "HTTP 500 for /api/search:"),
        (502, DEEP, "answered HTTP 502 for /api/search: [[[["),
        (503, {"error": {"message": "line one\nline two"}}, ": line one line two"),
        (400, {"error": ["a", {"b": None}]}, "HTTP 400 for /api/search: ['a', {'b': None}]"),
    ],
)
def test_error_statuses_with_hostile_bodies_are_one_line(
    status: int, body: Any, message: str
) -> None:
    with canned_server({"/api/search": lambda p: (status, body)}) as (url, _):
        _one_line(_tempo(url), message)


def test_a_body_over_the_limit_is_refused_before_it_is_held() -> None:
    huge = b'{"traces": ["' + b"a" * MAX_BODY_BYTES + b'"]}'
    with canned_server({"/api/search": lambda p: (200, huge)}) as (url, _):
        _one_line(_tempo(url), "answered /api/search with more than the 64 MiB limit")


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"HELLO\r\n\r\n", "with something that is not HTTP (BadStatusLine"),
        (b"", "with something that is not HTTP (RemoteDisconnected"),
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 999999999999\r\n\r\n{}",
            "with 999999999999 bytes, over the 64 MiB limit",
        ),
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\n{}",
            "not HTTP (the body broke off 8 bytes",
        ),
    ],
)
def test_replies_that_are_not_http(reply: bytes, message: str) -> None:
    with raw_server(reply) as url:
        _one_line(_tempo(url), message)


def test_a_dripping_body_is_cut_at_the_timeout() -> None:
    headers = b"HTTP/1.0 200 OK\r\n\r\n"
    with raw_server(headers, hold=True) as url:  # headers at once; then the body never comes
        _one_line(_tempo(url, "--timeout", "1"), "did not answer /api/search within 1 s")
    reply = headers + b" " * 1000 + b"{}"
    with raw_server(reply, drip_s=0.05) as url:  # headers, then a byte every 50 ms
        _one_line(_tempo(url, "--timeout", "1"), "within 1 s")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"result": 5}, "Jaeger at"),
        ({"result": {"resourceSpans": {"a": 1}}}, "resourceSpans is not a list"),
        (b"null", "is not OTLP JSON: payload is not a JSON object"),
    ],
)
def test_jaeger_bodies_that_are_not_traces(body: Any, message: str) -> None:
    with canned_server({"/api/v3/traces": lambda p: (200, body)}) as (url, _):
        _one_line(_tempo(url, "--traces-api", "jaeger"), message)


# -- Prometheus ------------------------------------------------------------------------------


def _prometheus(store: Path, answer: Any) -> CliResult:
    with canned_server({"/api/v1/query": lambda p: (200, answer)}) as (url, seen):
        result = run_cli(
            "report",
            *("--run-id", RUN_ID, "--store", str(store)),
            *("--prometheus", url, "--format", "json"),
        )
    assert len(seen) == 1
    return result


def _series(values: list[Any]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {"resultType": "matrix", "result": [{"metric": {"gpu": "0"}, "values": values}]},
    }


def _reference_values() -> list[Any]:
    return [[s[sc.SAMPLE_TIME] / 1e9, str(s[sc.SAMPLE_SM_ACTIVE])] for s in reference_samples()]


def test_prometheus_values_that_are_not_counter_readings_are_dropped(
    reference_store: Path,
) -> None:
    values = _reference_values()
    n = len(values)
    values[n // 5][1] = "NaN"
    values[n // 4][1] = "+Inf"
    values[n // 3][1] = "-1"
    values[n // 2] = "not a pair"
    values += [[1e30, "1"], [1e-308, "1"], [True, "1"], ["t", "1"], [1.0], None]
    result = _prometheus(reference_store, _series(values))
    assert result.code == 0, result.err
    body = json.loads(result.out)
    assert round(body["summary"]["avg_sm_pct"], 1) == 74.2
    assert any(
        note.startswith(f"Prometheus answered 10 sample(s) of GPU {UUID} that are not counter")
        for note in body["notes"]
    ), body["notes"]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (_series([["x", "y"], [1.0, "NaN"]]), "answered no usable"),
        ({"status": "success", "data": []}, "answered a None where a range selector"),
        ({"status": "success", "data": {"resultType": ["m"], "result": []}}, "answered a ['m']"),
        ({"status": {"a": 1}, "error": "bad\nthing"}, "refused the query: error: bad thing"),
        (
            {"status": "success", "data": {"resultType": "matrix", "result": [5, "x"]}},
            "answered no usable",
        ),
        (DEEP, "answered /api/v1/query with something that is not JSON"),
    ],
)
def test_prometheus_answers_that_give_no_samples(
    reference_store: Path, answer: Any, message: str
) -> None:
    _one_line(_prometheus(reference_store, answer), "Prometheus at", message)


def test_a_gpu_uuid_cannot_change_the_promql_query(reference_store: Path) -> None:
    spans = reference_store / RUN_ID / "spans.jsonl"
    forged = '"} or vector(1) or {__name__="x'
    spans.write_text(spans.read_text().replace(f'"{UUID}"', json.dumps(forged)))
    with canned_server({"/api/v1/query": lambda p: (200, _series([]))}) as (url, seen):
        run_cli("report", "--run-id", RUN_ID, "--store", str(reference_store), "--prometheus", url)
    selector = promql_parser.parse(seen[0][1]["query"])
    assert isinstance(selector, promql_parser.MatrixSelector)
    (matcher,) = selector.vector_selector.matchers.matchers
    assert (matcher.name, matcher.value) == (sc.LABEL_UUID, forged)


def test_a_run_without_readable_spans_is_one_line_also_with_prometheus(
    reference_store: Path,
) -> None:
    (reference_store / RUN_ID / "spans.jsonl").write_text("garbage\n")
    with canned_server({"/api/v1/query": lambda p: (200, _series([]))}) as (url, seen):
        result = run_cli(
            "report", "--run-id", RUN_ID, "--store", str(reference_store), "--prometheus", url
        )
    _one_line(result)
    assert seen == []  # no window to ask about


@pytest.mark.parametrize("timeout", [-1.0, 0.0, float("nan"), float("inf")])
def test_a_client_refuses_a_timeout_that_is_no_timeout(timeout: float) -> None:
    with pytest.raises(WanOtelError, match="timeout must be a positive number of seconds"):
        HttpJsonClient("http://127.0.0.1:9", "Tempo", timeout_s=timeout)
