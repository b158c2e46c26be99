"""HTTP endpoints over a real socket: content negotiation, health, readiness and recovery."""

from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Callable, Iterator

import pytest

from wan_otel import semconv
from wan_otel.exporter.fake import FakeBackend, FakeGpu
from wan_otel.exporter.sampler import Sampler
from wan_otel.exporter.server import ExporterServer, make_app

from .conftest import ManualClock, registry_for

MakeSampler = Callable[..., tuple[Sampler, FakeBackend]]


def get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, whatever the status."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request("GET", parts.path, headers={"Accept": accept} if accept else {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        connection.close()


@pytest.fixture
def served(make_sampler: MakeSampler) -> Iterator[tuple[str, Sampler, FakeBackend]]:
    sampler, backend = make_sampler([FakeGpu()])
    server = ExporterServer(make_app(registry_for(sampler), sampler.ready), "127.0.0.1", 0)
    server.start()
    yield f"http://127.0.0.1:{server.port}", sampler, backend
    server.stop()


def test_metrics_negotiates_prometheus_text_and_openmetrics(
    served: tuple[str, Sampler, FakeBackend],
) -> None:
    url, sampler, _ = served
    sampler.sample_once()
    status, ctype, body = get(url + "/metrics")
    assert (status, ctype) == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert "# TYPE wan_gpu_sm_active_seconds_total counter" in body
    status, ctype, body = get(url + "/metrics", "application/openmetrics-text; version=1.0.0")
    assert status == 200 and ctype.startswith("application/openmetrics-text; version=1.0.0")
    assert "# UNIT wan_gpu_sm_active_seconds seconds" in body
    assert body.endswith("# EOF\n")


def test_readyz_is_503_while_nvml_fails_then_200_after_recovery(
    served: tuple[str, Sampler, FakeBackend], clock: ManualClock
) -> None:
    url, sampler, backend = served
    backend.fail_next_inits(1)
    sampler.sample_once()
    assert get(url + "/healthz")[0] == 200  # the process is alive all along
    status, _, body = get(url + "/readyz")
    assert (status, body) == (503, "not ready: GPU backend down or no fresh sample\n")
    assert f"{semconv.EXPORTER_UP} 0.0" in get(url + "/metrics")[2]

    clock.advance(1.0)  # first backoff
    sampler.sample_once()
    assert get(url + "/readyz")[:1] == (200,)
    assert f"{semconv.EXPORTER_UP} 1.0" in get(url + "/metrics")[2]

    clock.advance(sampler.stale_after_s + 0.5)  # the sampler stalls: no fresh sample
    assert get(url + "/readyz")[0] == 503


def test_unknown_paths_are_404(served: tuple[str, Sampler, FakeBackend]) -> None:
    assert get(served[0] + "/nope")[0] == 404


def test_scrapes_never_call_the_backend(served: tuple[str, Sampler, FakeBackend]) -> None:
    url, sampler, backend = served
    sampler.sample_once()
    reads = backend.read_calls
    for _ in range(5):
        assert get(url + "/metrics")[0] == 200
    assert backend.read_calls == reads == 1
