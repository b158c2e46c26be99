"""``wan-otel serve`` flags: bad ones, a busy port and a store held by another server are one
line on stderr and exit 2."""

from __future__ import annotations

import resource
import socket
from pathlib import Path

import pytest

from wan_otel.cli import COMMANDS, main
from wan_otel.pipeline.serve.persist import store_lock


def serve(capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str]:
    code = main(["serve", "--preset", "tiny", "--host", "127.0.0.1", *flags])
    return code, capsys.readouterr().err


def test_the_command_is_registered() -> None:
    assert COMMANDS["serve"][0] == "wan_otel.pipeline.serve.cli"


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--max-queue", "0"], "wan-otel: --max-queue 0: must be 1 or more\n"),
        (["--grace-seconds", "-2"], "wan-otel: --grace-seconds -2.0: must be 0 to 3600\n"),
        (["--port", "70000"], "wan-otel: --port 70000: must be 0 to 65535\n"),
        (["--device", "cuda:0"], "wan-otel: --device cuda:0: CUDA is not available\n"),
        (
            ["--retention-hours", "-1"],
            "wan-otel: --retention-hours -1.0: must be 0 (keep for ever) to 876000 (100 years)\n",
        ),
        (
            ["--retention-hours", "1e9"],
            "wan-otel: --retention-hours 1000000000.0: must be 0 (keep for ever) to 876000 "
            "(100 years)\n",
        ),
        (["--read-timeout", "0"], "wan-otel: --read-timeout 0.0: must be 0.1 to 3600 seconds\n"),
        (["--idle-timeout", "nan"], "wan-otel: --idle-timeout nan: must be 0.1 to 3600 seconds\n"),
        (["--max-connections", "0"], "wan-otel: --max-connections 0: must be 1 to 1000000\n"),
        (
            ["--max-connections", "2000000"],
            "wan-otel: --max-connections 2000000: must be 1 to 1000000\n",
        ),
        (["--api-key", " "], "wan-otel: --api-key is empty; give a key or leave it unset\n"),
    ],
)
def test_bad_flags(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: list[str], says: str
) -> None:
    assert serve(capsys, "--store", str(tmp_path), *flags) == (2, says)


def test_more_connections_than_open_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no open-file limit on this machine")
    assert serve(capsys, "--store", str(tmp_path), "--max-connections", str(hard)) == (
        2,
        f"wan-otel: --max-connections {hard}: the open-file limit is {hard}; "
        f"give at most {hard - 256}\n",
    )


def test_an_empty_key_in_the_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAN_OTEL_API_KEY", "")
    assert serve(capsys, "--store", str(tmp_path)) == (
        2, "wan-otel: $WAN_OTEL_API_KEY is empty; give a key or leave it unset\n",
    )  # fmt: skip


def test_a_folder_that_is_no_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = main(["serve", "--model", str(tmp_path)]), capsys.readouterr().err
    assert code == 2
    assert (
        err == f"wan-otel: --model {tmp_path}: not a diffusers model folder (no model_index.json)\n"
    )


def test_a_busy_port_and_a_held_store(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, err = serve(capsys, "--store", str(tmp_path), "--port", str(port))
    assert code == 2
    assert err.startswith(f"wan-otel: cannot listen on 127.0.0.1:{port}: ")
    with store_lock(tmp_path):
        code, err = serve(capsys, "--store", str(tmp_path), "--port", "0")
    assert code == 2
    assert err.startswith(f"wan-otel: another wan-otel serve uses the store {tmp_path}")
