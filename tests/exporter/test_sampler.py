"""Sampler: exact integration of scripted activity, backoff, lost GPUs, readiness."""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction

import pytest

from wan_otel import semconv
from wan_otel.exporter.fake import ActivityProfile, FakeBackend, FakeGpu
from wan_otel.exporter.sampler import Sampler, check_interval
from wan_otel.exporter.snapshot import Snapshot

from .conftest import ManualClock

MakeSampler = Callable[..., tuple[Sampler, FakeBackend]]


def square_wave_integral(t: Fraction, period: Fraction, busy: Fraction) -> Fraction:
    """Busy seconds of a square wave (busy first) from 0 to t, in exact arithmetic."""
    cycles, rest = divmod(t, period)
    return cycles * busy + min(rest, busy)


def test_counters_integrate_a_duty_cycle_exactly(
    make_sampler: MakeSampler, clock: ManualClock
) -> None:
    sampler, _ = make_sampler([FakeGpu(profile=ActivityProfile.duty_cycle(0.5, period_s=1.0))])
    for _ in range(21):  # t = 0, 0.5, ..., 10.0
        snapshot = sampler.sample_once()
        clock.advance(0.5)
    counters = snapshot.gpus[0].counters
    assert counters is not None
    assert counters.source == semconv.SOURCE_GPM
    assert counters.sm_active_s == 5.0
    assert counters.sm_occupancy_s == 5.0 * 0.125
    assert counters.tensor_active_s == 5.0 * 0.875
    assert counters.dram_active_s == 5.0 * 0.25
    assert counters.pcie_rx_bytes == 1_048_576.0 * 10
    assert counters.pcie_tx_bytes == 262_144.0 * 10


@pytest.mark.parametrize(
    ("steps", "busy", "period"),
    [
        (["0.3"] * 37, "0.1", "0.4"),
        (["0.5", "0.37", "1.21", "0.1", "0.73", "2.0", "0.11"], "0.25", "0.6"),
    ],
)
def test_counters_integrate_exactly_at_any_sampling_steps(
    make_sampler: MakeSampler,
    clock: ManualClock,
    steps: list[str],
    busy: str,
    period: str,
) -> None:
    profile = ActivityProfile.duty_cycle(float(busy) / float(period), period_s=float(period))
    sampler, _ = make_sampler([FakeGpu(profile=profile)], interval_s=0.1)
    sampler.sample_once()
    for step in steps:
        clock.advance(float(step))
        snapshot = sampler.sample_once()
    total = sum((Fraction(s) for s in steps), Fraction(0))
    expected = square_wave_integral(total, Fraction(period), Fraction(busy))
    counters = snapshot.gpus[0].counters
    assert counters is not None and counters.sm_active_s is not None
    assert counters.sm_active_s == pytest.approx(float(expected), abs=1e-9)
    assert counters.sm_active_s != pytest.approx(float(total) / 2, abs=1e-3)  # not a mean guess


def test_without_gpm_only_sm_activity_is_integrated_from_nvml_utilization(
    make_sampler: MakeSampler, clock: ManualClock
) -> None:
    gpu = FakeGpu(profile=ActivityProfile.duty_cycle(0.25, period_s=1.0), gpm=False)
    sampler, _ = make_sampler([gpu])
    for _ in range(9):  # 0 .. 4 s
        snapshot = sampler.sample_once()
        clock.advance(0.5)
    counters = snapshot.gpus[0].counters
    assert counters is not None
    assert counters.source == semconv.SOURCE_NVML_UTIL
    assert counters.sm_active_s == 1.0
    assert counters.sm_occupancy_s is None
    assert counters.tensor_active_s is None
    assert counters.pcie_rx_bytes is None


def test_init_failure_retries_with_exponential_backoff_then_recovers(
    make_sampler: MakeSampler, clock: ManualClock
) -> None:
    sampler, backend = make_sampler([FakeGpu()])
    backend.fail_next_inits(3)
    attempts = []
    for _ in range(16):  # t = 0 .. 7.5 s
        snapshot = sampler.sample_once()
        attempts.append((clock.now, backend.init_calls, snapshot.up))
        clock.advance(0.5)
    # Failures at 0 s, 1 s (after 1 s) and 3 s (after 2 s); success at 7 s (after 4 s).
    first_attempt_at = {}
    for now, calls, _ in attempts:
        first_attempt_at.setdefault(calls, now)
    assert first_attempt_at == {1: 0.0, 2: 1.0, 3: 3.0, 4: 7.0}
    assert [up for *_, up in attempts] == [False] * 14 + [True] * 2
    assert snapshot.errors == {"nvmlInit": 3}
    assert len(snapshot.gpus) == 1


def test_a_lost_gpu_is_dropped_counted_and_the_others_continue(
    make_sampler: MakeSampler, clock: ManualClock
) -> None:
    duty = ActivityProfile.duty_cycle(0.5, period_s=1.0)
    sampler, backend = make_sampler([FakeGpu(profile=duty), FakeGpu(profile=duty)])
    for _ in range(3):  # 0, 0.5, 1.0
        sampler.sample_once()
        clock.advance(0.5)
    backend.lose(1)
    for _ in range(2):  # 1.5, 2.0
        lost = sampler.sample_once()
        clock.advance(0.5)
    assert [g.device.index for g in lost.gpus] == [0]
    assert lost.up is True
    assert lost.errors == {"nvmlDeviceGetMemoryInfo": 2}
    gpu0 = lost.gpus[0].counters
    assert gpu0 is not None and gpu0.sm_active_s == 1.0  # GPU 0 kept integrating to t=2.0

    backend.recover(1)
    back = sampler.sample_once()  # 2.5: GPU 1 re-primes; its counter resumes, never jumps
    assert [g.device.index for g in back.gpus] == [0, 1]
    gpu1 = back.gpus[1].counters
    assert gpu1 is not None and gpu1.sm_active_s == 0.5


def test_backend_going_down_drops_all_series_and_reinitialises(
    make_sampler: MakeSampler, clock: ManualClock
) -> None:
    sampler, backend = make_sampler([FakeGpu(profile=ActivityProfile.duty_cycle(1.0))])
    sampler.sample_once()
    clock.advance(0.5)
    before = sampler.sample_once().gpus[0].counters
    backend.go_down()
    clock.advance(0.5)
    down = sampler.sample_once()
    assert (down.up, down.gpus) == (False, ())
    clock.advance(1.0)  # backoff 1 s
    up = sampler.sample_once()
    assert up.up is True and backend.init_calls == 2
    clock.advance(0.5)
    after = sampler.sample_once().gpus[0].counters
    assert before is not None and after is not None
    assert (before.sm_active_s, after.sm_active_s) == (0.5, 1.0)  # monotonic, resumed


def test_ready_needs_backend_up_and_a_fresh_sample(
    make_sampler: MakeSampler, clock: ManualClock
) -> None:
    sampler, _ = make_sampler([FakeGpu()])
    assert sampler.ready() is False
    sampler.sample_once()
    assert sampler.ready() is True
    clock.advance(2.0)  # stale after max(3 * 0.5, 2.0) s
    assert sampler.ready() is True
    clock.advance(0.01)
    assert sampler.ready() is False
    assert sampler.snapshot_age_s() == pytest.approx(2.01)


@pytest.mark.parametrize(
    ("interval", "reason"),
    [
        (0.05, r"0\.05 s is below 0\.1 s: NVML GPM needs at least 100 ms"),
        (0.0999, r"below 0\.1 s: NVML GPM"),
        (0.0, r"0\.0 s is not positive"),
        (-1.0, r"-1\.0 s is not positive"),
        (float("-inf"), r"-inf s is not positive"),
        (float("nan"), r"nan is not a number"),
        (float("inf"), r"inf is not a finite number"),
        (3600.5, r"3600\.5 s is above 3600 s"),
    ],
)
def test_unusable_intervals_are_refused_with_their_reason(interval: float, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_interval(interval)
    with pytest.raises(ValueError, match=reason):
        Sampler(FakeBackend([FakeGpu()]), interval)


@pytest.mark.parametrize("interval", [0.1, 0.5, 3600.0])
def test_usable_intervals_pass(interval: float) -> None:
    assert check_interval(interval) == interval


def test_thread_samples_at_the_interval_and_stops_promptly() -> None:
    seen: list[Snapshot] = []
    sampler = Sampler(FakeBackend([FakeGpu()]), 0.1, on_sample=seen.append)  # 50 % of 0.1 s
    sampler.start()
    time.sleep(0.55)
    started = time.perf_counter()
    assert sampler.stop() is True
    assert time.perf_counter() - started < 0.2
    assert 3 <= len(seen) <= 7
    first, last = seen[0].gpus[0], seen[-1].gpus[0]
    assert last.counters is not None and last.counters.sm_active_s is not None
    elapsed = (last.t_ns - first.t_ns) / 1e9
    assert last.counters.sm_active_s == pytest.approx(0.5 * elapsed, abs=0.026)
    sampler.close()


def test_a_failing_listener_does_not_stop_sampling(
    make_sampler: MakeSampler, clock: ManualClock
) -> None:
    calls = []

    def listener(snapshot: object) -> None:
        calls.append(snapshot)
        raise RuntimeError("listener bug")

    sampler, _ = make_sampler([FakeGpu()], on_sample=listener)
    sampler.sample_once()
    clock.advance(0.5)
    assert sampler.sample_once().up is True
    assert len(calls) == 2
