"""Alert rules: promtool checks and unit tests, and only contract names in expressions."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

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
    assert "SUCCESS: 11 rules found" in result.stdout


@needs_promtool
def test_promtool_test_rules() -> None:
    result = _promtool("test", "rules", TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_use_only_contract_names() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    records = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    used = set()
    for group in groups:
        for rule in group["rules"]:
            used |= set(re.findall(r"\bwan[_:][a-z0-9_:]+", rule["expr"]))
    unknown = used - semconv.prometheus_metric_names() - records
    assert unknown == set()
    alerts = [r["alert"] for g in groups for r in g["rules"] if "alert" in r]
    assert alerts == [
        "WanDenoiseStepSlow",
        "WanDenoiseStepRegression",
        "WanGpuIdleDuringGeneration",
        "WanGpuMemoryNearCapacity",
        "WanGenerationFailures",
        "WanGpuExporterDown",
        "WanGpuExporterAbsent",
        "WanSpansDropped",
    ]
