"""GPU energy over span windows, from the samples' cumulative NVML energy counter.

``nvmlDeviceGetTotalEnergyConsumption`` counts millijoules since the driver loaded and updates
about every 100 ms; the sampler stores it counted from its first sample (``energy_j``). A
window's energy is the counter's difference between the window's edges, linearly interpolated
between samples (as SM activity is). Three pitfalls, and what is done about each:

- the counter only moves every ~0.1 s, and interpolation between samples smooths that: each
  edge can be off by the longer of the update period and the sample interval, at the power of
  the moment. The tolerance is twice that at the window's mean power, and a window shorter than
  ``MIN_WINDOW_S`` says "too short" instead of a number (its tolerance would be over 20 %);
- the counter restarts from 0 when the driver reloads: a Prometheus series that goes down is
  integrated as restarted (``integrate.CounterSeries``); a store file's sampler never sees a
  drop (its readings that go down are dropped on reading, ``store.samples``);
- the power reading (``power_w``) is an average over about a second on Ampere and later (and
  on A100/H100 only part of that second is sampled): it is never integrated here, the counter
  is the energy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wan_otel.report.integrate import CounterSeries
from wan_otel.store.samples import GpuSample

UPDATE_PERIOD_S = 0.1
"""How often NVML's energy counter moves (about; measured on H100 and H200)."""
MIN_WINDOW_S = 1.0
"""Windows shorter than this get no energy figure: their edges' uncertainty would be over a
fifth of the window."""
TOO_SHORT = "too short"
"""How the reason for a window under ``MIN_WINDOW_S`` begins."""
MIN_COVERAGE = 0.9
"""Below this share of a window covered by samples, no energy is given (the missing part
would be guessed); at or above it, the covered part's mean power stands for the rest."""


@dataclass(frozen=True)
class WindowEnergy:
    joules: float | None
    tolerance_j: float = 0.0
    reason: str | None = None


class EnergySeries:
    """One GPU's energy counter."""

    def __init__(self, samples: Sequence[GpuSample]) -> None:
        mine = [s for s in samples if s.energy_j is not None]
        self.series = CounterSeries([s.t_ns for s in mine], [s.energy_j or 0.0 for s in mine])

    @property
    def edge_s(self) -> float:
        return max(UPDATE_PERIOD_S, self.series.interval_s)

    def window(self, start_ns: int, end_ns: int) -> WindowEnergy:
        series = self.series
        duration_s = (end_ns - start_ns) / 1e9
        if len(series) < 2:
            return WindowEnergy(None, reason="fewer than two energy readings")
        if duration_s < max(MIN_WINDOW_S, 2 * self.edge_s):
            return WindowEnergy(
                None,
                reason=f"{TOO_SHORT}: window {duration_s:.2f} s < "
                f"{max(MIN_WINDOW_S, 2 * self.edge_s):.1f} s "
                f"(the counter moves every ~{UPDATE_PERIOD_S:.1f} s)",
            )
        lo, hi = max(start_ns, series.times[0]), min(end_ns, series.times[-1])
        covered = max(0, hi - lo) / (end_ns - start_ns)
        if covered < MIN_COVERAGE:
            return WindowEnergy(None, reason=f"samples cover {100 * covered:.0f}% of the window")
        joules = (series.value_at(hi) - series.value_at(lo)) / covered
        power = joules / duration_s
        return WindowEnergy(joules, 2 * self.edge_s * power)


class RunEnergy:
    """The energy counters of every GPU in a run's samples, by UUID."""

    def __init__(self, samples: Sequence[GpuSample]) -> None:
        by_uuid: dict[str, list[GpuSample]] = {}
        for sample in samples:
            if sample.energy_j is not None:
                by_uuid.setdefault(sample.uuid, []).append(sample)
        self.gpus = {uuid: EnergySeries(mine) for uuid, mine in by_uuid.items()}
        self.any_samples = bool(samples)

    def window(self, uuid: str | None, start_ns: int, end_ns: int) -> WindowEnergy:
        series = self.gpus.get(uuid or "")
        if series is None:
            why = "no GPU samples" if not self.any_samples else f"no energy readings for GPU {uuid}"
            return WindowEnergy(None, reason=why)
        return series.window(start_ns, end_ns)

    def edge_s(self, uuids: Sequence[str]) -> float | None:
        edges = [self.gpus[u].edge_s for u in uuids if u in self.gpus]
        return max(edges) if edges else None


def summed(parts: Sequence[WindowEnergy]) -> WindowEnergy:
    """The energy of one window on several GPUs: n/a when any of them is (a partial sum would
    read as the whole)."""
    if not parts:
        return WindowEnergy(None, reason="no window")
    for part in parts:
        if part.joules is None:
            return part
    return WindowEnergy(
        sum(p.joules or 0.0 for p in parts), sum(p.tolerance_j for p in parts), None
    )
