"""Alert rules: promtool checks and unit tests, and only contract names (metrics and labels) in
expressions and annotations."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboards.promql_names import PROMETHEUS_LABELS, contract_labels, names_in
from wan_otel import semconv

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "rules" / "wan-otel.rules.yml"
TESTS = Path(__file__).parent / "wan-otel.rules.test.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="apt-get install prometheus")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=TESTS.parent)


@needs_promtool
def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 15 rules found" in result.stdout


@needs_promtool
def test_promtool_test_rules() -> None:
    result = _promtool("test", "rules", TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _rules() -> list[dict[str, Any]]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def test_rules_use_only_contract_names() -> None:
    """Metric names from the contract or a recording rule, label names from the contract: a
    run id can never become a label here."""
    rules = _rules()
    records = {r["record"] for r in rules if "record" in r}
    known_labels = contract_labels() | PROMETHEUS_LABELS
    used: set[str] = set()
    for rule in rules:
        metrics, labels = names_in(rule["expr"])
        used |= metrics
        assert labels <= known_labels, (rule.get("alert") or rule["record"], labels - known_labels)
        for text in rule.get("annotations", {}).values():
            templated = set(re.findall(r"\$labels\.([a-zA-Z_]+)", text))
            assert templated <= known_labels, (rule["alert"], templated - known_labels)
    assert used - semconv.prometheus_metric_names() - records == set()
    assert used - records >= {
        semconv.PROMETHEUS_NAMES[semconv.METRIC_COMM_DURATION] + "_sum",
        semconv.PROMETHEUS_NAMES[semconv.METRIC_WAIT_DURATION] + "_sum",
    }
    alerts = [r["alert"] for r in rules if "alert" in r]
    assert alerts == [
        "WanDenoiseStepSlow",
        "WanDenoiseStepRegression",
        "WanGpuIdleDuringGeneration",
        "WanGpuMemoryNearCapacity",
        "WanGenerationFailures",
        "WanGpuExporterDown",
        "WanGpuExporterAbsent",
        "WanSpansDropped",
        "WanParallelCommunicationBound",
        "WanParallelStragglerWait",
    ]


def test_names_check_sees_labels_of_joins_and_groupings() -> None:
    """The label check reads ``by``, ``on`` and ``group_left`` labels, where a run id would go."""
    _, labels = names_in("sum by (run_id) (rate(m[5m])) / on (pod) group_left (rank) n")
    assert labels == {"run_id", "pod", "rank"}
