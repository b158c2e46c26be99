"""Exact means of cumulative activity counters over arbitrary time windows.

A sample holds the integral of activity (seconds busy) since the sampler started; GPM
readings are means between consecutive samples, so the counter is exact at every sample time.
Inside one sample interval only the interval's total is known; we interpolate linearly and report,
per window, the worst-case error that interpolation can cause (``tolerance_pct``), bounded by what
the interval's total leaves possible (activity is between 0 and 1 at any instant).

Two sources, two rules for a counter that goes down. Store samples come from one sampler per
file, whose counters never go down: ``store.samples.read_samples`` drops such readings as
errors before they get here. Prometheus series span exporter restarts, so here, as in
Prometheus, a drop means the counter restarted from 0. Whatever the caller passes, non-finite
or negative values are left out (``dropped`` counts them) and of several values at one time the
first is kept, so no input turns a mean into NaN or a division by zero.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MIN_COVERAGE = 0.5
"""Below this fraction of a window covered by samples, no mean is given."""


HELD_RATE = 1.05
"""An activity counter rising faster than this (seconds busy per second) after a reading equal
to the one before marks that reading as held (stale); 5 % covers timestamp jitter."""


IMPOSSIBLE_PCT = 110.0
"""A mean above this is no measurement (samples that do not fit together), so none is given;
up to it, timestamp jitter explains the excess and the mean is shown as it is."""


@dataclass(frozen=True)
class WindowMean:
    """Mean activity over a window in percent, or the reason there is none."""

    pct: float | None
    reason: str | None = None
    tolerance_pct: float = 0.0
    """Worst-case error of ``pct`` in percentage points, from interpolation at the edges."""


class CounterSeries:
    """One GPU's cumulative counter samples, sorted by time and reset-corrected."""

    def __init__(
        self,
        times_ns: Sequence[int],
        values: Sequence[float],
        *,
        activity: bool = False,
        min_gap_ns: int = 0,
    ) -> None:
        """``activity``: the counter is seconds busy, so it cannot rise faster than time; a
        reading held from the sample before (a GPM read skipped as too soon after the last
        one: the next read covers both windows) is recognised by that, or by coming less than
        ``min_gap_ns`` (the source's floor between reads: GPM's 100 ms) after the one before,
        and left out (``held`` counts them), so the counter is exact at every sample kept."""
        if len(times_ns) != len(values):
            raise ValueError("times and values differ in length")
        order = sorted(range(len(times_ns)), key=lambda i: times_ns[i])
        self.times: list[int] = []
        self.values: list[float] = []
        self.dropped = 0
        """Values left out: not finite, or negative."""
        offset = 0.0
        previous: float | None = None
        for i in order:
            t, v = times_ns[i], values[i]
            if not math.isfinite(v) or v < 0:
                self.dropped += 1
                continue
            if self.times and t == self.times[-1]:
                continue
            if previous is not None and v < previous:
                offset += previous  # counter restarted from zero
            previous = v
            self.times.append(t)
            self.values.append(v + offset)
        self.held = self._drop_held(min_gap_ns) if activity else 0
        gaps = [b - a for a, b in zip(self.times, self.times[1:])]
        self.interval_s = statistics.median(gaps) / 1e9 if gaps else 0.0

    def _drop_held(self, min_gap_ns: int) -> int:
        """Leave out readings equal to the one before that came less than ``min_gap_ns`` after
        it, or after which the counter rises faster than time (by more than ``HELD_RATE``):
        they are stale (a GPM read skipped as too soon), and would put the busy time of two
        intervals into the second one. Leaving out a genuine idle reading costs only
        resolution: the counter stays exact at every reading kept."""
        t, v = self.times, self.values
        keep = [0] if t else []
        for i in range(1, len(t) - 1):
            held = v[i] == v[keep[-1]]
            early = t[i] - t[keep[-1]] < min_gap_ns
            outrun = (v[i + 1] - v[i]) * 1e9 > HELD_RATE * (t[i + 1] - t[i])
            if not (held and (early or outrun)):
                keep.append(i)
        if len(t) > 1:
            keep.append(len(t) - 1)
        self.times, self.values = [t[i] for i in keep], [v[i] for i in keep]
        return len(t) - len(keep)

    def __len__(self) -> int:
        return len(self.times)

    def value_at(self, t_ns: int) -> float:
        """Counter value at ``t_ns`` (within the sampled range), linearly interpolated."""
        i = bisect.bisect_left(self.times, t_ns)
        if i < len(self.times) and self.times[i] == t_ns:
            return self.values[i]
        if i == 0 or i == len(self.times):
            raise ValueError("time outside the sampled range")
        t0, t1 = self.times[i - 1], self.times[i]
        v0, v1 = self.values[i - 1], self.values[i]
        return v0 + (v1 - v0) * (t_ns - t0) / (t1 - t0)

    def mean(self, start_ns: int, end_ns: int) -> WindowMean:
        """Mean activity (percent) over ``[start_ns, end_ns]``."""
        duration = end_ns - start_ns
        if len(self.times) < 2:
            return WindowMean(None, "fewer than two GPU samples")
        if duration <= 0 or duration / 1e9 < self.interval_s:
            return WindowMean(
                None, f"window {duration / 1e9:.3f} s < sample interval {self.interval_s:.2f} s"
            )
        lo, hi = max(start_ns, self.times[0]), min(end_ns, self.times[-1])
        if hi - lo < MIN_COVERAGE * duration:
            covered = max(0, hi - lo) / duration
            return WindowMean(None, f"samples cover {100 * covered:.0f}% of the window")
        busy_s = self.value_at(hi) - self.value_at(lo)
        pct = 100.0 * busy_s / ((hi - lo) / 1e9)
        if not math.isfinite(pct):  # counters near the float range: no honest mean
            return WindowMean(None, "GPU counter values out of range")
        if pct > IMPOSSIBLE_PCT:
            return WindowMean(None, f"GPU counter rises faster than time ({pct:.3g} % busy)")
        # Not clipped to 100 %: a mean a little above it says the sampler's timestamps and the
        # counter's own intervals disagree, which the tolerance beside it should show.
        return WindowMean(pct, None, self._edge_tolerance(lo, hi))

    def _edge_tolerance(self, lo: int, hi: int) -> float:
        """Worst-case error of the mean, in percentage points, from the sample intervals that
        the window covers only in part (at most two: one at each edge).

        In such an interval only the total busy time ``b`` of its length ``L`` is known. The
        share of it in the covered part ``p`` lies between ``max(0, b - (L - p))`` (the rest of
        the interval as busy as it can be) and ``min(p, b)`` (activity at any instant is between
        0 and 1); interpolation takes ``b * p / L``. So an interval that was all busy or all
        idle costs nothing, and a 98 % busy one little."""
        first = bisect.bisect_left(self.times, lo)  # first sample at or after lo
        last = bisect.bisect_right(self.times, hi) - 1  # last sample at or before hi
        if first > last:  # no sample inside: the window lies in interval ``last``
            parts = [(last, lo, hi)]
        else:
            parts = [(first - 1, lo, self.times[first])] if self.times[first] > lo else []
            if self.times[last] < hi:
                parts.append((last, self.times[last], hi))
        error_s = sum(self._part_error_s(i, a, b) for i, a, b in parts)
        return 100.0 * error_s / ((hi - lo) / 1e9)

    def _part_error_s(self, interval: int, start_ns: int, end_ns: int) -> float:
        """Seconds of activity that interpolation may misplace in ``[start_ns, end_ns]``, a part
        of the sample interval that begins at sample ``interval``."""
        length = (self.times[interval + 1] - self.times[interval]) / 1e9
        part = (end_ns - start_ns) / 1e9
        rise = self.values[interval + 1] - self.values[interval]
        estimate = rise * part / length  # what the mean takes
        busy = min(max(rise, 0.0), length)  # what the interval can physically have held
        low, high = max(0.0, busy - (length - part)), min(part, busy)
        # A rise beyond the interval's length (samples that disagree) puts the estimate above
        # anything possible: the tolerance then says by how much, up to the whole part (past
        # that the window's mean is no measurement, and gets none).
        return min(part, max(estimate - low, high - estimate))
