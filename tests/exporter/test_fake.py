"""Fake backend: the scripted profile's arithmetic and the ``--fake-profile`` grammar."""

from __future__ import annotations

import pytest

from wan_otel.exporter.backend import ProcessMemory
from wan_otel.exporter.fake import ActivityProfile, FakeBackend, FakeGpu, parse_profiles

from .conftest import ManualClock


def test_duty_cycle_levels_and_integral() -> None:
    profile = ActivityProfile.duty_cycle(0.25, period_s=2.0)  # busy [0, 0.5) of every 2 s
    assert [profile.level_at(t) for t in (0.0, 0.49, 0.5, 1.99, 2.0, 2.25)] == [
        1.0,
        1.0,
        0.0,
        0.0,
        1.0,
        1.0,
    ]
    assert [profile.cumulative(t) for t in (0.0, 0.25, 0.5, 2.0, 2.25, 7.0)] == [
        0.0,
        0.25,
        0.5,
        0.5,
        0.75,
        2.0,
    ]


def test_multi_segment_profile() -> None:
    profile = ActivityProfile(((1.0, 0.5), (2.0, 1.0), (1.0, 0.0)))  # period 4 s, area 2.5
    assert profile.period_s == 4.0
    assert profile.cumulative(3.5) == 2.5
    assert profile.cumulative(8.5) == 5.25


@pytest.mark.parametrize("segments", [(), ((0.0, 0.5),), ((1.0, 1.5),), ((1.0, -0.1),)])
def test_bad_profiles_are_refused(segments: tuple[tuple[float, float], ...]) -> None:
    with pytest.raises(ValueError):
        ActivityProfile(segments)


def test_parse_profiles() -> None:
    gpus = parse_profiles("0.5,0.25/0.2")
    assert [g.profile for g in gpus] == [
        ActivityProfile(((0.05, 1.0), (0.05, 0.0))),
        ActivityProfile(((0.05, 1.0), (0.15000000000000002, 0.0))),
    ]
    assert len(parse_profiles("1", count=8)) == 8
    with pytest.raises(ValueError, match="expected BUSY"):
        parse_profiles("half")
    with pytest.raises(ValueError, match="lists 2 GPUs but --fake-gpus is 3"):
        parse_profiles("0.5,0.5", count=3)


def test_energy_is_the_integral_of_power() -> None:
    now = [0.0]
    backend = FakeBackend([FakeGpu(profile=ActivityProfile.duty_cycle(0.5, 1.0))], lambda: now[0])
    backend.init()
    now[0] = 3.0  # 1.5 s busy at 700 W, 1.5 s idle at 70 W
    assert backend.read(0).energy_joules == 700.0 * 1.5 + 70.0 * 1.5


def test_the_fake_reads_state_gauges_on_their_schedule_as_nvml_does() -> None:
    clock = ManualClock()
    backend = FakeBackend([FakeGpu()], clock, gauge_interval_s=2.0)
    backend.init()
    first = backend.read(0)
    backend.set_gpu(0, FakeGpu(processes=(ProcessMemory(7, 1 << 20),)))
    clock.advance(1.5)
    assert backend.read(0).processes == first.processes  # held: read 1.5 s ago
    clock.advance(0.5)
    assert backend.read(0).processes == (ProcessMemory(7, 1 << 20),)
