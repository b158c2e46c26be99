"""State gauges read on a slower schedule than the sample.

Temperature, the SM and memory clocks, the clock-event reasons, the ECC counts and each
process's memory are gauges: Prometheus sees only the value at each scrape (every 15-30 s), and
none of them enters an integral. Read every sample (0.5 s by default) they bought nothing but
NVML calls: seven of a read's twelve, 35-80 us each on the virtualised H200s measured
(``benchmarks/sidecar_gpu.py``). GPM activity, power (which carries the energy counter between
its readings) and memory stay on every sample. A gauge served between two reads is at most
``interval_s`` old.
"""

from __future__ import annotations

from collections.abc import Callable

from wan_otel.exporter.backend import GpuReading

DEFAULT_GAUGE_INTERVAL_S = 2.0
MAX_GAUGE_INTERVAL_S = 60.0


class GaugeSchedule:
    """Each GPU's last gauges (a ``GpuReading`` with only its gauge fields set), read again
    once ``interval_s`` has passed (0: every time)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._held: dict[int, tuple[float, bool, GpuReading]] = {}

    def get(
        self, index: int, now: float, processes: bool, read: Callable[[], GpuReading]
    ) -> GpuReading:
        """GPU ``index``'s gauges: held ones if fresh enough (and read with ``processes`` as
        asked now), else ``read()``."""
        held = self._held.get(index)
        if (
            held is None
            or held[1] != processes
            or not 0 <= now - held[0] < self.interval_s  # a clock that went back reads too
        ):
            held = (now, processes, read())
            self._held[index] = held
        return held[2]

    def forget(self) -> None:
        """Read every GPU's gauges afresh next time (NVML restarted, GPUs renumbered)."""
        self._held.clear()
