"""A real Prometheus on loopback, for integration tests.

``start_prometheus(targets)`` (fixture) starts Debian's ``prometheus`` with its storage and
config in a temporary folder, on a free 127.0.0.1 port, scraping ``targets`` (``host:port``)
every ``scrape_interval``; it returns the base URL once the server is ready and stops it at the
end of the test. Tests are skipped where ``prometheus`` is not installed.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.exporter.source_tree import map_source_tree

map_source_tree()

StartPrometheus = Callable[..., str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def query(base_url: str, promql: str) -> list[dict[str, Any]]:
    """Instant query; the ``result`` list of a vector answer."""
    url = f"{base_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[StartPrometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    processes: list[subprocess.Popen[bytes]] = []

    def start(targets: Sequence[str], scrape_interval: str = "1s", job: str = "wan") -> str:
        work = tmp_path / f"prometheus-{len(processes)}"
        (work / "data").mkdir(parents=True)
        config = work / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {scrape_interval}\n"
            f"  scrape_timeout: {scrape_interval}\n"
            "scrape_configs:\n"
            f"  - job_name: {job}\n"
            "    static_configs:\n"
            f"      - targets: {json.dumps(list(targets))}\n"
        )
        port = free_port()
        log = (work / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(base_url + "/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return base_url
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"prometheus did not start: {(work / 'prometheus.log').read_text()}"
                )
            time.sleep(0.1)

    yield start
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
