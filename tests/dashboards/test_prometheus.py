"""End to end: every dashboard query returns data from a real Prometheus that scrapes the
exporter (fake GPUs) and the pipeline's metrics endpoint (the tiny Wan2.2 pipeline run through
``wan_otel.pipeline.runner.run`` with its Prometheus reader on a loopback port).

Grafana variables are substituted as Grafana would with "All" selected (``.*``), durations as
``$__rate_interval`` = 1m and ``$__range`` = 5m. The exporter here behaves like the node-level
one: GPU series have no pod, per-process series name the pod, so both attribution paths run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.dashboards.expressions import Expression, prometheus_expressions
from tests.integration.conftest import StartPrometheus, query
from wan_otel import semconv

pytestmark = pytest.mark.integration

NOT_EMITTED = {
    semconv.PROMETHEUS_NAMES[semconv.METRIC_SPANS_DROPPED]: (
        "counted only when spans fail to reach the OTLP endpoint"
    ),
    semconv.PROMETHEUS_NAMES[semconv.METRIC_COMM_DURATION]: (
        "recorded by multi-GPU runs only: the test's one-GPU run has no communication"
    ),
    semconv.PROMETHEUS_NAMES[semconv.METRIC_WAIT_DURATION]: (
        "recorded by multi-GPU runs only: the test's one-GPU run waits for no peer"
    ),
    semconv.PROMETHEUS_NAMES[semconv.METRIC_GENERATION_ENERGY]: (
        "recorded only where the GPU has an energy counter: the test's tiny run is on the CPU"
    ),
}
"""Series the test stack cannot produce. Queries on them must still be accepted by Prometheus;
the test also checks that they are really absent, so an entry cannot outlive its reason."""

POD, NAMESPACE = "wan-serving-0", "wan"
OWN_PID = 4_194_000  # not in this machine's /proc: the resolver gives it the exporter's pod


@pytest.fixture
def exporter() -> Iterator[str]:
    from wan_otel.exporter.backend import ProcessMemory
    from wan_otel.exporter.collector import SnapshotCollector
    from wan_otel.exporter.fake import ActivityProfile, FakeBackend, FakeGpu
    from wan_otel.exporter.procinfo import ProcessResolver
    from wan_otel.exporter.sampler import Sampler
    from wan_otel.exporter.server import ExporterServer, make_app

    backend = FakeBackend(
        [
            FakeGpu(
                profile=ActivityProfile.duty_cycle(0.5, period_s=0.02),
                processes=(ProcessMemory(pid=OWN_PID, used_bytes=8 << 30),),
            ),
            FakeGpu(profile=ActivityProfile.duty_cycle(0.25, period_s=0.02)),
        ]
    )
    backend.fail_next_inits(1)  # one failed nvmlInit: wan_exporter_nvml_errors_total has a series
    resolver = ProcessResolver(own_pod=POD, own_namespace=NAMESPACE)
    sampler = Sampler(backend, 0.1, resolver=resolver)
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(sampler, hostname="it-node"))
    server = ExporterServer(make_app(registry, sampler.ready), "127.0.0.1", 0)
    server.start()
    sampler.start()
    yield f"127.0.0.1:{server.port}"
    sampler.close()
    server.stop()


@dataclass
class Pipeline:
    target: str
    generate: Any
    """generate(run_id, fail=False): one tiny generation (fail: bad height, a model error)."""


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    torch = pytest.importorskip("torch")
    from wan_otel.pipeline.runner import presets
    from wan_otel.pipeline.runner.model_flags import ModelChoice
    from wan_otel.pipeline.runner.run import RunRequest, run
    from wan_otel.pipeline.runner.telemetry import TelemetryConfig, setup_telemetry

    telemetry = setup_telemetry(
        TelemetryConfig(store=None, prometheus_port=0, prometheus_addr="127.0.0.1", otlp=False)
    )
    d = presets.TINY_DEFAULTS

    def generate(run_id: str, fail: bool = False) -> None:
        config = RunRequest(
            model=ModelChoice(presets.TINY, None, torch.device("cpu"), torch.float32, "none"),
            run_id=run_id,
            prompt="a cat walks on the grass",
            negative_prompt=None,
            height=d.height + 8 if fail else d.height,  # not a multiple of 16: diffusers raises
            width=d.width,
            frames=d.frames,
            steps=d.steps,
            guidance=d.guidance,
            fps=d.fps,
            seed=1,
            max_sequence_length=d.max_sequence_length,
        )
        if fail:
            with pytest.raises(ValueError):
                run(config, telemetry)
        else:
            run(config, telemetry)

    generate("dash-0")
    yield Pipeline(f"127.0.0.1:{telemetry.prometheus_port}", generate)
    telemetry.shutdown()


def _empty(base_url: str, expressions: list[Expression]) -> list[Expression]:
    return [e for e in expressions if not query(base_url, e.promql)]


def test_every_dashboard_query_returns_data(
    exporter: str, pipeline: Pipeline, start_prometheus: StartPrometheus
) -> None:
    base_url = start_prometheus([exporter, pipeline.target], scrape_interval="1s")
    expressions = list(prometheus_expressions())
    required = [e for e in expressions if not any(name in e.text for name in NOT_EMITTED)]
    optional = [e for e in expressions if e not in required]

    deadline = time.monotonic() + 20
    while len(query(base_url, 'up{job="wan"} == 1')) < 2 or not query(
        base_url, f"count_over_time({semconv.EXPORTER_UP}[1m]) >= 2"
    ):
        assert time.monotonic() < deadline, "Prometheus did not scrape both targets twice"
        time.sleep(0.25)
    # Counters must move between scrapes for rate() and increase() to see anything.
    pipeline.generate("dash-1")
    pipeline.generate("dash-bad", fail=True)

    empty = required
    while empty and time.monotonic() < deadline + 10:
        time.sleep(0.5)
        empty = _empty(base_url, empty)
    assert not empty, "queries without data:\n" + "\n".join(
        f"{e.dashboard} {e.where}: {e.promql}" for e in empty
    )
    for expression in optional:
        query(base_url, expression.promql)  # accepted by Prometheus (status success)
    for name, reason in NOT_EMITTED.items():
        assert not query(base_url, name), f"{name} is emitted now; drop it from NOT_EMITTED"
        assert reason
    # The Multi-GPU row splits steps by world_size: a one-GPU run is world_size 1, not unlabelled.
    steps = semconv.PROMETHEUS_NAMES[semconv.METRIC_STEP_DURATION] + "_count"
    by_world_size = query(base_url, f"sum by ({semconv.LABEL_WORLD_SIZE}) ({steps})")
    assert [r["metric"] for r in by_world_size] == [{semconv.LABEL_WORLD_SIZE: "1"}]
