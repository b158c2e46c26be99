"""Exact means of cumulative activity counters over arbitrary time windows.

A sample holds the integral of activity (seconds busy) since the sampler started; GPM
readings are means between consecutive samples, so the counter is exact at every sample time.
Inside one sample interval activity is unknown; we interpolate linearly and report, per window,
the worst-case error that interpolation can cause (``tolerance_pct``).

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


@dataclass(frozen=True)
class WindowMean:
    """Mean activity over a window in percent, or the reason there is none."""

    pct: float | None
    reason: str | None = None
    tolerance_pct: float = 0.0
    """Worst-case error of ``pct`` in percentage points, from interpolation at the edges."""


class CounterSeries:
    """One GPU's cumulative counter samples, sorted by time and reset-corrected."""

    def __init__(self, times_ns: Sequence[int], values: Sequence[float]) -> None:
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
        gaps = [b - a for a, b in zip(self.times, self.times[1:])]
        self.interval_s = statistics.median(gaps) / 1e9 if gaps else 0.0

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
        return WindowMean(min(max(pct, 0.0), 100.0), None, self._edge_tolerance(lo, hi))

    def _edge_tolerance(self, lo: int, hi: int) -> float:
        """Percentage points of the window that lie in partly covered sample intervals."""
        first = bisect.bisect_left(self.times, lo)
        last = bisect.bisect_right(self.times, hi) - 1
        partial = hi - lo if first > last else self.times[first] - lo + (hi - self.times[last])
        return min(100.0, 100.0 * partial / (hi - lo))
