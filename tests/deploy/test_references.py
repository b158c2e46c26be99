"""Cross-references inside each rendered overlay: Services and their pods and ports, volumes
and the objects they name, the OTLP endpoint and the Collector, security and resources."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import pytest

from tests.deploy.manifests import (
    OVERLAYS,
    Object,
    container_ports,
    find,
    one,
    pod_labels,
    pod_spec,
    render,
    selects,
    workloads,
)


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def serving_container(objects: list[Object]) -> dict[str, Any]:
    spec = pod_spec(one(objects, "Deployment", "wan-otel-serving"))
    return next(c for c in spec["containers"] if c["name"] == "wan")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_pods_and_target_named_ports(overlay: str) -> None:
    objects = render(overlay)
    for service in find(objects, "Service"):
        selected = [
            w
            for w in workloads(objects)
            if selects({"matchLabels": service["spec"]["selector"]}, pod_labels(w))
        ]
        assert len(selected) == 1, service["metadata"]["name"]
        ports = container_ports(selected[0])
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert target in ports, (service["metadata"]["name"], target)
            assert ports[target] == port["port"], "Service and container use the same number"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workload_selectors_match_their_templates(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        assert selects(workload["spec"]["selector"], pod_labels(workload))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_volumes_and_accounts_name_existing_objects(overlay: str) -> None:
    objects = render(overlay)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for workload in workloads(objects):
        spec = pod_spec(workload)
        assert ("ServiceAccount", spec["serviceAccountName"]) in names
        mounted = {m["name"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        assert mounted == set(volumes), workload["metadata"]["name"]
        for volume in volumes.values():
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names
            if "persistentVolumeClaim" in volume:
                assert (
                    "PersistentVolumeClaim",
                    volume["persistentVolumeClaim"]["claimName"],
                ) in names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_are_locked_down_and_sized(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        assert not spec.get("hostNetwork") and not spec.get("hostIPC")
        for container in spec["containers"]:
            context = container["securityContext"]
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert not context.get("privileged"), where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
            assert container.get("livenessProbe") and container.get("readinessProbe"), where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_serving_pod_owns_one_gpu(overlay: str) -> None:
    objects = render(overlay)
    container = serving_container(objects)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    for workload in workloads(objects):
        for other in pod_spec(workload)["containers"]:
            if other is not container and workload["metadata"]["name"] == "wan-otel-serving":
                assert "nvidia.com/gpu" not in other["resources"].get("limits", {})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_in_pod_exporter_matches_its_port(overlay: str) -> None:
    objects = render(overlay)
    container = serving_container(objects)
    values = env(container)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == 8000 and "--port 8000" in container["args"][0]
    script = container["args"][0]
    if values["WAN_OTEL_IN_POD_EXPORTER"] == "1":
        assert ports["gpu-metrics"] == 9435 and "exporter --port 9435" in script
        assert {"POD_NAME", "POD_NAMESPACE"} <= set(values)  # the exporter's pod labels
    else:
        assert "gpu-metrics" not in ports
        assert overlay == "node-exporter"
    assert values["WAN_OTEL_MODEL_ARGS"].split()[0] in ("--preset", "--model")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_otlp_endpoint_is_the_collector_service(overlay: str) -> None:
    objects = render(overlay)
    values = env(serving_container(objects))
    url = urlparse(values["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert values["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    service = one(objects, "Service", url.hostname or "")
    assert url.port in [p["port"] for p in service["spec"]["ports"] if p["name"] == "otlp-http"]
    assert values["OTEL_METRICS_EXPORTER"] == "none"  # scraped, not pushed: no double counting


def test_production_serves_the_checkpoint_from_the_models_volume() -> None:
    objects = render("production")
    container = serving_container(objects)
    model_dir = env(container)["WAN_OTEL_MODEL_ARGS"].split()[1]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True and model_dir.startswith("/models/")
