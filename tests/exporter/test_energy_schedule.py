"""The energy counter read on its own schedule and carried between readings by power."""

from __future__ import annotations

import pytest

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


def test_between_readings_the_counter_moves_by_the_power_integral() -> None:
    energy, counter = ScheduledEnergy(5.0), Counter()
    counter.joules = 1000.0
    assert energy.update(0.0, 100.0, counter) == 1000.0
    assert energy.update(1.0, 300.0, counter) == 1000.0 + 200.0  # trapezoid: (100 + 300) / 2
    assert energy.update(2.0, 300.0, counter) == 1000.0 + 500.0
    assert energy.update(4.5, None, counter) == 1000.0 + 500.0 + 750.0  # last known power
    assert counter.reads == 1
    counter.joules = 2200.0  # the estimate, 2250 J by 5 s, ran 50 J ahead: held, not lowered
    assert energy.update(5.0, 300.0, counter) == 2250.0
    assert (counter.reads, energy.max_error_j) == (2, pytest.approx(50.0 + 150.0))
    assert energy.update(5.1, 300.0, counter) == 2250.0  # 2200 + 30 has not passed it yet
    assert energy.update(6.0, 300.0, counter) == 2500.0
    counter.joules = 2600.0  # behind the counter: it jumps up at the next reading
    assert energy.update(10.0, 300.0, counter) == 2600.0 + 0.0


def test_a_counter_that_goes_down_was_restarted_and_is_followed() -> None:
    energy, counter = ScheduledEnergy(1.0), Counter()
    counter.joules = 5000.0
    energy.update(0.0, 100.0, counter)
    counter.joules = 20.0  # driver reloaded
    assert energy.update(1.0, 100.0, counter) == 20.0
    assert energy.update(1.5, 100.0, counter) == 70.0


def test_an_unsupported_counter_stays_absent_and_a_failed_read_is_carried() -> None:
    energy, counter = ScheduledEnergy(0.0), Counter()
    counter.joules = None
    assert energy.update(0.0, 100.0, counter) is None
    assert energy.update(1.0, 100.0, counter) is None
    counter.joules = 10.0
    assert energy.update(2.0, 100.0, counter) == 10.0
    counter.joules = None  # one failed read: the power integral carries it
    assert energy.update(3.0, 100.0, counter) == 110.0


@pytest.mark.parametrize(
    ("profile", "bound_j"),
    [
        (ActivityProfile.duty_cycle(0.5, period_s=0.1), 1e-6),  # the 1 s power mean is exact
        (ActivityProfile.duty_cycle(0.5, period_s=6.0), 320.0),  # 3 s busy, 3 s idle
    ],
)
def test_the_fake_gpus_scheduled_counter_stays_within_one_interval_of_the_truth(
    clock: ManualClock, profile: ActivityProfile, bound_j: float
) -> None:
    """Sampled every 0.5 s for 60 s with the counter read every 5 s: the published counter
    against the exact one. Power is the last second's mean, as NVML reports it on Ampere and
    newer, so a 3 s busy phase is seen late and the estimate lags by up to about half a
    second of the busy-idle difference (630 W)."""
    exact = FakeBackend([FakeGpu(profile=profile)], clock)
    scheduled = FakeBackend([FakeGpu(profile=profile)], clock, energy_interval_s=5.0)
    exact.init(), scheduled.init()
    clock.advance(1.0)  # a whole second of history behind the first power reading
    worst = 0.0
    for _ in range(121):
        truth = exact.read(0).energy_joules
        published = scheduled.read(0).energy_joules
        assert truth is not None and published is not None
        worst = max(worst, abs(published - truth))
        clock.advance(0.5)
    schedule = scheduled.energy_schedules()[0]
    assert schedule.reads == 13  # at 1, 6, ..., 61 s
    assert worst <= bound_j
    assert schedule.max_error_j <= bound_j
