"""What a scrape serves: the immutable ``Snapshot`` the sampler publishes after each sample, and
the running integrals behind its activity counters.

Counters add ``mean_fraction * window_s`` per read (GPM reports the mean between consecutive
samples, so the sum is the exact integral) and bytes per window; they start when the sampler
first reads a GPU and restart only if the activity source changes (a new series).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from wan_otel.exporter.backend import DeviceInfo, GpuReading, SystemInfo
from wan_otel.exporter.procinfo import ProcessOwner

_FRACTIONS = ("sm_active", "sm_occupancy", "tensor_active", "dram_active")
_BYTES = ("pcie_rx_bytes", "pcie_tx_bytes")


@dataclass(frozen=True)
class GpuCounters:
    """Cumulative integrals since the sampler first read the GPU; ``None`` where unsupported."""

    source: str
    sm_active_s: float | None = None
    sm_occupancy_s: float | None = None
    tensor_active_s: float | None = None
    dram_active_s: float | None = None
    pcie_rx_bytes: float | None = None
    pcie_tx_bytes: float | None = None
    current: bool = True
    """False when this read measured no window (a GPM read too soon after the last one, or a
    failed read): the values are still the previous read's, true at that read's time, not at
    this one's. Whoever stamps them with this read's time must leave them out."""


@dataclass(frozen=True)
class GpuState:
    """One GPU in a snapshot: its last reading and its counters."""

    device: DeviceInfo
    t_ns: int
    """Wall clock (ns since the epoch) right after the GPU was read."""
    reading: GpuReading
    counters: GpuCounters | None
    owners: Mapping[int, ProcessOwner] = field(default_factory=dict)
    """Container and pod of each PID in ``reading.processes``."""


@dataclass(frozen=True)
class Snapshot:
    """What a scrape serves. ``taken_s`` is on the sampler's monotonic clock."""

    up: bool
    taken_s: float | None = None
    t_ns: int | None = None
    duration_s: float | None = None
    system: SystemInfo | None = None
    gpus: tuple[GpuState, ...] = ()
    errors: Mapping[str, int] = field(default_factory=dict)


class Integrals:
    """Running integrals of one GPU; restarts when the activity source changes."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.values: dict[str, float] = {}

    def add(self, reading: GpuReading) -> GpuCounters | None:
        activity = reading.activity
        if activity is None:
            return self.counters(current=False) if self.values else None
        if activity.source != self.source:
            self.source, self.values = activity.source, {}
        first = not self.values  # the start of the integrals: 0 at this read's time
        for name in _FRACTIONS:
            fraction = getattr(activity, name)
            if fraction is not None:
                self.values[name] = self.values.get(name, 0.0) + fraction * activity.window_s
        for name in _BYTES:
            amount = getattr(activity, name)
            if amount is not None:
                self.values[name] = self.values.get(name, 0.0) + amount
        return self.counters(current=first or activity.window_s > 0)

    def counters(self, *, current: bool = True) -> GpuCounters:
        v = self.values.get
        return GpuCounters(
            source=self.source,
            sm_active_s=v("sm_active"),
            sm_occupancy_s=v("sm_occupancy"),
            tensor_active_s=v("tensor_active"),
            dram_active_s=v("dram_active"),
            pcie_rx_bytes=v("pcie_rx_bytes"),
            pcie_tx_bytes=v("pcie_tx_bytes"),
            current=current,
        )
