"""The GPU's energy counter read on its own, slower schedule, carried between reads by power.

``nvmlDeviceGetTotalEnergyConsumption`` costs 2.4 ms (H100) to 2.9 ms (H200) of CPU a call,
16 ms at p99, against microseconds for the power reading: read every 0.5 s sample it is most of
the sidecar's CPU. ``ScheduledEnergy`` reads it every ``interval_s`` and, in between, adds the
trapezoid integral of the power readings to the last reading. At each reading the estimate is
re-anchored to the counter, so the error never accumulates past one interval; the published
counter goes down only where NVML's does (a driver restart); an estimate that ran ahead is held
until the counter passes it. What
each re-anchoring found (estimate minus counter) is kept, so the error this costs is measured
where it runs rather than assumed. With ``interval_s`` 0 the counter is read every time.
"""

from __future__ import annotations

from collections.abc import Callable


class ScheduledEnergy:
    """One GPU's published energy counter (joules)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._read_at: float | None = None
        """Clock time of the last counter reading."""
        self._anchor_j = 0.0
        self._since_j = 0.0
        """Integral of power since the last counter reading."""
        self._last: tuple[float, float | None] | None = None
        """(clock time, power W) of the previous update."""
        self._published: float | None = None
        self.reads = 0
        self.max_error_j = 0.0
        """Largest |estimate - counter| found at a re-anchoring."""
        self.error_j_sum = 0.0
        """Sum of |estimate - counter| over the re-anchorings (``reads - 1`` of them)."""

    def update(
        self, now: float, power_w: float | None, read_counter: Callable[[], float | None]
    ) -> float | None:
        """The counter at ``now``; calls ``read_counter`` when a reading is due."""
        if self._last is not None:
            then, before = self._last
            watts = [w for w in (before, power_w) if w is not None]
            if watts and now > then:
                self._since_j += sum(watts) / len(watts) * (now - then)
        self._last = (now, power_w)
        due = self._read_at is None or now - self._read_at >= self.interval_s
        if due:
            counter = read_counter()
            if counter is not None:
                self._anchor(now, counter)
            elif self._read_at is None:
                return None  # never read: nothing to carry forward
        estimate = self._anchor_j + self._since_j
        if self._published is None or estimate > self._published:
            self._published = estimate
        return self._published

    def _anchor(self, now: float, counter: float) -> None:
        if self._read_at is not None and counter < self._anchor_j:
            self._published = None  # the counter went down: the driver restarted it
        elif self._read_at is not None:
            error = abs(self._anchor_j + self._since_j - counter)
            self.max_error_j = max(self.max_error_j, error)
            self.error_j_sum += error
        self.reads += 1
        self._read_at, self._anchor_j, self._since_j = now, counter, 0.0
