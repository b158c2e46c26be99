"""Every dashboard query is valid PromQL (promql-parser, and promtool's own parser) and uses
only names from the naming contract (``wan_otel.semconv``); TraceQL uses the contract's keys."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.dashboards.expressions import Expression, prometheus_expressions, tempo_queries
from tests.dashboards.promql_names import PROMETHEUS_LABELS, contract_labels, names_in
from wan_otel import semconv

EXPRESSIONS = list(prometheus_expressions())


def test_dashboards_have_queries() -> None:
    assert len(EXPRESSIONS) > 40
    assert {e.dashboard for e in EXPRESSIONS} == {
        "wan-otel-serving.json",
        "wan-otel-gpu.json",
        "wan-otel-run.json",
    }


@pytest.mark.parametrize("expression", EXPRESSIONS, ids=lambda e: f"{e.dashboard}:{e.where}")
def test_query_parses_and_uses_contract_names(expression: Expression) -> None:
    metrics, labels = names_in(expression.promql)
    assert metrics, "a query must read at least one series"
    assert metrics <= semconv.prometheus_metric_names(), metrics - semconv.prometheus_metric_names()
    assert labels <= contract_labels() | PROMETHEUS_LABELS, labels - contract_labels()


def test_legends_use_contract_labels() -> None:
    allowed = contract_labels() | PROMETHEUS_LABELS
    from tests.dashboards.expressions import dashboard_files, load, panels

    for path in dashboard_files():
        for panel in panels(load(path)):
            for target in panel.get("targets", []):
                used = set(
                    re.findall(r"\{\{\s*([a-zA-Z_]+)\s*\}\}", target.get("legendFormat", ""))
                )
                assert used <= allowed, (panel["title"], used - allowed)


def test_substitution_covers_grafana_variables() -> None:
    expression = Expression("x", "y", 'rate(m{pod=~"$pod", gpu=~"${gpu}"}[$__rate_interval])')
    assert expression.promql == 'rate(m{pod=~".*", gpu=~".*"}[1m])'
    variable = Expression("x", "y", 'label_values(m{namespace=~"$namespace"}, pod)')
    assert variable.promql == 'count by (pod) (m{namespace=~".*"})'


def test_names_check_rejects_unknown_names() -> None:
    metrics, labels = names_in('sum by (node) (rate(wan_gpu_util{pod="x"}[1m]))')
    assert "wan_gpu_util" not in semconv.prometheus_metric_names() and metrics == {"wan_gpu_util"}
    assert labels == {"node", "pod"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="apt-get install prometheus")
def test_promtool_parses_every_query(tmp_path: Path) -> None:
    """Prometheus' own parser (the version CI installs) accepts every query."""
    rules = [
        {"record": f"wan:dashboard_query_{i}", "expr": e.promql} for i, e in enumerate(EXPRESSIONS)
    ]
    path = tmp_path / "queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_traceql_uses_contract_attributes() -> None:
    queries = list(tempo_queries())
    assert queries
    for query in queries:
        if query.text == "$trace_id":
            continue
        attributes = set(re.findall(r"\bspan\.([a-z0-9_.]+)", query.text))
        known = {v for v in vars(semconv).values() if isinstance(v, str)}
        assert attributes and attributes <= known, attributes - known
        assert "wan.run.id" in query.text or semconv.SPAN_GENERATE in query.text
