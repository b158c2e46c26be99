"""The /metrics body: the goldens' bytes in both formats, gzip, and one encoding per sample."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from wan_otel import semconv
from wan_otel.exporter.exposition import Exposition, Throttled
from wan_otel.exporter.fake import FakeBackend, FakeGpu
from wan_otel.exporter.sampler import Sampler

from .conftest import CountingChooser, ManualClock, registry_for

GOLDEN = Path(__file__).parent / "golden"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
MakeSampler = Callable[..., tuple[Sampler, FakeBackend]]


@pytest.mark.parametrize(
    ("golden", "accept"), [("metrics.prom", ""), ("metrics.openmetrics", OPENMETRICS)]
)
def test_the_body_is_prometheus_clients_encoding_byte_for_byte(
    golden_registry: CollectorRegistry, golden: str, accept: str
) -> None:
    exposition = Exposition(golden_registry)
    expected = (GOLDEN / golden).read_bytes()
    for _ in range(3):  # the first render encodes, the next ones join cached bytes
        rendered = exposition.render(accept)
        assert rendered.body == expected
        assert rendered.gzipped is False
    assert rendered.content_type == choose_encoder(accept)[1]


def test_gzip_when_the_scraper_accepts_it(golden_registry: CollectorRegistry) -> None:
    exposition = Exposition(golden_registry)
    rendered = exposition.render("", "deflate, gzip;q=0.9")
    assert rendered.gzipped is True
    assert gzip.decompress(rendered.body) == (GOLDEN / "metrics.prom").read_bytes()
    assert exposition.render("", "gzip;q=0").gzipped is False
    assert exposition.render("", "identity").gzipped is False


def test_an_unreadable_accept_version_gets_the_default_format(
    golden_registry: CollectorRegistry,
) -> None:
    rendered = Exposition(golden_registry).render("application/openmetrics-text; version=abc")
    assert rendered.content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert rendered.body == (GOLDEN / "metrics.prom").read_bytes()


def test_ten_scrapes_between_two_samples_encode_each_snapshot_family_once(
    make_sampler: MakeSampler, clock: ManualClock
) -> None:
    sampler, _ = make_sampler([FakeGpu(), FakeGpu()])
    chooser = CountingChooser()
    exposition = Exposition(registry_for(sampler), choose=chooser)
    sm_active = semconv.GPU_SM_ACTIVE.removesuffix("_total")  # the family's name
    sampler.sample_once()
    for _ in range(10):
        clock.advance(0.125)
        body = exposition.render().body
    assert chooser.encoded["text", sm_active] == 1
    assert chooser.encoded["text", semconv.EXPORTER_UP] == 1
    # The snapshot's age is the one family that changes between two samples.
    assert chooser.encoded["text", semconv.EXPORTER_SAMPLE_AGE] == 10
    assert f"{semconv.EXPORTER_SAMPLE_AGE} 1.25\n".encode() in body  # live: 10 x 0.125 s

    for _ in range(10):
        exposition.render(OPENMETRICS)
    assert chooser.encoded["openmetrics", sm_active] == 1  # once per format

    sampler.sample_once()
    for _ in range(10):
        exposition.render()
    assert chooser.encoded["text", sm_active] == 2


def test_prepare_encodes_each_sample_once_for_the_formats_scraped_lately(
    make_sampler: MakeSampler, clock: ManualClock
) -> None:
    sampler, _ = make_sampler([FakeGpu()])
    chooser = CountingChooser()
    exposition = Exposition(registry_for(sampler), choose=chooser, warm_s=60.0, clock=clock)
    sm_active = semconv.GPU_SM_ACTIVE.removesuffix("_total")
    sampler.sample_once()
    exposition.prepare()  # nobody has scraped yet: nothing to prepare
    assert chooser.encoded["text", sm_active] == 0

    exposition.render()
    exposition.render(OPENMETRICS)
    clock.advance(0.5)
    sampler.sample_once()
    exposition.prepare()  # what the CLI runs after each sample
    assert chooser.encoded["text", sm_active] == chooser.encoded["openmetrics", sm_active] == 2
    for _ in range(10):
        exposition.render()
        exposition.render(OPENMETRICS)
    assert chooser.encoded["text", sm_active] == chooser.encoded["openmetrics", sm_active] == 2

    clock.advance(61.0)  # no scrape for longer than warm_s: samples are no longer encoded
    sampler.sample_once()
    exposition.prepare()
    assert chooser.encoded["text", sm_active] == 2


def test_other_collectors_stay_live(make_sampler: MakeSampler) -> None:
    sampler, _ = make_sampler([FakeGpu()])
    registry = registry_for(sampler)
    calls = iter(range(1, 100))

    class Live(Collector):
        def collect(self) -> Iterator[object]:  # type: ignore[override]
            from prometheus_client.metrics_core import GaugeMetricFamily

            yield GaugeMetricFamily("live_calls", "Calls so far.", value=next(calls))

    registry.register(Live())
    exposition = Exposition(registry)
    sampler.sample_once()
    assert b"live_calls 1.0\n" in exposition.render().body
    assert b"live_calls 2.0\n" in exposition.render().body


def test_a_throttled_collector_is_read_and_encoded_at_most_once_per_max_age(
    make_sampler: MakeSampler, clock: ManualClock
) -> None:
    from prometheus_client.metrics_core import GaugeMetricFamily

    reads = iter(range(1, 100))

    class Live(Collector):
        def collect(self) -> Iterator[object]:  # type: ignore[override]
            yield GaugeMetricFamily("live_reads", "Reads so far.", value=next(reads))

    sampler, _ = make_sampler([FakeGpu()])
    registry = registry_for(sampler)
    registry.register(Throttled(Live(), max_age_s=1.0, clock=clock))
    chooser = CountingChooser()
    exposition = Exposition(registry, choose=chooser)
    sampler.sample_once()
    for _ in range(4):  # at 0, 0.25, 0.5 and 0.75 s: the first read, reused
        assert b"live_reads 1.0\n" in exposition.render().body
        clock.advance(0.25)
    assert b"live_reads 2.0\n" in exposition.render().body  # 1.0 s after the first read
    assert chooser.encoded["text", "live_reads"] == 2
