"""The Docker Compose stack: its files exist, and every address one service uses to reach
another names a service and a port that service listens on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from tests.deploy.manifests import DEPLOY, ROOT
from tests.deploy.test_dockerfile import stages

COMPOSE_DIR = DEPLOY / "compose"


def load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


COMPOSE = load(COMPOSE_DIR / "compose.yaml")
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path, for the service's bind mounts (named volumes left out)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (COMPOSE_DIR / source).resolve()
    return mounts


def mounted_file(service: str, container_path: str) -> Path:
    for target, source in bind_mounts(SERVICES[service]).items():
        if container_path == target:
            return source
        if container_path.startswith(target + "/"):
            return source / container_path.removeprefix(target + "/")
    raise AssertionError(f"{service} does not mount {container_path}")


def listens(service: str) -> set[int]:
    """Ports a service's process listens on, from its own command or config."""
    spec = SERVICES[service]
    command = spec.get("command", [])
    if "--port" in command:
        return {int(command[command.index("--port") + 1])}
    if service == "collector":
        config = yaml.safe_load(mounted_file("collector", "/etc/otelcol/config.yaml").read_text())
        protocols = config["receivers"]["otlp"]["protocols"]
        return {int(p["endpoint"].rsplit(":", 1)[1]) for p in protocols.values()}
    if service == "tempo":
        config = load(mounted_file("tempo", "/etc/tempo/tempo.yaml"))
        grpc = config["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        return {config["server"]["http_listen_port"], int(grpc.rsplit(":", 1)[1])}
    return {"prometheus": {9090}, "grafana": {3000}}[service]


def reaches(address: str) -> None:
    url = urlparse(address if "://" in address else f"tcp://{address}")
    assert url.hostname in SERVICES, address
    assert url.port in listens(url.hostname), address


def test_services() -> None:
    assert set(SERVICES) == {
        "wan",
        "exporter",
        "collector",
        "tempo",
        "prometheus",
        "grafana",
        "init-volumes",
    }


def test_bind_mounted_files_exist() -> None:
    for name, service in SERVICES.items():
        for target, source in bind_mounts(service).items():
            assert source.exists(), f"{name}: {source} for {target}"


def test_builds_name_dockerfile_stages() -> None:
    targets = set(stages())
    built = {name: s["build"] for name, s in SERVICES.items() if "build" in s}
    assert set(built) == {"wan", "exporter"}
    for build in built.values():
        assert (COMPOSE_DIR / build["context"]).resolve() == ROOT
        assert build["target"] in targets


def test_published_ports_are_the_listening_ones() -> None:
    for name, service in SERVICES.items():
        for published in service.get("ports", []):
            _host, container = published.split(":")
            assert int(container) in listens(name), (name, published)


def test_prometheus_scrapes_the_servers_and_loads_the_rules() -> None:
    config = load(mounted_file("prometheus", "/etc/prometheus/prometheus.yml"))
    targets = [
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    ]
    assert sorted(targets) == ["exporter:9435", "wan:8000"]
    for target in targets:
        reaches(target)
    for rule_file in config["rule_files"]:
        assert (
            mounted_file("prometheus", rule_file)
            == (DEPLOY / "rules" / "wan-otel.rules.yml").resolve()
        )


def test_telemetry_paths() -> None:
    reaches(SERVICES["wan"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"])
    reaches(SERVICES["collector"]["environment"]["TEMPO_OTLP_ENDPOINT"])
    for arg in SERVICES["collector"]["command"]:
        assert mounted_file("collector", arg.removeprefix("--config=")).exists()


def test_grafana_provisioning() -> None:
    root = mounted_file("grafana", "/etc/grafana/provisioning")
    datasources = load(root / "datasources" / "datasources.yaml")["datasources"]
    assert {d["type"]: d["uid"] for d in datasources} == {
        "prometheus": "prometheus",
        "tempo": "tempo",
    }
    for datasource in datasources:
        reaches(datasource["url"])
    prometheus = next(d for d in datasources if d["type"] == "prometheus")
    (destination,) = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert destination["datasourceUid"] == "tempo"
    (provider,) = load(root / "dashboards" / "dashboards.yaml")["providers"]
    folder = mounted_file("grafana", provider["options"]["path"])
    assert sorted(p.name for p in folder.glob("*.json")) == [
        "wan-otel-gpu.json",
        "wan-otel-run.json",
        "wan-otel-serving.json",
    ]
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert mounted_file("grafana", home).exists()


def test_gpu_services_reserve_gpus() -> None:
    for name in ("wan", "exporter"):
        (device,) = SERVICES[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="apt-get install prometheus")
def test_promtool_accepts_the_prometheus_config(tmp_path: Path) -> None:
    config = load(COMPOSE_DIR / "prometheus.yml")
    config["rule_files"] = [str(mounted_file("prometheus", f)) for f in config["rule_files"]]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        ["promtool", "check", "config", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
