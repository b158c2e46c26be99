"""Process owners from cgroup and environ files, on a fake /proc."""

from __future__ import annotations

from pathlib import Path

import pytest

from wan_otel.exporter.procinfo import ProcessOwner, ProcessResolver, parse_cgroup, parse_environ

CID = "0123456789abcdef" * 4
UID = "0a1b2c3d-0000-4000-8000-00000000beef"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # cgroup v2, systemd driver, containerd
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
            f"{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope\n",
            (CID, UID),
        ),
        (  # cgroup v1, cgroupfs driver
            f"12:memory:/kubepods/besteffort/pod{UID}/{CID}\n11:cpu:/kubepods/besteffort/pod{UID}/{CID}\n",
            (CID, UID),
        ),
        (f"0::/system.slice/docker-{CID}.scope\n", (CID, "")),  # plain docker
        ("0::/user.slice/user-1000.slice/session-3.scope\n", ("", "")),  # no container
        ("0::/\n", ("", "")),  # private cgroup namespace
        ("", ("", "")),
    ],
)
def test_parse_cgroup(text: str, expected: tuple[str, str]) -> None:
    assert parse_cgroup(text) == expected


def test_parse_environ_keeps_only_the_downward_api() -> None:
    data = b"HOME=/root\0POD_NAME=wan-0\0POD_NAMESPACE=video\0SECRET=x\0"
    assert parse_environ(data) == {"POD_NAME": "wan-0", "POD_NAMESPACE": "video"}


def _proc(root: Path, pid: str, cgroup: str, environ: bytes | None = None) -> None:
    (root / pid).mkdir(parents=True)
    (root / pid / "cgroup").write_text(cgroup)
    if environ is not None:
        (root / pid / "environ").write_bytes(environ)


def test_resolver(tmp_path: Path) -> None:
    own = f"0::/kubepods/pod{UID}/{'f' * 64}\n"
    _proc(tmp_path, "self", own)
    _proc(tmp_path, "10", f"0::/kubepods/pod{UID}/{CID}\n")  # same pod, environ unreadable
    other_uid = "99999999-0000-4000-8000-000000000000"
    _proc(tmp_path, "11", f"0::/kubepods/pod{other_uid}/{'e' * 64}\n")  # another pod
    _proc(tmp_path, "12", f"0::/kubepods/pod{other_uid}/{'d' * 64}\n", b"POD_NAME=job-1\0")
    resolver = ProcessResolver(tmp_path, own_pod="wan-0", own_namespace="video")
    owners = resolver.resolve([10, 11, 12, 13])
    assert owners == {
        10: ProcessOwner(CID, "wan-0", "video"),
        11: ProcessOwner("e" * 64, "", ""),
        12: ProcessOwner("d" * 64, "job-1", ""),
        13: ProcessOwner("", "wan-0", "video"),  # not visible here: the sidecar's own pod
    }


def test_resolver_cache_holds_only_the_latest_pids(tmp_path: Path) -> None:
    resolver = ProcessResolver(tmp_path)
    for pid in range(1000):
        resolver.resolve([pid, pid + 1])
    assert sorted(resolver._cache) == [999, 1000]
