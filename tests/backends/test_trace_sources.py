"""Trace sources: Collector files, Tempo and Jaeger, against their documented response bodies.

Tempo and Jaeger cannot run on these machines; a loopback server answers with bodies in their
documented formats (Tempo v2 ``trace.resourceSpans`` with base64 ids and enum names, Tempo
search, Jaeger v3 ``result.resourceSpans`` with hex ids, Jaeger's 404 for no traces).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.backends.canned_http import canned_server
from tests.report.helpers import run_cli
from wan_otel.examples.reference_l40s import RUN_ID, TRACE_ID, reference_spans_payload

NOW_RANGE = ("--since", "30d")


def _base64_ids(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as Tempo writes it: base64 ids and enum names."""
    body = json.loads(json.dumps(payload))
    for rs in body["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
                span["kind"] = "SPAN_KIND_INTERNAL"
                span["status"] = {"code": "STATUS_CODE_UNSET"}
    return body


def _store_report(reference_store: Path) -> str:
    result = run_cli(
        "report", "--run-id", RUN_ID, "--store", str(reference_store), "--format", "json"
    )
    assert result.code == 0, result.err
    body = json.loads(result.out)
    return json.dumps({k: v for k, v in body.items() if k not in ("notes",)}, sort_keys=True)


def test_collector_file_gives_the_store_report(reference_store: Path, tmp_path: Path) -> None:
    collector_file = tmp_path / "traces.jsonl"
    # The Collector writes every run of the service into one file: add a stranger.
    other = json.dumps(reference_spans_payload()).replace(f'"{RUN_ID}"', '"other-run"')
    collector_file.write_text(other + "\n" + json.dumps(reference_spans_payload()) + "\n")
    from_file = run_cli(
        "report", "--run-id", RUN_ID, "--traces", str(collector_file), "--format", "json"
    )
    assert from_file.code == 0, from_file.err
    body = json.loads(from_file.out)
    store = json.loads(_store_report(reference_store))
    # No GPU samples come with spans alone: SM figures are n/a, every other figure is equal.
    assert body["summary"]["avg_sm_pct"] is None
    for key in ("total_s", "step_s_mean", "frames_per_s", "peak_memory_gb"):
        assert body["summary"][key] == store["summary"][key]
    assert [r["duration_s"] for r in body["trace"]] == [r["duration_s"] for r in store["trace"]]


def test_tempo_search_then_fetch_by_id(reference_store: Path) -> None:
    trace = {"trace": _base64_ids(reference_spans_payload())}
    routes = {
        "/api/search": lambda p: (
            200,
            {
                "traces": [
                    {"traceID": TRACE_ID.lstrip("0"), "rootTraceName": "wan.pipeline.generate"}
                ]
            },
        ),
        f"/api/v2/traces/{TRACE_ID}": lambda p: (200, trace),
    }
    with canned_server(routes) as (url, seen):
        result = run_cli(
            "report", "--run-id", RUN_ID, "--traces", url, *NOW_RANGE, "--format", "json"
        )
    assert result.code == 0, result.err
    assert [path for path, _ in seen] == ["/api/search", f"/api/v2/traces/{TRACE_ID}"]
    assert seen[0][1]["q"] == '{ span.wan.run.id = "reference-l40s" }'
    assert int(seen[0][1]["end"]) - int(seen[0][1]["start"]) == 30 * 86400
    body = json.loads(result.out)
    store = json.loads(_store_report(reference_store))
    assert [r["duration_s"] for r in body["trace"]] == [r["duration_s"] for r in store["trace"]]
    assert "backends answered 2 HTTP request(s)" in body["notes"]


def test_tempo_partial_trace_is_said(reference_store: Path) -> None:
    trace = {
        "trace": _base64_ids(reference_spans_payload()),
        "status": "PARTIAL",
        "message": "trace exceeds max size",
    }
    routes = {
        "/api/search": lambda p: (200, {"traces": [{"traceID": TRACE_ID}]}),
        "/api/v2/traces/": lambda p: (200, trace),
    }
    with canned_server(routes) as (url, _):
        result = run_cli("report", "--run-id", RUN_ID, "--traces", url)
    assert result.code == 0, result.err
    assert (
        f"Tempo returned trace {TRACE_ID} partial (over its size limit): trace exceeds max size"
        in result.out
    )


def test_tempo_finds_nothing(reference_store: Path) -> None:
    with canned_server({"/api/search": lambda p: (200, {"traces": []})}) as (url, _):
        result = run_cli("report", "--run-id", RUN_ID, "--traces", url)
    assert result.code == 2 and result.err.count("\n") == 1
    assert "has no trace with wan.run.id=reference-l40s between" in result.err


def test_jaeger_v3_with_hex_ids() -> None:
    body = {"result": reference_spans_payload()}
    with canned_server({"/api/v3/traces": lambda p: (200, body)}) as (url, seen):
        result = run_cli(
            "report",
            "--run-id",
            RUN_ID,
            "--traces",
            url,
            "--traces-api",
            "jaeger",
            "--service",
            "wan-otel",
            "--format",
            "json",
        )
    assert result.code == 0, result.err
    params = seen[0][1]
    assert params["query.service_name"] == "wan-otel"
    assert json.loads(params["query.attributes"]) == {"wan.run.id": RUN_ID}
    assert params["query.start_time_min"].endswith("Z") and params["query.start_time_max"].endswith(
        "Z"
    )
    assert json.loads(result.out)["summary"]["total_s"] == pytest.approx(593.45)


def test_jaeger_404_is_run_not_found() -> None:
    not_found = {"error": {"httpCode": 404, "message": "No traces found"}}
    with canned_server({"/api/v3/traces": lambda p: (404, not_found)}) as (url, _):
        result = run_cli("report", "--run-id", RUN_ID, "--traces", url, "--traces-api", "jaeger")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "Jaeger at" in result.err and "has no trace of service 'wan-otel'" in result.err


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, b"<html>login</html>", "with something that is not JSON"),
        (500, {"error": "boom"}, "answered HTTP 500 for /api/search: boom"),
        (200, {"weird": 1}, "answered /api/search without 'traces'"),
    ],
)
def test_tempo_garbage(status: int, body: Any, message: str) -> None:
    with canned_server({"/api/search": lambda p: (status, body)}) as (url, _):
        result = run_cli("report", "--run-id", RUN_ID, "--traces", url)
    assert result.code == 2 and message in result.err and result.err.count("\n") == 1


def test_unreachable_backend_and_bad_flags(tmp_path: Path) -> None:
    result = run_cli(
        "report", "--run-id", RUN_ID, "--traces", "http://127.0.0.1:9", "--timeout", "2"
    )
    assert result.code == 2 and "is unreachable" in result.err and result.err.count("\n") == 1
    result = run_cli("report", "--run-id", RUN_ID, "--traces", str(tmp_path / "missing.jsonl"))
    assert result.code == 2 and "does not exist" in result.err
    result = run_cli("report", "--run-id", RUN_ID, "--traces", "http://x", "--since", "a week")
    assert result.code == 2 and "bad duration" in result.err
