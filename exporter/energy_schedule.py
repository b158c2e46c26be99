"""The GPU's energy counter read on its own, slower schedule, carried between reads by power.

``nvmlDeviceGetTotalEnergyConsumption`` costs 2.4 ms (H100) to 2.9 ms (H200) of CPU a call,
16 ms at p99, against microseconds for the power reading: read every 0.5 s sample it is most of
the sidecar's CPU. ``ScheduledEnergy`` reads it every ``interval_s`` and, in between, adds the
trapezoid integral of the power readings to the last reading, re-anchored at each reading so
that the error never accumulates past one interval.

The published value stays at or below NVML's counter, never above it. Power on Ampere and newer
is the last second's mean, so after a drop in load the integral runs ahead of the counter by up
to half a second of the drop; and the power sensor and the energy counter need not agree to the
percent. So the carried part is published less ``LAG_S`` of the highest power seen and less
``SENSOR_BIAS`` of itself. Below the counter, the published value can only rise to meet it: a
new exporter process, or a re-initialised NVML, which publishes the counter itself, never makes
the Prometheus counter go down (a drop there would count the GPU's whole lifetime energy as a
reset). It goes down only where NVML's counter does (a driver restart). With ``interval_s`` 0
the counter is read at every update and published as it is.
"""

from __future__ import annotations

from collections.abc import Callable

LAG_S = 0.5
"""How far behind the averaged power reading trails a step in load (half its 1 s window)."""
SENSOR_BIAS = 0.05
"""How much the power integral may overstate the energy counter, as a share of itself."""


class ScheduledEnergy:
    """One GPU's published energy counter (joules)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._read_at: float | None = None
        """Clock time of the last counter reading."""
        self._anchor_j = 0.0
        self._since_j = 0.0
        """Integral of power since the last counter reading."""
        self._peak_w = 0.0
        """Highest power seen since the last counter reading."""
        self._last: tuple[float, float | None] | None = None
        """(clock time, power W) of the previous update."""
        self._force = False
        self._published: float | None = None
        self.reads = 0
        self.max_shortfall_j = 0.0
        """Largest amount the published value was found below the counter at a reading (kept
        for the tests and benchmarks)."""

    def resume(self) -> None:
        """After a gap (the GPU or NVML was away): integrate nothing across it, and read the
        counter at the next update."""
        self._last, self._force = None, True

    def update(
        self, now: float, power_w: float | None, read_counter: Callable[[], float | None]
    ) -> float | None:
        """The counter at ``now``; calls ``read_counter`` when a reading is due."""
        if self._last is not None:
            then, before = self._last
            watts = [w for w in (before, power_w) if w is not None]
            if watts and now > then:
                self._since_j += sum(watts) / len(watts) * (now - then)
                self._peak_w = max(self._peak_w, *watts)
        self._last = (now, power_w)
        due = self._force or self._read_at is None or now - self._read_at >= self.interval_s
        if due:
            counter = read_counter()
            if counter is not None:
                self._anchor(now, counter)
            elif self._read_at is None:
                return None  # never read: nothing to carry forward
        carried = self._since_j * (1 - SENSOR_BIAS) - LAG_S * self._peak_w
        estimate = self._anchor_j + max(0.0, carried)
        if self._published is None or estimate > self._published:
            self._published = estimate
        return self._published

    def _anchor(self, now: float, counter: float) -> None:
        if self._read_at is not None and counter < self._anchor_j:
            self._published = None  # the counter went down: the driver restarted it
        elif self._published is not None:
            self.max_shortfall_j = max(self.max_shortfall_j, counter - self._published)
        self.reads += 1
        self._force = False
        self._read_at, self._anchor_j, self._since_j, self._peak_w = now, counter, 0.0, 0.0
