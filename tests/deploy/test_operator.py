"""Prometheus Operator objects (not in kubernetes-validate's schemas): a structural schema
taken from the operator's CRDs (the fields these manifests may use, unknown fields refused),
the label kube-prometheus-stack selects by, and what they point at."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.manifests import (
    DEPLOY,
    OVERLAYS,
    container_ports,
    find,
    pod_labels,
    render,
    selects,
    workloads,
)

DURATION = {"type": "string", "pattern": r"^(0|([0-9]+(ms|s|m|h|d|w|y))+)$"}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
SELECTOR = {
    "type": "object",
    "properties": {"matchLabels": LABELS, "matchExpressions": {"type": "array"}},
    "additionalProperties": False,
}
RELABELING = {
    "type": "object",
    "properties": {
        "sourceLabels": {"type": "array", "items": {"type": "string"}},
        "separator": {"type": "string"},
        "targetLabel": {"type": "string"},
        "regex": {"type": "string"},
        "modulus": {"type": "integer"},
        "replacement": {"type": "string"},
        "action": {
            "enum": [
                "replace",
                "keep",
                "drop",
                "hashmod",
                "labelmap",
                "labeldrop",
                "labelkeep",
                "lowercase",
                "uppercase",
                "keepequal",
                "dropequal",
            ]
        },
    },
    "additionalProperties": False,
}
METADATA = {
    "type": "object",
    "required": ["name", "labels"],
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": LABELS},
}
POD_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "selector": SELECTOR,
                "namespaceSelector": {"type": "object"},
                "jobLabel": {"type": "string"},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": DURATION,
                            "scrapeTimeout": DURATION,
                            "honorLabels": {"type": "boolean"},
                            "honorTimestamps": {"type": "boolean"},
                            "relabelings": {"type": "array", "items": RELABELING},
                            "metricRelabelings": {"type": "array", "items": RELABELING},
                        },
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        },
    },
}
RULE = {
    "type": "object",
    "required": ["expr"],
    "properties": {
        "record": {"type": "string"},
        "alert": {"type": "string"},
        "expr": {"type": ["string", "integer"]},
        "for": DURATION,
        "keep_firing_for": DURATION,
        "labels": LABELS,
        "annotations": LABELS,
    },
    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
    "additionalProperties": False,
}
PROMETHEUS_RULE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string"},
                            "interval": DURATION,
                            "rules": {"type": "array", "items": RULE},
                        },
                        "additionalProperties": False,
                    },
                }
            },
            "additionalProperties": False,
        },
    },
}
SCHEMAS = {"PodMonitor": POD_MONITOR, "PrometheusRule": PROMETHEUS_RULE}
SELECTED_BY = ("release", "kube-prometheus-stack")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_operator_objects_match_their_schema(overlay: str) -> None:
    objects = [o for o in render(overlay) if o["apiVersion"].startswith("monitoring.coreos.com")]
    assert {o["kind"] for o in objects} == set(SCHEMAS)
    for obj in objects:
        jsonschema.validate(obj, SCHEMAS[obj["kind"]])
        assert obj["metadata"]["labels"].get(SELECTED_BY[0]) == SELECTED_BY[1]


def test_schema_refuses_a_misspelt_field() -> None:
    monitor: dict[str, Any] = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "x", "labels": {}},
        "spec": {"selector": {"matchLabels": {}}, "podMetricsEndpoints": [{"prot": "http"}]},
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, POD_MONITOR)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_monitors_select_pods_and_name_their_ports(overlay: str) -> None:
    objects = render(overlay)
    for monitor in find(objects, "PodMonitor"):
        selected = [
            w for w in workloads(objects) if selects(monitor["spec"]["selector"], pod_labels(w))
        ]
        assert selected, f"PodMonitor {monitor['metadata']['name']} selects no pods"
        for workload in selected:
            ports = container_ports(workload)
            for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                assert endpoint["port"] in ports, (workload["metadata"]["name"], endpoint["port"])


def test_prometheus_rule_is_the_rules_file() -> None:
    rules = yaml.safe_load((DEPLOY / "rules" / "wan-otel.rules.yml").read_text())
    for overlay in OVERLAYS:
        (rule,) = find(render(overlay), "PrometheusRule")
        assert rule["spec"] == rules


def test_node_exporter_overlay_moves_gpu_metrics_to_the_daemonset() -> None:
    objects = render("node-exporter")
    (serving_monitor,) = find(objects, "PodMonitor", "wan-otel-serving")
    assert [e["port"] for e in serving_monitor["spec"]["podMetricsEndpoints"]] == ["http"]
    (gpu_monitor,) = find(objects, "PodMonitor", "wan-otel-gpu-exporter")
    (endpoint,) = gpu_monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["honorLabels"] is True
    assert {"action": "labeldrop", "regex": "pod|namespace|container"} in endpoint["relabelings"]
