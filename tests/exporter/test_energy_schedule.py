"""The energy counter read on its own schedule and carried between readings by power."""

from __future__ import annotations

import pytest

from wan_otel.exporter.backend import BackendUnavailable
from wan_otel.exporter.energy_schedule import ScheduledEnergy
from wan_otel.exporter.fake import ActivityProfile, FakeBackend, FakeGpu

from .conftest import ManualClock


class Counter:
    """An energy counter (joules) that the test sets, counting its reads."""

    def __init__(self) -> None:
        self.joules: float | None = 0.0
        self.reads = 0

    def __call__(self) -> float | None:
        self.reads += 1
        return self.joules


def test_with_no_interval_every_update_reads_the_counter() -> None:
    energy, counter = ScheduledEnergy(0.0), Counter()
    for t, joules in ((0.0, 100.0), (0.5, 150.0), (1.0, 400.0)):
        counter.joules = joules
        assert energy.update(t, 999.0, counter) == joules
    assert counter.reads == 3


def test_between_readings_the_counter_moves_by_the_power_integral_kept_low() -> None:
    """Carried by 95 % of the power integral less half a second of the peak power, so that
    it stays below the counter; at each reading it rises to the counter."""
    energy, counter = ScheduledEnergy(5.0), Counter()
    counter.joules = 1000.0
    assert energy.update(0.0, 100.0, counter) == 1000.0
    # 1 s at (100 + 300) / 2 W: 200 J, published 0.95 * 200 - 0.5 * 300 = 40 J of it
    assert energy.update(1.0, 300.0, counter) == pytest.approx(1040.0)
    assert energy.update(2.0, 300.0, counter) == pytest.approx(1000.0 + 0.95 * 500 - 150)
    assert energy.update(4.5, None, counter) == pytest.approx(1000.0 + 0.95 * 1250 - 150)
    assert counter.reads == 1
    counter.joules = 2250.0  # the counter at the reading: published rises to it
    assert energy.update(5.0, 300.0, counter) == 2250.0
    assert counter.reads == 2
    assert energy.max_shortfall_j == pytest.approx(2250.0 - (1000.0 + 0.95 * 1250 - 150))
    assert energy.update(5.5, 300.0, counter) == 2250.0  # 0.95 * 150 - 150 < 0: held
    assert energy.update(7.0, 300.0, counter) == pytest.approx(2250.0 + 0.95 * 600 - 150)


def test_a_gap_is_not_integrated_and_the_counter_is_read_after_it() -> None:
    energy, counter = ScheduledEnergy(5.0), Counter()
    counter.joules = 1000.0
    energy.update(0.0, 700.0, counter)
    energy.resume()  # the GPU was away
    counter.joules = 1500.0
    assert energy.update(60.0, 700.0, counter) == 1500.0  # read at once, nothing carried
    assert counter.reads == 2


def test_a_counter_that_goes_down_was_restarted_and_is_followed() -> None:
    energy, counter = ScheduledEnergy(1.0), Counter()
    counter.joules = 5000.0
    energy.update(0.0, 100.0, counter)
    counter.joules = 20.0  # driver reloaded
    assert energy.update(1.0, 100.0, counter) == 20.0
    assert energy.update(1.9, 100.0, counter) == pytest.approx(20.0 + 0.95 * 90 - 50)


def test_an_unsupported_counter_stays_absent_and_a_failed_read_is_carried() -> None:
    energy, counter = ScheduledEnergy(0.0), Counter()
    counter.joules = None
    assert energy.update(0.0, 100.0, counter) is None
    assert energy.update(1.0, 100.0, counter) is None
    counter.joules = 10.0
    assert energy.update(2.0, 100.0, counter) == 10.0
    counter.joules = None  # one failed read: the power integral carries it, kept low
    assert energy.update(3.0, 100.0, counter) == pytest.approx(10.0 + 0.95 * 100 - 50)


@pytest.mark.parametrize(
    "profile",
    [
        ActivityProfile.duty_cycle(0.5, period_s=0.1),  # faster than the power's 1 s mean
        ActivityProfile.duty_cycle(0.5, period_s=6.0),  # 3 s busy, 3 s idle: seen late
        ActivityProfile.duty_cycle(0.9, period_s=20.0),
    ],
)
def test_the_fake_gpus_scheduled_counter_stays_below_the_truth_within_a_bound(
    clock: ManualClock, profile: ActivityProfile
) -> None:
    """Sampled every 0.5 s for 60 s with the counter read every 5 s, power the last second's
    mean as NVML reports it on Ampere and newer: the published counter never runs ahead of
    the exact one, and trails it by at most 5 % of an interval at full power plus a second
    of it (700 W)."""
    exact = FakeBackend([FakeGpu(profile=profile)], clock)
    scheduled = FakeBackend([FakeGpu(profile=profile)], clock, energy_interval_s=5.0)
    exact.init(), scheduled.init()
    clock.advance(1.0)  # a whole second of history behind the first power reading
    previous = 0.0
    for _ in range(121):
        truth = exact.read(0).energy_joules
        published = scheduled.read(0).energy_joules
        assert truth is not None and published is not None
        assert published <= truth + 1e-6
        assert truth - published <= 0.05 * 5.0 * 700.0 + 700.0
        assert published >= previous
        previous = published
        clock.advance(0.5)
    assert scheduled.energy_schedules()[0].reads == 13  # at 1, 6, ..., 61 s


def test_a_reinitialised_backend_never_lowers_the_counter(clock: ManualClock) -> None:
    """NVML re-initialised after a drop in load (the moment the estimate is furthest ahead
    of a carried-forward counter): the published counter must not go down, or Prometheus
    counts the GPU's whole lifetime energy as a reset."""
    busy_then_idle = ActivityProfile(((10.0, 1.0), (1000.0, 0.0)))
    backend = FakeBackend([FakeGpu(profile=busy_then_idle)], clock, energy_interval_s=5.0)
    backend.init()
    published = []
    for step in range(60):
        if step == 24:  # t = 12 s, two seconds after the drop
            backend.go_down()
            with pytest.raises(BackendUnavailable):
                backend.read(0)
            backend.init()
        value = backend.read(0).energy_joules
        assert value is not None
        published.append(value)
        clock.advance(0.5)
    assert published == sorted(published)
