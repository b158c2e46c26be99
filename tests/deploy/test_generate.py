"""deploy/generate.py: the generated manifests are current and say what their sources say."""

from __future__ import annotations

import importlib.util
import json
from types import ModuleType

import yaml

from tests.deploy.manifests import DEPLOY, ROOT


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_generate", DEPLOY / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = load_generator()


def test_generated_files_are_current() -> None:
    for path, text in generate.generated().items():
        assert path.read_text() == text, f"run python deploy/generate.py ({path.name})"
    assert generate.main(["--check"]) == 0


def test_prometheus_rule_spec_is_the_rules_file() -> None:
    (rule,) = yaml.safe_load_all(generate.PROMETHEUS_RULE.read_text())
    assert rule["spec"] == yaml.safe_load((DEPLOY / "rules" / "wan-otel.rules.yml").read_text())
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_dashboard_config_maps_carry_the_dashboards() -> None:
    maps = list(yaml.safe_load_all(generate.GRAFANA_DASHBOARDS.read_text()))
    found = {}
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        for name, text in config_map["data"].items():
            found[name] = json.loads(text)
    expected = {p.name: json.loads(p.read_text()) for p in (ROOT / "dashboards").glob("*.json")}
    assert found == expected
