"""``wan-otel serve`` flags: bad ones, a busy port and a store held by another server are one
line on stderr and exit 2."""

from __future__ import annotations

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
    ],
)
def test_bad_flags(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: list[str], says: str
) -> None:
    assert serve(capsys, "--store", str(tmp_path), *flags) == (2, says)


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
