"""GPU samples from the Prometheus HTTP API: one request, raw samples, exact integration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.backends.canned_http import canned_server
from tests.report.helpers import run_cli
from wan_otel import semconv as sc
from wan_otel.examples.reference_l40s import RUN_ID, UUID, reference_samples


def _matrix(series: list[dict[str, Any]]) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "matrix", "result": series}}


def _reference_series(**labels: str) -> dict[str, Any]:
    values = [[s[sc.SAMPLE_TIME] / 1e9, str(s[sc.SAMPLE_SM_ACTIVE])] for s in reference_samples()]
    return {
        "metric": {
            "__name__": sc.GPU_SM_ACTIVE,
            sc.LABEL_UUID: UUID,
            sc.LABEL_GPU: "0",
            sc.LABEL_SOURCE: "nvml_util",
            **labels,
        },
        "values": values,
    }


def _report(store: Path, url: str) -> tuple[int, dict[str, Any] | None, str]:
    result = run_cli(
        "report", "--run-id", RUN_ID, "--store", str(store), "--prometheus", url, "--format", "json"
    )
    return result.code, json.loads(result.out) if result.code == 0 else None, result.err


def test_one_instant_query_of_a_range_selector_gives_the_store_figures(
    reference_store: Path,
) -> None:
    answer = _matrix(
        [
            _reference_series(pod="wan-0"),
            {**_reference_series(pod="old"), "values": [[1767225600.0, "1"]]},
        ]
    )
    with canned_server({"/api/v1/query": lambda p: (200, answer)}) as (url, seen):
        code, body, err = _report(reference_store, url)
    assert code == 0, err
    assert body is not None
    assert len(seen) == 1
    path, params = seen[0]
    assert path == "/api/v1/query"
    assert params["query"].startswith(f'{sc.GPU_SM_ACTIVE}{{uuid="{UUID}"}}[')
    window = int(params["query"].rsplit("[", 1)[1].rstrip("s]"))
    assert window >= 593.45 + 60  # the run plus padding on both sides
    assert round(body["summary"]["avg_sm_pct"], 1) == 74.2
    steps = [r for r in body["trace"] if r["name"].startswith("Step ")]
    assert [round(r["sm_pct"], 1) for r in steps[:2]] == [94.9, 100.0]
    assert any("holds 2 series for GPU" in n for n in body["notes"])
    assert "backends answered 1 HTTP request(s)" in body["notes"]


def test_samples_covering_part_of_the_run_are_named(reference_store: Path) -> None:
    series = _reference_series()
    series["values"] = series["values"][: len(series["values"]) // 2]
    with canned_server({"/api/v1/query": lambda p: (200, _matrix([series]))}) as (url, _):
        code, body, err = _report(reference_store, url)
    assert code == 0, err
    assert body is not None
    assert any(n.startswith("Prometheus samples cover") for n in body["notes"])
    vae = next(r for r in body["trace"] if r["name"] == "VAE Decoding")
    assert vae["sm_pct"] is None  # after the samples end


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (_matrix([]), "has no wan_gpu_sm_active_seconds_total samples for GPU"),
        (
            {
                "status": "error",
                "errorType": "execution",
                "error": "query processing would load too many samples into memory",
            },
            "refused the query: execution: query processing would load too many samples",
        ),
        (
            {"status": "success", "data": {"resultType": "vector", "result": []}},
            "answered a vector",
        ),
        ({"hello": "world"}, "not a Prometheus API response"),
    ],
)
def test_prometheus_errors_are_one_line(reference_store: Path, answer: Any, message: str) -> None:
    with canned_server({"/api/v1/query": lambda p: (200, answer)}) as (url, _):
        code, _, err = _report(reference_store, url)
    assert code == 2 and message in err and err.count("\n") == 1


def test_prometheus_unreachable(reference_store: Path) -> None:
    code, _, err = _report(reference_store, "http://127.0.0.1:9")
    assert code == 2 and "Prometheus at http://127.0.0.1:9 is unreachable" in err
