"""The narrow GPU interface the sampler reads through: the ``GpuBackend`` Protocol, the reading
types it returns (all in base units: bytes, watts, joules, celsius, hertz, seconds, 0..1
fractions) and the errors it raises.

Two implementations: ``nvml.NvmlBackend`` (the hardware) and ``fake.FakeBackend`` (a scripted
activity profile for tests and benchmarks). ``None`` in a reading means the GPU or driver does
not support the field; its series is then absent, never 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

CLOCK_EVENT_REASONS: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)
"""NVML clock event (throttle) reason bits and the ``reason`` label value of each. The bits are
NVML's ``nvmlClocksEventReason*`` values; kept here so the fake and NVML decode alike."""


def decode_clock_events(mask: int) -> dict[str, bool]:
    """Every known reason with whether its bit is set: a reason that is off reads 0, not absent."""
    return {name: bool(mask & bit) for bit, name in CLOCK_EVENT_REASONS}


@dataclass(frozen=True)
class DeviceInfo:
    """Static facts of one GPU, read once at init."""

    index: int
    uuid: str
    """NVML's UUID string, ``GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``."""
    name: str


@dataclass(frozen=True)
class SystemInfo:
    """What ``GpuBackend.init`` found."""

    driver_version: str
    cuda_version: str
    devices: tuple[DeviceInfo, ...]


@dataclass(frozen=True)
class Activity:
    """Mean activity over the window since the previous read of the same GPU.

    Fractions are 0..1 means over ``window_s`` seconds, so ``fraction * window_s`` is the exact
    integral (GPM reports the mean between its two samples). The first read after init or after
    an error primes the window: ``window_s`` is 0 and the fractions of supported fields are 0.
    """

    source: str
    """``gpm`` or ``nvml_util`` (semconv.SOURCE_*)."""
    window_s: float
    sm_active: float | None
    sm_occupancy: float | None = None
    tensor_active: float | None = None
    dram_active: float | None = None
    pcie_rx_bytes: float | None = None
    """Bytes received by the GPU over the window (not a rate)."""
    pcie_tx_bytes: float | None = None


@dataclass(frozen=True)
class ProcessMemory:
    """One compute process on a GPU."""

    pid: int
    used_bytes: int | None


@dataclass(frozen=True)
class GpuReading:
    """One read of one GPU. Every field is ``None`` where unsupported or where its call failed."""

    activity: Activity | None = None
    memory_used_bytes: int | None = None
    memory_reserved_bytes: int | None = None
    memory_total_bytes: int | None = None
    power_watts: float | None = None
    energy_joules: float | None = None
    """Cumulative since the driver loaded."""
    temperature_celsius: float | None = None
    sm_clock_hertz: float | None = None
    memory_clock_hertz: float | None = None
    clock_events: Mapping[str, bool] | None = None
    ecc_corrected: int | None = None
    """Volatile (since driver load) corrected ECC error count."""
    ecc_uncorrected: int | None = None
    processes: tuple[ProcessMemory, ...] | None = None


class BackendError(Exception):
    """A backend call failed. ``call`` names it (e.g. ``nvmlInit``); ``reason`` is NVML's text."""

    def __init__(self, call: str, reason: str) -> None:
        super().__init__(f"{call}: {reason}")
        self.call = call
        self.reason = reason


class BackendUnavailable(BackendError):
    """The whole backend is down (library missing, driver not loaded, uninitialised): the
    sampler marks the exporter down and re-initialises with backoff."""


class DeviceError(BackendError):
    """One GPU cannot be read (e.g. ``GPU is lost``): its series are dropped, others continue."""


class GpuBackend(Protocol):
    """What the sampler needs from a GPU library. Not thread-safe: one sampler thread calls it."""

    def init(self) -> SystemInfo:
        """Initialise the library and list the GPUs. Raises ``BackendUnavailable``."""
        ...

    def read(self, index: int, *, processes: bool = True) -> GpuReading:
        """Read one GPU. Raises ``DeviceError`` for this GPU, ``BackendUnavailable`` for all."""
        ...

    def errors(self) -> Mapping[str, int]:
        """Failed calls so far, by call name (cumulative; a bounded set of names)."""
        ...

    def shutdown(self) -> None:
        """Release the library; ``init`` may be called again afterwards. Never raises."""
        ...
