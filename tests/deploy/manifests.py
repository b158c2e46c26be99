"""Renders the kustomize overlays (``kubectl kustomize``, offline) and indexes the objects.

kubectl is needed; where it is missing the tests skip, except under CI (``CI`` set), where a
missing kubectl is a failure: the render is the point of these tests.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if p.is_dir())

Object = dict[str, Any]


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        message = "kubectl is not installed (kubectl kustomize renders the overlays)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@functools.cache
def _render(path: str) -> tuple[Object, ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", path], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def render(overlay: str) -> list[Object]:
    return list(_render(str(DEPLOY / "overlays" / overlay)))


def find(objects: list[Object], kind: str, name: str | None = None) -> list[Object]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: list[Object], kind: str, name: str) -> Object:
    found = find(objects, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet")


def workloads(objects: list[Object]) -> Iterator[Object]:
    return (o for o in objects if o["kind"] in WORKLOAD_KINDS)


def pod_spec(workload: Object) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def pod_labels(workload: Object) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """matchLabels semantics (the only selector form these manifests use)."""
    assert set(selector) <= {"matchLabels"}, selector
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def container_ports(workload: Object) -> dict[str, int]:
    return {
        port["name"]: port["containerPort"]
        for container in pod_spec(workload)["containers"]
        for port in container.get("ports", [])
    }
