"""The OpenTelemetry Collector config: OTLP in on all interfaces, traces to Tempo, every
pipeline component defined; the dev overlay's second --config adds the file exporter (merged
as the Collector merges configs: maps deep-merged, lists replaced) on a writable volume."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.deploy.manifests import OVERLAYS, find, one, pod_spec, render


def merge(base: Any, extra: Any) -> Any:
    if isinstance(base, dict) and isinstance(extra, dict):
        return {
            k: merge(base[k], extra[k]) if k in base and k in extra else extra.get(k, base.get(k))
            for k in {**base, **extra}
        }
    return extra


def collector(overlay: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(effective config, container) of the Collector in ``overlay``."""
    objects = render(overlay)
    spec = pod_spec(one(objects, "Deployment", "wan-otel-collector"))
    (container,) = spec["containers"]
    volume = next(v for v in spec["volumes"] if v["name"] == "config")
    files = one(objects, "ConfigMap", volume["configMap"]["name"])["data"]
    mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "config")
    config: dict[str, Any] = {}
    for arg in container["args"]:
        path = arg.removeprefix("--config=")
        assert path.startswith(mount + "/"), arg
        config = merge(config, yaml.safe_load(files[path.removeprefix(mount + "/")]))
    return config, container


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pipelines_use_defined_components(overlay: str) -> None:
    config, _ = collector(overlay)
    for name, pipeline in config["service"]["pipelines"].items():
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section, []):
                assert component in config[section], f"{name}: {section} {component}"
    for extension in config["service"].get("extensions", []):
        assert extension in config["extensions"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_otlp_listens_on_all_interfaces_and_ports_are_declared(overlay: str) -> None:
    config, container = collector(overlay)
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"otlp-grpc": 4317, "otlp-http": 4318, "health": 13133}
    assert config["extensions"]["health_check"]["endpoint"].endswith(":13133")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_traces_go_to_tempo(overlay: str) -> None:
    config, container = collector(overlay)
    assert "otlp/tempo" in config["service"]["pipelines"]["traces"]["exporters"]
    assert config["exporters"]["otlp/tempo"]["endpoint"] == "${env:TEMPO_OTLP_ENDPOINT}"
    values = {e["name"]: e["value"] for e in container["env"]}
    host, port = values["TEMPO_OTLP_ENDPOINT"].rsplit(":", 1)
    assert host and port == "4317"
    assert config["service"]["pipelines"]["traces"]["processors"][0] == "memory_limiter"


def test_dev_overlay_also_writes_spans_to_a_file_on_a_volume() -> None:
    config, container = collector("dev")
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["otlp/tempo", "file/spans"]
    path = config["exporters"]["file/spans"]["path"]
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert any(path.startswith(m + "/") for m in mounts), (path, mounts)
    for overlay in ("production", "node-exporter"):
        assert (
            "file/spans" not in collector(overlay)[0]["service"]["pipelines"]["traces"]["exporters"]
        )


def test_merge_follows_the_collector_rules() -> None:
    assert merge({"a": {"b": 1, "l": [1]}}, {"a": {"c": 2, "l": [2, 3]}}) == {
        "a": {"b": 1, "c": 2, "l": [2, 3]}
    }


def test_grafana_dashboard_config_maps() -> None:
    objects = render("production")
    maps = [
        c
        for c in find(objects, "ConfigMap")
        if c["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    assert sorted(k for c in maps for k in c["data"]) == [
        "wan-otel-gpu.json",
        "wan-otel-run.json",
        "wan-otel-serving.json",
    ]
