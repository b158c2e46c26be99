"""End to end: a real Prometheus scrapes the exporter (fake GPUs) and ``rate()`` of the SM
activity counter recovers the scripted duty cycle."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from tests.integration.conftest import StartPrometheus, query
from wan_otel import semconv
from wan_otel.exporter.collector import SnapshotCollector
from wan_otel.exporter.fake import ActivityProfile, FakeBackend, FakeGpu
from wan_otel.exporter.sampler import Sampler
from wan_otel.exporter.server import ExporterServer, make_app

pytestmark = pytest.mark.integration


@pytest.fixture
def exporter() -> Iterator[str]:
    """The exporter on a free port: GPU 0 busy 50 %, GPU 1 busy 25 % of every 20 ms."""
    gpus = [
        FakeGpu(profile=ActivityProfile.duty_cycle(0.5, period_s=0.02)),
        FakeGpu(profile=ActivityProfile.duty_cycle(0.25, period_s=0.02)),
    ]
    # 0.1 s samples: a scrape sees the integral up to at most 0.1 s ago, and the lag is nearly
    # the same at both ends of a rate() window, so the rate error stays well under 0.01.
    sampler = Sampler(FakeBackend(gpus), interval_s=0.1)
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(sampler, hostname="it-node"))
    server = ExporterServer(make_app(registry, sampler.ready), "127.0.0.1", 0)
    server.start()
    sampler.start()
    yield f"127.0.0.1:{server.port}"
    sampler.close()
    server.stop()


def test_prometheus_rate_of_sm_active_recovers_the_duty_cycle(
    exporter: str, start_prometheus: StartPrometheus
) -> None:
    base_url = start_prometheus([exporter], scrape_interval="1s")
    deadline = time.monotonic() + 25
    scrapes = 0.0
    while time.monotonic() < deadline:
        result = query(base_url, 'count_over_time(up{job="wan"}[1m])')
        scrapes = float(result[0]["value"][1]) if result else 0.0
        if scrapes >= 12:
            break
        time.sleep(0.5)
    assert scrapes >= 12, f"only {scrapes} scrapes in time"

    assert float(query(base_url, semconv.EXPORTER_UP)[0]["value"][1]) == 1.0
    rates = {
        r["metric"][semconv.LABEL_GPU]: float(r["value"][1])
        for r in query(base_url, f"rate({semconv.GPU_SM_ACTIVE}[10s])")
    }
    assert rates.keys() == {"0", "1"}
    assert rates["0"] == pytest.approx(0.50, abs=0.01)
    assert rates["1"] == pytest.approx(0.25, abs=0.01)
    sources = query(base_url, f"count by (source) ({semconv.GPU_SM_ACTIVE})")
    assert [s["metric"]["source"] for s in sources] == [semconv.SOURCE_GPM]
