"""Every overlay renders offline and its built-in objects pass ``kubernetes-validate --strict``
(Prometheus Operator objects are checked in test_operator.py)."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import OVERLAYS, find, one, render

kubernetes_validate = pytest.importorskip("kubernetes_validate")

KUBERNETES_VERSION = "1.30"
"""The oldest Kubernetes these manifests target (native sidecars, seccomp defaults)."""
OPERATOR_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
CLUSTER_SCOPED = {"Namespace"}


def test_overlays_exist() -> None:
    assert OVERLAYS == ["dev", "node-exporter", "production"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_built_in_objects_validate_strictly(overlay: str) -> None:
    objects = render(overlay)
    checked = 0
    for obj in objects:
        if obj["kind"] in OPERATOR_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.path}: {exc.message}")
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lands_in_the_overlay_namespace(overlay: str) -> None:
    objects = render(overlay)
    namespace = one(objects, "Namespace", find(objects, "Namespace")[0]["metadata"]["name"])
    name = namespace["metadata"]["name"]
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace") == name, obj["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_expected_objects(overlay: str) -> None:
    objects = render(overlay)
    one(objects, "Deployment", "wan-otel-serving")
    one(objects, "Service", "wan-otel-serving")
    one(objects, "Deployment", "wan-otel-collector")
    one(objects, "Service", "wan-otel-collector")
    one(objects, "PodMonitor", "wan-otel-serving")
    one(objects, "PrometheusRule", "wan-otel")
    assert (
        len(
            [
                c
                for c in find(objects, "ConfigMap")
                if "grafana_dashboard" in c["metadata"]["labels"]
            ]
        )
        == 3
    )
    daemonsets = find(objects, "DaemonSet")
    assert [d["metadata"]["name"] for d in daemonsets] == (
        ["wan-otel-gpu-exporter"] if overlay == "node-exporter" else []
    )
