"""``FakeBackend``: GPUs that replay a scripted activity profile, for tests, benchmarks and
``wan-otel exporter --backend fake``.

Everything is a function of an injected clock, so a test that steps the clock knows the exact
integral the counters must reach. Faults are injected by method calls (``lose``, ``go_down``,
``fail_next_inits``); an optional per-call CPU cost models what NVML calls cost on real GPUs.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from wan_otel import semconv
from wan_otel.exporter.backend import (
    Activity,
    BackendUnavailable,
    DeviceError,
    DeviceInfo,
    GpuReading,
    ProcessMemory,
    SystemInfo,
    decode_clock_events,
)
from wan_otel.exporter.energy_schedule import ScheduledEnergy
from wan_otel.exporter.gauges import GaugeSchedule


@dataclass(frozen=True)
class ActivityProfile:
    """A periodic, piecewise-constant activity level (0..1): ``segments`` of (seconds, level)
    repeat forever from the backend's start. A duty cycle is two segments."""

    segments: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.segments or any(d <= 0 or not 0 <= lv <= 1 for d, lv in self.segments):
            raise ValueError(f"bad activity profile {self.segments!r}")

    @classmethod
    def duty_cycle(cls, busy_fraction: float, period_s: float = 0.1) -> ActivityProfile:
        """Fully active for the first ``busy_fraction`` of every period, idle for the rest."""
        if not 0 <= busy_fraction <= 1 or period_s <= 0:
            raise ValueError(f"duty cycle {busy_fraction} over {period_s} s is not in 0..1")
        if busy_fraction in (0, 1):
            return cls(((period_s, float(busy_fraction)),))
        busy = busy_fraction * period_s
        return cls(((busy, 1.0), (period_s - busy, 0.0)))

    @property
    def period_s(self) -> float:
        return math.fsum(d for d, _ in self.segments)

    def level_at(self, t: float) -> float:
        rest = t % self.period_s if t > 0 else 0.0
        for duration, level in self.segments:
            if rest < duration:
                return level
            rest -= duration
        return self.segments[-1][1]

    def cumulative(self, t: float) -> float:
        """Active seconds from 0 to ``t``: the exact integral of the level."""
        if t <= 0:
            return 0.0
        period = self.period_s
        cycles, rest = divmod(t, period)
        total = cycles * math.fsum(d * lv for d, lv in self.segments)
        for duration, level in self.segments:
            if rest <= 0:
                break
            step = min(duration, rest)
            total += step * level
            rest -= step
        return total


@dataclass(frozen=True)
class FakeGpu:
    """One scripted GPU. Secondary activities are fixed multiples of SM activity."""

    profile: ActivityProfile = field(default_factory=lambda: ActivityProfile.duty_cycle(0.5))
    name: str = "NVIDIA H100 80GB HBM3"
    gpm: bool = True
    """False: behave like a pre-Hopper GPU (``nvml_util`` source, no occupancy/tensor/DRAM/PCIe)."""
    ecc: bool = True
    memory_total_bytes: int = 85_520_809_984
    memory_reserved_bytes: int = 570_425_344
    memory_used_bytes: int = 12_884_901_888
    idle_watts: float = 70.0
    busy_watts: float = 700.0
    occupancy_per_active: float = 0.125
    tensor_per_active: float = 0.875
    dram_per_active: float = 0.25
    pcie_rx_bytes_per_s: float = 1_048_576.0
    pcie_tx_bytes_per_s: float = 262_144.0
    processes: tuple[ProcessMemory, ...] = ()


def fake_uuid(index: int) -> str:
    return f"GPU-fa4e0000-0000-4000-8000-{index:012x}"


class FakeBackend:
    """A ``GpuBackend`` over scripted GPUs (see module docstring)."""

    def __init__(
        self,
        gpus: Sequence[FakeGpu],
        clock: Callable[[], float] = time.monotonic,
        *,
        call_cost_s: float = 0.0,
        gpm_cost_s: float = 0.0,
        energy_cost_s: float = 0.0,
        energy_interval_s: float = 0.0,
        gauge_interval_s: float = 0.0,
        driver_version: str = "580.159.04",
        cuda_version: str = "13.0",
    ) -> None:
        self._gpus = list(gpus)
        self._clock = clock
        self._origin = clock()
        self._call_cost_s = call_cost_s
        self._gpm_cost_s = gpm_cost_s
        self._gauges = GaugeSchedule(gauge_interval_s)
        self._energy_cost_s = energy_cost_s
        self._energy_interval_s = energy_interval_s
        self._energy: dict[int, ScheduledEnergy] = {}
        self._versions = (driver_version, cuda_version)
        self._errors: dict[str, int] = {}
        self._prev: dict[int, float] = {}
        self._lost: set[int] = set()
        self._init_failures = 0
        self._up = False
        self.init_calls = 0
        self.read_calls = 0

    # -- fault injection ---------------------------------------------------------------------

    def fail_next_inits(self, count: int) -> None:
        """The next ``count`` calls to ``init`` fail as if the NVML library were missing."""
        self._init_failures = count

    def lose(self, index: int) -> None:
        """GPU ``index`` fails every read with NVML's ``GPU is lost`` until ``recover``."""
        self._lost.add(index)

    def recover(self, index: int) -> None:
        self._lost.discard(index)

    def go_down(self) -> None:
        """Every read fails as if the driver went away, until the next successful ``init``."""
        self._up = False

    def set_gpu(self, index: int, gpu: FakeGpu) -> None:
        """Replace GPU ``index``'s script (e.g. new processes) from the next read on."""
        self._gpus[index] = gpu

    # -- GpuBackend --------------------------------------------------------------------------

    def init(self) -> SystemInfo:
        self.init_calls += 1
        self._spend(self._call_cost_s)
        if self._init_failures > 0:
            self._init_failures -= 1
            self._count("nvmlInit")
            raise BackendUnavailable("nvmlInit", "NVML Shared Library Not Found")
        self._up = True
        self._prev.clear()
        self._gauges.forget()
        for energy in self._energy.values():  # kept, as NvmlBackend keeps them by UUID
            energy.resume()
        devices = tuple(
            DeviceInfo(index=i, uuid=fake_uuid(i), name=g.name) for i, g in enumerate(self._gpus)
        )
        return SystemInfo(self._versions[0], self._versions[1], devices)

    def read(self, index: int, *, processes: bool = True) -> GpuReading:
        self.read_calls += 1
        if not self._up:
            self._count("nvmlDeviceGetMemoryInfo")
            raise BackendUnavailable("nvmlDeviceGetMemoryInfo", "Uninitialized")
        if index in self._lost:
            self._prev.pop(index, None)
            if index in self._energy:
                self._energy[index].resume()
            self._count("nvmlDeviceGetMemoryInfo")
            raise DeviceError("nvmlDeviceGetMemoryInfo", "GPU is lost")
        gpu = self._gpus[index]
        now = self._clock()
        t = now - self._origin
        # The plain NVML calls NvmlBackend makes: memory and power every read (and utilization
        # without GPM), the energy counter when its schedule says so (``energy_schedule``),
        # six state gauges and the processes when theirs does (``gauges``).
        self._spend(self._call_cost_s * (2 if gpu.gpm else 3))
        if gpu.gpm:
            self._spend(self._gpm_cost_s)
        level = gpu.profile.level_at(t)
        power = gpu.idle_watts + (gpu.busy_watts - gpu.idle_watts) * _last_second(gpu.profile, t)
        energy = self._energy.setdefault(index, ScheduledEnergy(self._energy_interval_s))
        gauges = self._gauges.get(
            index, now, processes, lambda: self._read_gauges(gpu, level, processes)
        )
        return replace(
            gauges,
            activity=self._activity(index, gpu, now),
            memory_used_bytes=gpu.memory_used_bytes,
            memory_reserved_bytes=gpu.memory_reserved_bytes,
            memory_total_bytes=gpu.memory_total_bytes,
            power_watts=power,
            energy_joules=energy.update(now, power, lambda: self._energy_counter_j(gpu, t)),
        )

    def _read_gauges(self, gpu: FakeGpu, level: float, processes: bool) -> GpuReading:
        self._spend(self._call_cost_s * (6 + (1 if processes else 0)))
        return GpuReading(
            temperature_celsius=35.0 + 40.0 * level,
            sm_clock_hertz=1_980_000_000.0 if level > 0 else 345_000_000.0,
            memory_clock_hertz=2_619_000_000.0,
            clock_events=decode_clock_events(0x1 if level == 0 else 0x0),
            ecc_corrected=0 if gpu.ecc else None,
            ecc_uncorrected=0 if gpu.ecc else None,
            processes=gpu.processes if processes else None,
        )

    def errors(self) -> Mapping[str, int]:
        return dict(self._errors)

    def shutdown(self) -> None:
        self._up = False

    # -- internals ---------------------------------------------------------------------------

    def _activity(self, index: int, gpu: FakeGpu, now: float) -> Activity:
        prev = self._prev.get(index)
        self._prev[index] = now
        window = 0.0 if prev is None else now - prev
        mean = 0.0
        if window > 0 and prev is not None:
            active = gpu.profile.cumulative(now - self._origin) - gpu.profile.cumulative(
                prev - self._origin
            )
            mean = active / window
        if not gpu.gpm:
            return Activity(source=semconv.SOURCE_NVML_UTIL, window_s=window, sm_active=mean)
        return Activity(
            source=semconv.SOURCE_GPM,
            window_s=window,
            sm_active=mean,
            sm_occupancy=mean * gpu.occupancy_per_active,
            tensor_active=mean * gpu.tensor_per_active,
            dram_active=mean * gpu.dram_per_active,
            pcie_rx_bytes=gpu.pcie_rx_bytes_per_s * window,
            pcie_tx_bytes=gpu.pcie_tx_bytes_per_s * window,
        )

    def energy_schedules(self) -> Mapping[int, ScheduledEnergy]:
        """Each GPU's energy schedule, as ``NvmlBackend.energy_schedules``."""
        return dict(self._energy)

    def _energy_counter_j(self, gpu: FakeGpu, t: float) -> float:
        self._spend(self._energy_cost_s)
        return gpu.idle_watts * t + (gpu.busy_watts - gpu.idle_watts) * gpu.profile.cumulative(t)

    def _count(self, call: str) -> None:
        self._errors[call] = self._errors.get(call, 0) + 1

    @staticmethod
    def _spend(seconds: float) -> None:
        """Burn ``seconds`` of CPU as an NVML call does: an ioctl, CPU time rather than sleep,
        and outside the interpreter lock (ctypes releases it). Costs under 0.1 ms spin in
        Python (too short to matter to the lock); longer ones hash a buffer, which releases it."""
        if seconds <= 0:
            return
        end = time.perf_counter() + seconds
        if seconds >= 1e-4:
            while time.perf_counter() < end - 5e-5:
                hashlib.sha256(_BURN)
        while time.perf_counter() < end:
            pass


def _last_second(profile: ActivityProfile, t: float) -> float:
    """Mean activity over the second before ``t``: NVML's power reading on Ampere (but GA100)
    and newer GPUs is the average over the last second (``nvmlDeviceGetPowerUsage``)."""
    start = max(0.0, t - 1.0)
    if t <= start:
        return profile.level_at(t)
    return (profile.cumulative(t) - profile.cumulative(start)) / (t - start)


_BURN = bytes(16 * 1024)
"""Hashed to burn CPU without the interpreter lock (hashlib releases it above 2 KiB): about
10-30 us a pass, so a cost lands within one pass."""


def parse_profiles(spec: str, count: int | None = None) -> list[FakeGpu]:
    """``--fake-profile``: comma-separated per-GPU duty cycles, each ``BUSY[/PERIOD_S]``
    (``0.5`` = busy half of every 0.1 s). One spec with ``count`` repeats for every GPU."""
    gpus = []
    for part in spec.split(","):
        busy_text, _, period_text = part.strip().partition("/")
        try:
            busy = float(busy_text)
            period = float(period_text) if period_text else 0.1
            gpus.append(FakeGpu(profile=ActivityProfile.duty_cycle(busy, period)))
        except ValueError as exc:
            raise ValueError(
                f"--fake-profile {part.strip()!r}: expected BUSY[/PERIOD_S] with BUSY in 0..1, "
                f"e.g. 0.5 or 0.25/0.2 ({exc})"
            ) from None
    if count is not None:
        if len(gpus) == 1:
            gpus = gpus * count
        elif len(gpus) != count:
            raise ValueError(f"--fake-profile lists {len(gpus)} GPUs but --fake-gpus is {count}")
    return gpus
