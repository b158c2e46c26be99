"""Which container and pod a GPU process belongs to, from ``/proc/<pid>/cgroup`` and
``/proc/<pid>/environ``: the labels of the per-process memory series.

NVML reports host PIDs. They name the right ``/proc`` entry only where the exporter sees the
host PID namespace (``hostPID``) or shares it with the workload; elsewhere the lookup finds
nothing and the process falls back to the exporter's own pod (the sidecar case, where every
GPU process the exporter can see is in its pod). Results are cached per PID and the cache
holds only the PIDs of the latest sample, so it cannot grow without bound.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Container runtimes put the 64-hex container id in the last cgroup path component:
# docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope, /docker/<id>, /kubepods/.../<id>.
_CONTAINER_RE = re.compile(r"(?:^|[/-])([0-9a-f]{64})(?:\.scope)?$")
# The kubelet names pod cgroups pod<uid>; the systemd driver writes the uid's dashes as '_'.
_POD_UID_RE = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)


@dataclass(frozen=True)
class ProcessOwner:
    """Where a process runs; empty strings where unknown (Prometheus reads them as absent)."""

    container: str = ""
    pod: str = ""
    namespace: str = ""


def parse_cgroup(text: str) -> tuple[str, str]:
    """(container id, pod uid) found in a ``/proc/<pid>/cgroup`` file, empty where absent."""
    container = pod_uid = ""
    for line in text.splitlines():
        path = line.split(":", 2)[-1].strip()
        if not container:
            for part in reversed(path.split("/")):
                match = _CONTAINER_RE.search(part)
                if match:
                    container = match.group(1)
                    break
        if not pod_uid:
            found = _POD_UID_RE.search(path)
            if found:
                pod_uid = found.group(1).replace("_", "-")
    return container, pod_uid


def parse_environ(data: bytes) -> dict[str, str]:
    """The downward-API variables of a ``/proc/<pid>/environ`` file (NUL-separated)."""
    wanted = {}
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key in (b"POD_NAME", b"POD_NAMESPACE"):
            wanted[key.decode()] = value.decode(errors="replace")
    return wanted


class ProcessResolver:
    """Maps PIDs to ``ProcessOwner`` (see the module docstring)."""

    def __init__(
        self, proc_root: Path = Path("/proc"), own_pod: str = "", own_namespace: str = ""
    ) -> None:
        self._proc = proc_root
        self._own = ProcessOwner("", own_pod, own_namespace)
        self._own_pod_uid = parse_cgroup(self._read_text("self", "cgroup"))[1]
        self._cache: dict[int, ProcessOwner] = {}

    def resolve(self, pids: Iterable[int]) -> dict[int, ProcessOwner]:
        """Owners of ``pids``; forgets every PID not in this call."""
        fresh = {pid: self._cache.get(pid) or self._lookup(pid) for pid in set(pids)}
        self._cache = fresh
        return fresh

    def _lookup(self, pid: int) -> ProcessOwner:
        container, pod_uid = parse_cgroup(self._read_text(str(pid), "cgroup"))
        env = self._read_environ(pid)
        if "POD_NAME" in env:
            return ProcessOwner(container, env["POD_NAME"], env.get("POD_NAMESPACE", ""))
        if not pod_uid or pod_uid == self._own_pod_uid:
            return ProcessOwner(container, self._own.pod, self._own.namespace)
        return ProcessOwner(container)  # another pod whose name we cannot read

    def _read_text(self, pid: str, name: str) -> str:
        try:
            return (self._proc / pid / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def _read_environ(self, pid: int) -> dict[str, str]:
        try:  # readable only for our own user's processes (or with CAP_SYS_PTRACE)
            return parse_environ((self._proc / str(pid) / "environ").read_bytes())
        except OSError:
            return {}
