"""The real ``wan-otel exporter`` process: flags, SIGTERM, and NVML missing on this machine."""

from __future__ import annotations

import ctypes.util
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wan_otel import semconv
from wan_otel.cli import main

from .test_server import get


def start_exporter(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen[str], str]:
    """Runs ``python -m wan_otel.exporter`` on a free port; returns it and its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "wan_otel.exporter", "--host", "127.0.0.1", "--port", "0", *flags],
        cwd=tmp_path,  # not the repository root: import the installed package
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 20
    line = ""
    while time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([process.stderr], [], [], 0.1)
        if ready:
            line = process.stderr.readline()
            if "serving" in line:
                break
    match = re.search(r"http://[\d.]+:(\d+)/metrics", line)
    if not match:
        process.kill()
        pytest.fail(f"exporter did not start: {line!r}")
    return process, f"http://127.0.0.1:{match.group(1)}"


@pytest.fixture
def exporter(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process, url = start_exporter(tmp_path, *request.param)
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait()


def wait_for(url: str, status: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while get(url)[0] != status:
        assert time.monotonic() < deadline, f"{url} never answered {status}"
        time.sleep(0.05)


@pytest.mark.parametrize("exporter", [("--backend", "fake", "--interval", "0.1")], indirect=True)
def test_sigterm_exits_within_one_second(exporter: tuple[subprocess.Popen[str], str]) -> None:
    process, url = exporter
    wait_for(url + "/readyz", 200)
    assert f"{semconv.EXPORTER_UP} 1.0" in get(url + "/metrics")[2]
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 0
    assert time.monotonic() - started < 1.0


@pytest.mark.skipif(
    ctypes.util.find_library("nvidia-ml") is not None, reason="an NVIDIA driver is installed"
)
@pytest.mark.parametrize(
    "exporter",
    [
        (
            "--backend",
            "nvml",
        )
    ],
    indirect=True,
)
def test_without_nvml_the_exporter_stays_up_and_unready(
    exporter: tuple[subprocess.Popen[str], str],
) -> None:
    process, url = exporter
    assert get(url + "/healthz")[0] == 200
    assert get(url + "/readyz")[0] == 503
    errors = re.compile(rf'^{semconv.EXPORTER_NVML_ERRORS}{{call="nvmlInit"}} (\S+)$', re.M)
    deadline = time.monotonic() + 5
    while not errors.search(body := get(url + "/metrics")[2]):  # after the first sample
        assert time.monotonic() < deadline, body
        time.sleep(0.05)
    assert f"{semconv.EXPORTER_UP} 0.0" in body
    match = errors.search(body)
    assert match is not None and float(match.group(1)) >= 1.0  # one per attempt, backing off
    assert "process_resident_memory_bytes" in body  # the exporter's own footprint
    assert process.poll() is None


def test_interval_below_gpm_floor_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["exporter", "--backend", "fake", "--interval", "0.05"])
    assert exit_info.value.code == 2
    assert "NVML GPM needs at least 100 ms" in capsys.readouterr().err


def test_bad_fake_profile_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exporter", "--backend", "fake", "--fake-profile", "lots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wan-otel: --fake-profile 'lots': expected BUSY[/PERIOD_S]")
    assert err.count("\n") == 1


def test_port_in_use_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["exporter", "--backend", "fake", "--host", "127.0.0.1", "--port", str(port)])
    assert code == 2
    assert capsys.readouterr().err.startswith(f"wan-otel: cannot listen on 127.0.0.1:{port}")
