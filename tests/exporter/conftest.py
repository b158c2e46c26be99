"""Exporter test fixtures: a manual clock, a sampler over fake GPUs with a fresh registry, the
golden registry behind the exposition goldens, and an encoder chooser that counts encodings."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from tests.exporter.source_tree import map_source_tree

map_source_tree()

from wan_otel.exporter.backend import ProcessMemory  # noqa: E402 (after the mapping)
from wan_otel.exporter.collector import SnapshotCollector  # noqa: E402
from wan_otel.exporter.exposition import Encoder  # noqa: E402
from wan_otel.exporter.fake import ActivityProfile, FakeBackend, FakeGpu  # noqa: E402
from wan_otel.exporter.procinfo import ProcessResolver  # noqa: E402
from wan_otel.exporter.sampler import Sampler  # noqa: E402


class ManualClock:
    """A monotonic clock the test moves by hand, so every integral is known exactly."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class WallClock:
    """Wall-clock nanoseconds tied to a ManualClock, for deterministic ``t_ns``."""

    def __init__(self, clock: ManualClock, epoch_ns: int = 1_764_115_200_000_000_000) -> None:
        self._clock = clock
        self._epoch_ns = epoch_ns

    def __call__(self) -> int:
        return self._epoch_ns + round(self._clock.now * 1e9)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_sampler(
    clock: ManualClock,
) -> Callable[..., tuple[Sampler, FakeBackend]]:
    def make(
        gpus: list[FakeGpu], interval_s: float = 0.5, **kwargs: object
    ) -> tuple[Sampler, FakeBackend]:
        backend = FakeBackend(gpus, clock)
        sampler = Sampler(
            backend,
            interval_s,
            clock=clock,
            wall_ns=WallClock(clock),
            **kwargs,  # type: ignore[arg-type]
        )
        return sampler, backend

    return make


def registry_for(sampler: Sampler, **labels: str) -> CollectorRegistry:
    """A fresh registry holding only the snapshot collector (no process/platform metrics)."""
    registry = CollectorRegistry()
    registry.register(
        SnapshotCollector(sampler, hostname=labels.pop("hostname", "node-a"), **labels)
    )
    return registry


@pytest.fixture
def golden_registry(
    make_sampler: Callable[..., tuple[Sampler, FakeBackend]], clock: ManualClock, tmp_path: Path
) -> CollectorRegistry:
    """Two GPUs: a Hopper at 50 % duty running one process, and an older GPU (no GPM, no ECC)
    at a constant 25 %, sampled at 0, 0.5, 1.0 and 1.5 s and scraped at 1.75 s."""
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "cgroup").write_text(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        "0a1b2c3d_0000_4000_8000_00000000beef.slice/cri-containerd-" + "ab" * 32 + ".scope\n"
    )
    (proc / "4242" / "environ").write_bytes(b"PATH=/bin\0POD_NAME=wan-job-7\0POD_NAMESPACE=video\0")
    hopper = FakeGpu(
        profile=ActivityProfile.duty_cycle(0.5, period_s=1.0),
        processes=(ProcessMemory(4242, 10_737_418_240),),
    )
    older = FakeGpu(
        profile=ActivityProfile(((1.0, 0.25),)), name="NVIDIA A10G", gpm=False, ecc=False
    )
    resolver = ProcessResolver(proc, own_pod="wan-0", own_namespace="video")
    sampler, _ = make_sampler([hopper, older], resolver=resolver)
    for _ in range(4):
        sampler.sample_once()
        clock.advance(0.5)
    clock.advance(-0.25)
    return registry_for(sampler, pod="wan-0", namespace="video")


class CountingChooser:
    """prometheus_client's choice of encoder, counting each family it encodes by name."""

    def __init__(self) -> None:
        self.encoded: Counter[tuple[str, str]] = Counter()  # (format, family name)

    def __call__(self, accept: str) -> tuple[Encoder, str]:
        encoder, content_type = choose_encoder(accept)
        kind = "openmetrics" if "openmetrics" in content_type else "text"

        def counting(collector: Collector) -> bytes:
            for family in collector.collect():
                self.encoded[kind, family.name] += 1
            return encoder(collector)

        return counting, content_type
