"""Window means of cumulative activity counters."""

from __future__ import annotations

import pytest

from wan_otel.report.integrate import CounterSeries, WindowMean

S = 1_000_000_000


def _series(fractions: list[float], interval_s: float = 0.5) -> CounterSeries:
    """Samples every ``interval_s`` of a GPU busy ``fractions[i]`` in interval i."""
    times, values, total = [0], [0.0], 0.0
    for i, frac in enumerate(fractions, start=1):
        total += frac * interval_s
        times.append(int(i * interval_s * S))
        values.append(total)
    return CounterSeries(times, values)


def test_window_on_sample_boundaries_is_exact() -> None:
    series = _series([1.0, 0.0, 0.5, 0.5])
    mean = series.mean(0, 2 * S)
    assert mean.pct == pytest.approx(50.0)
    assert mean.tolerance_pct == 0.0
    assert series.mean(1 * S, 2 * S).pct == pytest.approx(50.0)
    assert series.mean(0, S // 2).pct == pytest.approx(100.0)


def test_window_inside_intervals_is_interpolated_with_its_tolerance() -> None:
    series = _series([1.0, 0.0, 1.0, 0.0])
    mean = series.mean(S // 4, 7 * S // 4)  # 0.25 s .. 1.75 s
    # interpolation: 0.25 s busy of the first interval's half, 0 s, 0.5 s, 0.25 s of idle
    assert mean.pct == pytest.approx(100 * (0.25 + 0.0 + 0.5 + 0.0) / 1.5)
    # The edge intervals were all busy and all idle: their parts are known exactly.
    assert mean.tolerance_pct == 0.0


def test_the_tolerance_is_what_an_edge_intervals_total_leaves_possible() -> None:
    series = _series([0.5, 1.0, 0.98, 0.5], interval_s=1.0)
    # 0.5 s of the first interval (0.5 s busy in 1 s): 0 to 0.5 s busy in the part, 0.25 taken
    mean = series.mean(S // 2, 2 * S)
    assert mean.pct == pytest.approx(100 * (0.25 + 1.0) / 1.5)
    assert mean.tolerance_pct == pytest.approx(100 * 0.25 / 1.5)
    # 0.5 s of a 98 % busy interval: 0.48 to 0.5 s busy, 0.49 taken: +/- 0.01 s
    mean = series.mean(S, 5 * S // 2)
    assert mean.pct == pytest.approx(100 * (1.0 + 0.49) / 1.5)
    assert mean.tolerance_pct == pytest.approx(100 * 0.01 / 1.5)
    # both edges in part, and a window inside one interval
    assert series.mean(S // 2, 5 * S // 2).tolerance_pct == pytest.approx(100 * 0.26 / 2)
    inside = CounterSeries([0, S, 3 * S, 4 * S], [0.0, 1.0, 2.0, 3.0])  # 1 s busy in 1 .. 3 s
    mean = inside.mean(5 * S // 4, 11 * S // 4)  # 1.5 s of it: 0.5 to 1 s busy, 0.75 taken
    assert (mean.pct, mean.tolerance_pct) == pytest.approx((50.0, 100 * 0.25 / 1.5))


def test_a_counter_that_outruns_time_is_not_clipped() -> None:
    # The counter's windows and the sampler's timestamps disagree by 2 %: the mean says so.
    series = CounterSeries([0, S, 2 * S], [0.0, 1.02, 2.04])
    assert series.mean(0, 2 * S).pct == pytest.approx(102.0)
    # Far beyond 100 % is no measurement: no mean, and why.
    broken = CounterSeries([0, S, 2 * S], [0.0, 1.0, 2.5])
    assert broken.mean(0, 2 * S) == WindowMean(
        None, "GPU counter rises faster than time (125 % busy)"
    )


def test_held_activity_readings_are_left_out() -> None:
    # GPM read too soon at 0.1 and 0.3 s: the counter held, then rose by two windows at once.
    times = [0, S // 10, 2 * S // 10, 3 * S // 10, 4 * S // 10]
    values = [0.0, 0.0, 0.2, 0.2, 0.4]
    series = CounterSeries(times, values, activity=True)
    assert (series.times, series.values, series.held) == (
        [0, 2 * S // 10, 4 * S // 10], [0.0, 0.2, 0.4], 2,
    )  # fmt: skip
    assert series.mean(S // 10, 3 * S // 10).pct == pytest.approx(100.0)  # not 200 or 0
    # A reading equal to the one before is kept when the counter then rises no faster than
    # time (an idle interval), and energy-like counters are never filtered.
    idle = CounterSeries(times, [0.0, 0.0, 0.1, 0.1, 0.2], activity=True)
    assert idle.held == 0 and len(idle) == 5
    assert CounterSeries(times, values).held == 0


def test_counter_reset_is_treated_as_restart_from_zero() -> None:
    times = [0, S, 2 * S, 3 * S]
    values = [100.0, 100.5, 0.25, 0.75]  # exporter restarted between 1 s and 2 s
    series = CounterSeries(times, values)
    assert series.mean(0, 3 * S).pct == pytest.approx(100 * (0.5 + 0.25 + 0.5) / 3)


def test_window_shorter_than_the_sample_interval_has_no_mean() -> None:
    mean = _series([1.0, 1.0]).mean(S // 10, S // 5)
    assert mean.pct is None
    assert mean.reason is not None and "sample interval 0.50 s" in mean.reason


def test_window_mostly_outside_the_samples_has_no_mean() -> None:
    mean = _series([1.0, 1.0]).mean(0, 10 * S)
    assert mean.pct is None and mean.reason == "samples cover 10% of the window"


def test_one_sample_is_not_enough() -> None:
    assert CounterSeries([0], [0.0]).mean(0, S).pct is None


def test_non_finite_and_negative_values_are_left_out_and_counted() -> None:
    times = [0, S, 2 * S, 3 * S, 4 * S]
    values = [0.0, float("nan"), 1.0, -2.0, 2.0]  # busy half the time
    series = CounterSeries(times, values)
    assert series.dropped == 2
    assert series.times == [0, 2 * S, 4 * S]
    assert series.mean(0, 4 * S).pct == pytest.approx(50.0)


def test_values_at_one_time_keep_the_first_given() -> None:
    series = CounterSeries([0, S, S, 2 * S], [0.0, 0.5, 0.9, 1.0])
    assert series.times == [0, S, 2 * S] and series.values == [0.0, 0.5, 1.0]
    assert series.mean(0, S).pct == pytest.approx(50.0)


def test_counters_beyond_the_float_range_give_no_mean_not_nan() -> None:
    # Two restarts near the float maximum: the corrected counter overflows to infinity.
    big = 1.7e308
    series = CounterSeries([0, S, 2 * S, 3 * S], [big, 0.0, big, 1.0])
    mean = series.mean(0, 3 * S)
    assert mean.pct is None and mean.reason == "GPU counter values out of range"


def test_a_held_reading_under_partial_load_is_known_by_its_early_time() -> None:
    # GPM read too soon at 0.18 s (0.08 s after the last): held; the next interval then rises
    # by both windows' busy time, 0.09 s in 0.12 s, which does not outrun time.
    times = [0, S // 10, 18 * S // 100, 3 * S // 10, 4 * S // 10]
    values = [0.0, 0.05, 0.05, 0.14, 0.19]
    gpm = CounterSeries(times, values, activity=True, min_gap_ns=S // 10)
    assert (gpm.held, gpm.times) == (1, [0, S // 10, 3 * S // 10, 4 * S // 10])
    other = CounterSeries(times, values, activity=True)  # no floor between reads: kept
    assert other.held == 0


def test_the_tolerance_shows_a_rise_beyond_time() -> None:
    # Both edges fall inside intervals whose counter rose 1.04 s per second: the mean exceeds
    # 100 % and the tolerance says by how much that is beyond possible.
    series = CounterSeries([0, S, 2 * S, 3 * S], [0.0, 1.04, 2.08, 3.12])
    mean = series.mean(S // 2, 5 * S // 2)
    assert mean.pct == pytest.approx(104.0)
    assert mean.tolerance_pct == pytest.approx(100 * (0.02 + 0.02) / 2)


def test_the_tolerance_never_exceeds_the_window() -> None:
    # Found by fuzzing: a counter restart at a float's precision limit, a window of 1 ns.
    series = CounterSeries([0, 1, 2, 4], [0.0, 0.0, 4503599627370496.0, 1.0])
    assert series.mean(2, 3).tolerance_pct <= 100.0
