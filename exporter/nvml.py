"""``NvmlBackend``: reads NVIDIA GPUs through NVML (``pynvml`` from nvidia-ml-py).

The only module that imports pynvml. Units are converted here (mW -> W, mJ -> J, MHz -> Hz,
percent -> 0..1, GPM MiB/s -> bytes); a call the GPU does not support (NOT_SUPPORTED,
FUNCTION_NOT_FOUND) yields ``None`` and is not called again; any other failure is counted by
call name. ``GPU is lost`` raises ``DeviceError`` (that GPU's series go away); an uninitialised
library or unloaded driver raises ``BackendUnavailable`` (the sampler re-initialises).

Activity comes from GPM (Hopper and newer, ``gpm.py``): the mean over exactly the time since
the previous read. Where GPM is unsupported it comes from
``nvmlDeviceGetUtilizationRates().gpu``, a duty cycle over the driver's own 1/6 to 1 s period,
integrated as ``util * window``. PCIe bytes come from GPM; off GPM,
``nvmlDeviceGetPcieThroughput`` blocks about 20 ms per call (it samples a counter over 20 ms),
so it is used only if a timed first call proves cheap (< 2 ms), which real drivers never do.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

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
from wan_otel.exporter.gpm import GpmUnusable, GpmWindow, fraction

try:
    import pynvml
except ImportError:  # the exporter extra is not installed; init() says so
    pynvml = None

log = logging.getLogger(__name__)

PCIE_CHEAP_S = 0.002
"""``nvmlDeviceGetPcieThroughput`` is used off GPM only if its first call returns this fast."""


@dataclass
class _Device:
    info: DeviceInfo
    handle: Any
    energy: ScheduledEnergy
    """Kept by the backend per GPU UUID, across re-initialisations."""
    gpm: GpmWindow | None = None
    """GPM state; None where GPM is unsupported (activity from NVML utilization)."""
    prev_t: float | None = None
    """Clock time of the previous utilization read; None until primed (or after an error)."""
    unsupported: set[str] = field(default_factory=set)
    pcie_nvml: bool = False


_NVML_LOCK = threading.RLock()


class SerializedNvml:
    """The NVML module with every function call made under one process-wide lock.

    On the H100 (driver 580), GPM reads from two backends at once in one process (the exporter's
    sampler beside a run's sample recorder, or two samplers) crashed the process inside
    ``nvmlGpmMetricsGet``. The calls take microseconds; serialising them costs nothing.
    Constants, structures and exception classes pass through untouched.
    """

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        """Resolved once per name, then kept on the instance (a sample looks up about 30
        names; resolving each every time was a third of a sample's Python work)."""
        attr = getattr(self._module, name)
        if inspect.isfunction(attr) or inspect.isbuiltin(attr):
            function = attr

            def locked(*args: Any, **kwargs: Any) -> Any:
                with _NVML_LOCK:
                    return function(*args, **kwargs)

            attr = locked
        setattr(self, name, attr)
        return attr


class NvmlBackend:
    """A ``GpuBackend`` over NVML. ``nvml`` is the pynvml module (a stand-in in tests)."""

    def __init__(
        self,
        nvml: Any = None,
        clock: Callable[[], float] = time.monotonic,
        use_gpm: bool = True,
        pcie_cheap_s: float = PCIE_CHEAP_S,
        energy_interval_s: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        run_figures_only: bool = False,
        gauge_interval_s: float = 0.0,
    ) -> None:
        """``energy_interval_s``: read the energy counter at most this often, carried between
        readings by power (``energy_schedule``); 0 reads it every time. ``run_figures_only``:
        read only what a run's GPU samples hold (activity, memory, power, energy): five NVML
        calls a GPU instead of twelve, for the sampler inside a generating process, where
        each call's return takes the interpreter lock back from the generation.
        ``gauge_interval_s``: read the state gauges (temperature, clocks, clock events, ECC,
        processes) at most this often (``gauges``); 0 reads them every time."""
        self._n = SerializedNvml(nvml if nvml is not None else pynvml)
        self._clock = clock
        self._use_gpm = use_gpm
        self._pcie_cheap_s = pcie_cheap_s
        self._energy_interval_s = energy_interval_s
        self._energy: dict[str, ScheduledEnergy] = {}
        """By GPU UUID, kept across re-initialisations: what a GPU's counter published
        before must bound what it publishes after."""
        self._sleep = sleep
        self._run_figures_only = run_figures_only
        self._gauges = GaugeSchedule(gauge_interval_s)
        self._errors: dict[str, int] = {}
        self._devices: dict[int, _Device] = {}
        self._metrics_get: Any = None  # one 19 KB c_nvmlGpmMetricsGet_t, reused
        self._initialised = False

    # -- GpuBackend --------------------------------------------------------------------------

    def init(self) -> SystemInfo:
        n = self._n
        if n is None:
            self._count("nvmlInit")
            raise BackendUnavailable("nvmlInit", "nvidia-ml-py is not installed")
        try:
            n.nvmlInit()
        except n.NVMLError as exc:
            self._count("nvmlInit")
            raise BackendUnavailable("nvmlInit", str(exc)) from None
        self._initialised = True
        self._gauges.forget()
        try:
            driver = str(n.nvmlSystemGetDriverVersion())
            cuda = self._cuda_version()
            count = n.nvmlDeviceGetCount()
        except n.NVMLError as exc:
            self._count("nvmlDeviceGetCount")
            self.shutdown()
            raise BackendUnavailable("nvmlDeviceGetCount", str(exc)) from None
        self._devices = {}
        for index in range(count):
            device = self._open(index)
            if device is not None:
                self._devices[index] = device
        infos = tuple(d.info for d in self._devices.values())
        return SystemInfo(driver_version=driver, cuda_version=cuda, devices=infos)

    def read(self, index: int, *, processes: bool = True) -> GpuReading:
        n, dev = self._n, self._devices[index]
        h = dev.handle
        memory = self._call(dev, "nvmlDeviceGetMemoryInfo", h, version=n.nvmlMemory_v2)
        reserved: int | None = None
        if memory is not None:
            reserved = int(memory.reserved)
        else:  # drivers before R510 have no v2: used and total only
            memory = self._call(dev, "nvmlDeviceGetMemoryInfo", h, key="memory_v1")
        power = self._call(dev, "nvmlDeviceGetPowerUsage", h)
        energy = dev.energy.update(
            self._clock(),
            None if power is None else power / 1000.0,
            lambda: self._energy_counter_j(dev),
        )
        activity = self._activity(dev)
        gauges = (
            GpuReading()
            if self._run_figures_only
            else self._gauges.get(
                index, self._clock(), processes, lambda: self._read_gauges(dev, processes)
            )
        )
        return replace(
            gauges,
            activity=activity,
            memory_used_bytes=None if memory is None else int(memory.used),
            memory_reserved_bytes=reserved,
            memory_total_bytes=None if memory is None else int(memory.total),
            power_watts=None if power is None else power / 1000.0,
            energy_joules=energy,
        )

    def _read_gauges(self, dev: _Device, processes: bool) -> GpuReading:
        n, h = self._n, dev.handle
        temperature = self._call(dev, "nvmlDeviceGetTemperature", h, n.NVML_TEMPERATURE_GPU)
        sm_clock = self._call(dev, "nvmlDeviceGetClockInfo", h, n.NVML_CLOCK_SM, key="sm")
        mem_clock = self._call(dev, "nvmlDeviceGetClockInfo", h, n.NVML_CLOCK_MEM, key="mem")
        events = self._clock_events(dev)
        corrected, uncorrected = self._ecc(dev)
        return GpuReading(
            temperature_celsius=None if temperature is None else float(temperature),
            sm_clock_hertz=None if sm_clock is None else sm_clock * 1e6,
            memory_clock_hertz=None if mem_clock is None else mem_clock * 1e6,
            clock_events=None if events is None else decode_clock_events(int(events)),
            ecc_corrected=corrected,
            ecc_uncorrected=uncorrected,
            processes=self._processes(dev) if processes else None,
        )

    def errors(self) -> Mapping[str, int]:
        return dict(self._errors)

    def energy_schedules(self) -> Mapping[int, ScheduledEnergy]:
        """Each GPU's energy schedule: how often the counter was read, and the error found."""
        return {index: dev.energy for index, dev in self._devices.items()}

    def shutdown(self) -> None:
        n = self._n
        for dev in self._devices.values():
            if dev.gpm is not None:
                dev.gpm.free()
        self._devices = {}
        if self._initialised:
            self._initialised = False
            with contextlib.suppress(Exception):
                n.nvmlShutdown()

    # -- setup -------------------------------------------------------------------------------

    def _cuda_version(self) -> str:
        try:
            version = int(self._n.nvmlSystemGetCudaDriverVersion_v2())
        except self._n.NVMLError:
            return ""
        return f"{version // 1000}.{version % 1000 // 10}"

    def _open(self, index: int) -> _Device | None:
        n = self._n
        try:
            handle = n.nvmlDeviceGetHandleByIndex(index)
            info = DeviceInfo(
                index, str(n.nvmlDeviceGetUUID(handle)), str(n.nvmlDeviceGetName(handle))
            )
        except n.NVMLError as exc:
            self._count("nvmlDeviceGetHandleByIndex")
            log.warning("GPU %d cannot be opened (%s); left out until NVML restarts", index, exc)
            return None
        energy = self._energy.setdefault(info.uuid, ScheduledEnergy(self._energy_interval_s))
        energy.resume()
        dev = _Device(info, handle, energy=energy)
        if self._use_gpm and self._gpm_supported(handle):
            try:
                if self._metrics_get is None:
                    self._metrics_get = n.c_nvmlGpmMetricsGet_t()
                dev.gpm = GpmWindow(n, handle, self._clock, self._metrics_get, self._sleep)
            except n.NVMLError as exc:
                self._count("nvmlGpmSampleAlloc")
                log.warning("GPU %d: GPM buffers failed (%s); using NVML utilization", index, exc)
        if dev.gpm is None:
            dev.pcie_nvml = self._pcie_is_cheap(dev)
        return dev

    def _gpm_supported(self, handle: Any) -> bool:
        n = self._n
        try:
            return bool(n.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)
        except n.NVMLError:  # pre-R520 drivers or pre-Hopper GPUs
            return False

    def _pcie_is_cheap(self, dev: _Device) -> bool:
        n = self._n
        started = time.perf_counter()
        value = self._call(
            dev, "nvmlDeviceGetPcieThroughput", dev.handle, n.NVML_PCIE_UTIL_TX_BYTES
        )
        cost = time.perf_counter() - started
        if value is not None and cost >= self._pcie_cheap_s:
            log.info(
                "GPU %d: PCIe throughput costs %.0f ms a call; not exported without GPM",
                dev.info.index,
                cost * 1000,
            )
        return value is not None and cost < self._pcie_cheap_s

    # -- reads -------------------------------------------------------------------------------

    def _activity(self, dev: _Device) -> Activity | None:
        if dev.gpm is not None:
            try:
                activity = dev.gpm.read(lambda call, *args: self._call(dev, call, *args))
            except GpmUnusable as exc:
                self._drop_gpm(dev, str(exc))
            else:
                if "nvmlGpmSampleGet" not in dev.unsupported:
                    return activity
                self._drop_gpm(dev, "nvmlGpmSampleGet is not supported")  # e.g. MIG turned on
        return self._utilization(dev)

    def _drop_gpm(self, dev: _Device, why: str) -> None:
        log.warning("GPU %d: %s; using NVML utilization instead", dev.info.index, why)
        if dev.gpm is not None:
            dev.gpm.free()
        dev.gpm, dev.prev_t = None, None
        dev.pcie_nvml = self._pcie_is_cheap(dev)

    def _utilization(self, dev: _Device) -> Activity | None:
        n = self._n
        util = self._call(dev, "nvmlDeviceGetUtilizationRates", dev.handle)
        now = self._clock()
        if util is None:
            dev.prev_t = None
            return None
        prev_t, dev.prev_t = dev.prev_t, now
        window = 0.0 if prev_t is None else now - prev_t
        rx = tx = None
        h = dev.handle
        if dev.pcie_nvml:  # KB/s over the driver's last 20 ms, taken as the window's mean
            rx_kbs = self._call(dev, "nvmlDeviceGetPcieThroughput", h, n.NVML_PCIE_UTIL_RX_BYTES)
            tx_kbs = self._call(dev, "nvmlDeviceGetPcieThroughput", h, n.NVML_PCIE_UTIL_TX_BYTES)
            rx = None if rx_kbs is None else rx_kbs * 1024.0 * window
            tx = None if tx_kbs is None else tx_kbs * 1024.0 * window
        return Activity(
            source=semconv.SOURCE_NVML_UTIL,
            window_s=window,
            sm_active=fraction(util.gpu),
            pcie_rx_bytes=rx,
            pcie_tx_bytes=tx,
        )

    def _energy_counter_j(self, dev: _Device) -> float | None:
        millijoules = self._call(dev, "nvmlDeviceGetTotalEnergyConsumption", dev.handle)
        return None if millijoules is None else millijoules / 1000.0

    def _clock_events(self, dev: _Device) -> int | None:
        current = "nvmlDeviceGetCurrentClocksEventReasons"
        mask = self._call(dev, current, dev.handle)
        if mask is None and current in dev.unsupported:  # drivers before R535: the old name
            mask = self._call(dev, "nvmlDeviceGetCurrentClocksThrottleReasons", dev.handle)
        return None if mask is None else int(mask)

    def _ecc(self, dev: _Device) -> tuple[int | None, int | None]:
        n = self._n
        counts = []
        for kind in (n.NVML_MEMORY_ERROR_TYPE_CORRECTED, n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED):
            value = self._call(
                dev, "nvmlDeviceGetTotalEccErrors", dev.handle, kind, n.NVML_VOLATILE_ECC
            )
            counts.append(None if value is None else int(value))
        return counts[0], counts[1]

    def _processes(self, dev: _Device) -> tuple[ProcessMemory, ...] | None:
        procs = self._call(dev, "nvmlDeviceGetComputeRunningProcesses", dev.handle)
        if procs is None:
            return None
        return tuple(
            ProcessMemory(int(p.pid), None if p.usedGpuMemory is None else int(p.usedGpuMemory))
            for p in procs
        )

    # -- error handling ----------------------------------------------------------------------

    def _call(self, dev: _Device, call: str, *args: Any, key: str = "", **kwargs: Any) -> Any:
        """NVML function ``call`` on ``args``, or ``None`` where unsupported (remembered under
        ``key``, default the call's name) or failed (counted under the call's name)."""
        n, key = self._n, key or call
        if key in dev.unsupported:
            return None
        try:
            return getattr(n, call)(*args, **kwargs)
        except n.NVMLError as exc:
            code = exc.value
            if code in (n.NVML_ERROR_NOT_SUPPORTED, n.NVML_ERROR_FUNCTION_NOT_FOUND):
                dev.unsupported.add(key)  # not an error: the series is simply absent
                return None
            self._count(call)
            if code in (n.NVML_ERROR_GPU_IS_LOST, n.NVML_ERROR_RESET_REQUIRED):
                dev.prev_t = None
                dev.energy.resume()
                if dev.gpm is not None:
                    dev.gpm.reset()
                raise DeviceError(call, str(exc)) from None
            if code in (
                n.NVML_ERROR_UNINITIALIZED,
                n.NVML_ERROR_DRIVER_NOT_LOADED,
                n.NVML_ERROR_LIB_RM_VERSION_MISMATCH,
                n.NVML_ERROR_LIBRARY_NOT_FOUND,
            ):
                raise BackendUnavailable(call, str(exc)) from None
            return None

    def _count(self, call: str) -> None:
        self._errors[call] = self._errors.get(call, 0) + 1
