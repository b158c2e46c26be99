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


def usage_error(capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    """The error of a flag argparse refuses: exit 2 and exactly one line naming the flag."""
    with pytest.raises(SystemExit) as exit_info:
        main(["exporter", *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("wan-otel exporter: argument ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("99999", "port 99999 is outside 0..65535"),
        ("65536", "port 65536 is outside 0..65535"),
        ("-1", "port -1 is outside 0..65535"),
        ("http", "'http' is not a whole number"),
    ],
)
def test_ports_outside_the_range_are_usage_errors(
    capsys: pytest.CaptureFixture[str], value: str, reason: str
) -> None:
    assert f"argument --port: {reason}" in usage_error(capsys, "--port", value)


def test_port_in_use_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["exporter", "--backend", "fake", "--host", "127.0.0.1", "--port", str(port)])
    assert code == 2
    assert capsys.readouterr().err == (
        f"wan-otel: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )


def test_a_host_that_cannot_be_bound_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["exporter", "--backend", "fake", "--host", "192.0.2.1", "--port", "0"])
    assert code == 2  # TEST-NET-1: never an address of this machine
    err = capsys.readouterr().err
    assert err.startswith("wan-otel: cannot listen on 192.0.2.1:0: ") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0.05", "sampling interval 0.05 s is below 0.1 s: NVML GPM needs at least 100 ms"),
        ("0", "sampling interval 0.0 s is not positive"),
        ("-1", "sampling interval -1.0 s is not positive"),
        ("inf", "sampling interval inf is not a finite number of seconds"),
        ("nan", "sampling interval nan is not a number of seconds"),
        ("1e9", "sampling interval 1000000000.0 s is above 3600 s"),
        ("soon", "'soon' is not a number"),
    ],
)
def test_unusable_intervals_are_usage_errors_with_their_reason(
    capsys: pytest.CaptureFixture[str], value: str, reason: str
) -> None:
    error = usage_error(capsys, "--interval", value)
    assert f"argument --interval: {reason}" in error


@pytest.mark.parametrize(
    ("flag", "value", "reason"),
    [
        ("--fake-gpus", "0", "GPU count 0 is outside 1..256"),
        ("--fake-gpus", "-2", "GPU count -2 is outside 1..256"),
        ("--fake-gpus", "257", "GPU count 257 is outside 1..256"),
        ("--fake-gpus", "2.5", "'2.5' is not a whole number"),
        ("--max-connections", "0", "connection limit 0 is outside 1..65536"),
    ],
)
def test_counts_outside_their_range_are_usage_errors(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, reason: str
) -> None:
    error = usage_error(capsys, "--backend", "fake", flag, value)
    assert f"argument {flag}: {reason}" in error


@pytest.mark.parametrize("flag", ["--header-timeout", "--idle-timeout", "--write-timeout"])
@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "3601"])
def test_unusable_timeouts_are_usage_errors(
    capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    error = usage_error(capsys, flag, value)
    assert f"argument {flag}: timeout {value} s is outside (0, 3600] seconds" in error


READ_INTERVALS = [
    ("--energy-interval", "energy interval", 300, "reads the counter every sample"),
    ("--gauge-interval", "gauge interval", 60, "reads them every sample"),
]


@pytest.mark.parametrize(
    ("flag", "what", "high", "every_sample", "value"),
    [(*flag, value) for flag in READ_INTERVALS for value in ("-1", "nan", "inf", f"{flag[2] + 1}")],
)
def test_unusable_read_intervals_are_usage_errors(
    capsys: pytest.CaptureFixture[str],
    flag: str,
    what: str,
    high: int,
    every_sample: str,
    value: str,
) -> None:
    error = usage_error(capsys, flag, value)
    assert (
        f"argument {flag}: {what} {value} s is outside 0..{high} seconds (0 {every_sample})"
    ) in error


@pytest.mark.parametrize(("flag", "value"), [("--fake-gpus", "2"), ("--fake-profile", "0.5")])
def test_fake_backend_flags_need_the_fake_backend(
    capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    assert main(["exporter", flag, value]) == 2
    assert capsys.readouterr().err == (
        f"wan-otel: {flag} needs --backend fake (the backend is nvml)\n"
    )


def test_bad_fake_profile_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exporter", "--backend", "fake", "--fake-profile", "lots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wan-otel: --fake-profile 'lots': expected BUSY[/PERIOD_S]")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "exporter",
    [("--backend", "fake", "--fake-gpus", "2", "--idle-timeout", "0.3", "--max-connections", "2")],
    indirect=True,
)
def test_http_flags_reach_the_server(exporter: tuple[subprocess.Popen[str], str]) -> None:
    import socket

    from .test_server import read_response

    _, url = exporter
    address = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
    with socket.create_connection(address, 5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock)[0] == 200
        assert sock.recv(100) == b""  # closed once idle for --idle-timeout 0.3 s, not 5 s
    with (
        socket.create_connection(address, 5),
        socket.create_connection(address, 5),
        socket.create_connection(address, 5) as third,  # accepted after the two: FIFO
    ):
        assert read_response(third)[0] == 503  # over --max-connections 2
