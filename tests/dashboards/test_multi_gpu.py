"""The Serving dashboard's Multi-GPU panels compute the right numbers: their queries, as the
checked-in JSON has them, evaluated by promtool over the series a two-GPU and a four-GPU job
(and a one-GPU job beside them) would leave.

The dashboards' end-to-end test (``test_prometheus.py``) scrapes a one-GPU run, which records
no communication; here the series are written out, one observation of the same size every
15 s per series, so every quantile and mean is known in advance. The repeated row is evaluated
as Grafana renders its rank-1 repetition (``$rank`` = ``1``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import build
from tests.dashboards.expressions import load, panels, substitute
from wan_otel import semconv

N = semconv.PROMETHEUS_NAMES
STEP, COMM, WAIT = (
    N[semconv.METRIC_STEP_DURATION],
    N[semconv.METRIC_COMM_DURATION],
    N[semconv.METRIC_WAIT_DURATION],
)
EVAL_MIN = 10
"""Minutes of series, and the evaluation time."""
SCALE = 10_000
"""Results are compared as round(SCALE * value): promtool compares floats exactly, and rate()
leaves the last bits of a ratio to chance."""

# (histogram, labels, seconds per observation). Pod a runs two-GPU generations (4 s steps) and
# one-GPU ones (8 s); pod b a four-GPU job (2 s steps). In pod a, rank 0 waits for rank 1.
OBSERVATIONS: list[tuple[str, dict[str, str], float]] = [
    (STEP, {"pod": "a", "world_size": "1"}, 8.0),
    (STEP, {"pod": "a", "world_size": "2"}, 4.0),
    (STEP, {"pod": "b", "world_size": "4"}, 2.0),
    (COMM, {"pod": "a", "world_size": "2", "rank": "0"}, 1.25),
    (COMM, {"pod": "a", "world_size": "2", "rank": "1"}, 0.75),
    (WAIT, {"pod": "a", "world_size": "2", "rank": "0"}, 0.5),
    (WAIT, {"pod": "a", "world_size": "2", "rank": "1"}, 0.25),
    *[(COMM, {"pod": "b", "world_size": "4", "rank": str(r)}, 0.5) for r in range(4)],
    *[(WAIT, {"pod": "b", "world_size": "4", "rank": str(r)}, 0.1) for r in range(4)],
]


def ws(size: int, rank: int | None = None) -> str:
    return f'{{world_size="{size}"' + ("}" if rank is None else f',rank="{rank}"}}')


# Panel title -> one {labels: value} per target, in target order. All observations of a series
# fall into one bucket (lower, upper] of DURATION_BUCKETS_S, so quantile q is
# lower + q * (upper - lower): a 4 s step lies in (2.5, 5], p50 3.75 and p95 4.875.
COMM_SHARE = {ws(2, 0): 0.3125, ws(2, 1): 0.1875, **{ws(4, r): 0.25 for r in range(4)}}
WAIT_SHARE = {ws(2, 0): 0.125, ws(2, 1): 0.0625, **{ws(4, r): 0.05 for r in range(4)}}
EXPECTED: dict[str, list[dict[str, float]]] = {
    "Denoising step p50/p95 by world size": [
        {ws(1): 7.5, ws(2): 3.75, ws(4): 1.75},
        {ws(1): 9.75, ws(2): 4.875, ws(4): 2.425},
    ],
    "Communication and wait share by rank": [COMM_SHARE, WAIT_SHARE],
    "Communication per step, rank 1": [
        {ws(2): 0.75, ws(4): 0.375},
        {ws(2): 0.975, ws(4): 0.4875},
        {ws(2): 0.75, ws(4): 0.5},
    ],
    "Wait per step, rank 1": [
        {ws(2): 0.175, ws(4): 0.075},
        {ws(2): 0.2425, ws(4): 0.0975},
        {ws(2): 0.25, ws(4): 0.1},
    ],
    "Communication share, rank 1": [
        {ws(2, 1): 0.1875, ws(4, 1): 0.25},
        {ws(2, 1): 0.0625, ws(4, 1): 0.05},
    ],
}


def _series_text(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def input_series() -> list[dict[str, str]]:
    """Cumulative ``_bucket``, ``_sum`` and ``_count`` series of OBSERVATIONS, one observation
    per 15 s interval."""
    steps = EVAL_MIN * 4
    found = []
    for name, labels, seconds in OBSERVATIONS:
        labels = {**labels, "namespace": "video", "model": "m"}
        found.append(
            {"series": _series_text(f"{name}_sum", labels), "values": f"0+{seconds}x{steps}"}
        )
        found.append({"series": _series_text(f"{name}_count", labels), "values": f"0+1x{steps}"})
        for le in (*semconv.DURATION_BUCKETS_S, "+Inf"):
            inside = le == "+Inf" or seconds <= float(le)
            bucket = _series_text(f"{name}_bucket", {**labels, "le": str(le)})
            found.append({"series": bucket, "values": f"0+{int(inside)}x{steps}"})
    return found


def multi_gpu_panels() -> list[dict[str, Any]]:
    """The panels of the Multi-GPU rows, in order, with the repeated row's ``$rank`` set to 1
    in titles and queries as in Grafana's rank-1 repetition."""
    found, inside = [], False
    for panel in panels(load(build.HERE / "wan-otel-serving.json")):
        if panel["type"] == "row":
            inside = panel["title"].startswith("Multi-GPU")
            repeated = panel.get("repeat") == "rank"
            continue
        if inside:
            if repeated:
                panel = {**panel, "title": panel["title"].replace("$rank", "1")}
                for target in panel["targets"]:
                    target["expr"] = target["expr"].replace("$rank", "1")
            found.append(panel)
    return found


def test_the_rank_row_repeats_by_the_rank_variable() -> None:
    serving = load(build.HERE / "wan-otel-serving.json")
    rows = [p for p in serving["panels"] if p["type"] == "row"]
    assert rows[-1]["repeat"] == "rank"  # last: a repeated row repeats the panels up to the next
    assert rows[-1]["title"] == "Multi-GPU: rank $rank"
    (rank,) = [v for v in serving["templating"]["list"] if v["name"] == "rank"]
    assert rank["query"].startswith(f"label_values({COMM}_count{{")
    assert rank["includeAll"] and rank["multi"]  # Grafana repeats for each selected value


@pytest.mark.skipif(shutil.which("promtool") is None, reason="apt-get install prometheus")
def test_multi_gpu_panels_compute_shares_and_quantiles(tmp_path: Path) -> None:
    found = multi_gpu_panels()
    assert [p["title"] for p in found] == list(EXPECTED)
    tests = []
    for panel in found:
        targets = panel["targets"]
        assert len(targets) == len(EXPECTED[panel["title"]]), panel["title"]
        for target, samples in zip(targets, EXPECTED[panel["title"]], strict=True):
            tests.append(
                {
                    "expr": f"round({SCALE} * ({substitute(target['expr'])}))",
                    "eval_time": f"{EVAL_MIN}m",
                    "exp_samples": [
                        {"labels": labels, "value": round(SCALE * value)}
                        for labels, value in samples.items()
                    ],
                }
            )
    (tmp_path / "none.rules.yml").write_text("groups: []\n")
    spec = {
        "rule_files": ["none.rules.yml"],
        "evaluation_interval": "15s",
        "tests": [{"interval": "15s", "input_series": input_series(), "promql_expr_test": tests}],
    }
    (tmp_path / "panels.test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = subprocess.run(
        ["promtool", "test", "rules", "panels.test.yml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
