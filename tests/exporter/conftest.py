"""Exporter test fixtures: a manual clock and a sampler over fake GPUs with a fresh registry."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from tests.exporter.source_tree import map_source_tree

map_source_tree()

from wan_otel.exporter.collector import SnapshotCollector  # noqa: E402 (after the mapping)
from wan_otel.exporter.fake import FakeBackend, FakeGpu  # noqa: E402
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
