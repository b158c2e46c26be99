"""The checked-in dashboards: current with the generator, valid for Grafana's dashboard model
(grafana-foundation-sdk's typed model), datasources from variables, fixed uids, sound layout."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards import build
from tests.dashboards.expressions import dashboard_files, load, panels

plugins.register_default_plugins()

UIDS = {"wan-otel-serving", "wan-otel-gpu", "wan-otel-run"}
DATASOURCE_VARIABLES = {"${datasource}": "prometheus", "${tempo}": "tempo"}


def round_trip(data: dict[str, Any]) -> dict[str, Any]:
    """The dashboard read into the SDK's typed model and written back: fields the model does
    not know, or of the wrong shape, do not survive."""
    return dict(json.loads(JSONEncoder(sort_keys=True).encode(Dashboard.from_json(data))))


@pytest.fixture(scope="module", params=[p.name for p in dashboard_files()])
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load(build.HERE / request.param)


def test_checked_in_json_matches_the_generator() -> None:
    assert {p.name for p in dashboard_files()} == set(build.BUILDERS)
    for name, text in build.rendered().items():
        assert (build.HERE / name).read_text() == text, f"run python -m dashboards.build ({name})"


def test_check_mode_reports_current_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert build.main(["--check"]) == 0


def test_dashboards_survive_grafana_model_round_trip(dashboard: dict[str, Any]) -> None:
    assert round_trip(dashboard) == dashboard


def test_round_trip_catches_fields_outside_the_model(dashboard: dict[str, Any]) -> None:
    broken = copy.deepcopy(dashboard)
    next(p for p in broken["panels"] if p["type"] == "timeseries")["targets"][0]["exprr"] = "x"
    assert round_trip(broken) != broken


def test_uids_titles_and_schema(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] in UIDS
    assert dashboard["title"].startswith("wan-otel / ")
    assert dashboard["schemaVersion"] >= 36
    assert "wan-otel" in dashboard["tags"]
    assert "id" not in dashboard  # Grafana assigns ids; provisioning matches on uid


def test_every_datasource_is_a_variable(dashboard: dict[str, Any]) -> None:
    refs = [p["datasource"] for p in panels(dashboard) if p["type"] != "row"]
    refs += [v["datasource"] for v in dashboard["templating"]["list"] if "datasource" in v]
    refs += [
        t["datasource"]
        for p in panels(dashboard)
        for t in p.get("targets", [])
        if "datasource" in t
    ]
    assert refs
    for ref in refs:
        assert DATASOURCE_VARIABLES.get(ref["uid"]) == ref["type"], ref


def test_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["tempo"]["query"] == "tempo"
    for name in ("namespace", "pod"):
        assert variables[name]["allValue"] == ".*"  # also matches series without the label
        assert variables[name]["includeAll"] and variables[name]["multi"]
    if dashboard["uid"] != "wan-otel-serving":
        assert variables["gpu"]["allValue"] == ".*"
    if dashboard["uid"] == "wan-otel-run":
        assert variables["run_id"]["type"] == variables["trace_id"]["type"] == "textbox"


def test_layout(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels(dashboard):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area


def test_every_panel_has_a_title_and_description(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        assert panel.get("title")
        if panel["type"] != "row":
            assert panel.get("description"), panel["title"]
            assert panel.get("targets"), panel["title"]


def test_latency_panels_link_to_traces() -> None:
    serving = load(build.HERE / "wan-otel-serving.json")
    latency = [
        p for p in panels(serving) if "latency" in p["title"].lower() and p["type"] == "timeseries"
    ]
    assert latency
    for panel in latency:
        urls = [link["url"] for link in panel["fieldConfig"]["defaults"].get("links", [])]
        assert any(url.startswith("/d/wan-otel-run/") for url in urls), panel["title"]
        assert all(
            t.get("exemplar") for t in panel["targets"] if "histogram_quantile" in t["expr"]
        ) or panel["title"].startswith("Generation p95")


def test_run_dashboard_finds_runs_by_the_contract_attribute() -> None:
    run = load(build.HERE / "wan-otel-run.json")
    queries = [
        t["query"]
        for p in panels(run)
        for t in p.get("targets", [])
        if p["datasource"]["type"] == "tempo"
    ]
    assert '{ span.wan.run.id = "$run_id" }' in queries
    assert "$trace_id" in queries
    assert [p for p in panels(run) if p["type"] == "traces"]


def test_gpu_panels_read_the_same_in_every_dashboard() -> None:
    """A panel that the GPU and Run dashboards both show queries, labels and scales the same
    (``dashboards.gpu_panels`` defines it once)."""

    def by_title(name: str) -> dict[str, dict[str, Any]]:
        return {p["title"]: p for p in panels(load(build.HERE / name)) if p["type"] != "row"}

    gpu, run = by_title("wan-otel-gpu.json"), by_title("wan-otel-run.json")
    shared = sorted(gpu.keys() & run.keys())
    assert shared == ["PCIe traffic", "Power", "SM activity", "Tensor pipe activity"]
    for title in shared:
        assert gpu[title]["targets"] == run[title]["targets"], title
        assert gpu[title]["fieldConfig"] == run[title]["fieldConfig"], title
        assert run[title]["description"].startswith(gpu[title]["description"]), title
