"""NvmlBackend against a stand-in pynvml: unit conversion, GPM windows, unsupported fields,
error mapping; and the real pynvml on a machine without a driver."""

from __future__ import annotations

import ctypes.util
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from wan_otel import semconv
from wan_otel.exporter import nvml as nvml_module
from wan_otel.exporter.backend import BackendUnavailable, DeviceError
from wan_otel.exporter.nvml import NvmlBackend
from wan_otel.exporter.recorder import GpuSampleRecorder
from wan_otel.exporter.snapshot import Integrals
from wan_otel.store.samples import read_samples

from .conftest import ManualClock

real = nvml_module.pynvml
pytestmark = pytest.mark.skipif(real is None, reason="nvidia-ml-py not installed")


class StubNvml:
    """Enough of pynvml for one GPU. Constants and NVMLError are the real module's; GPM samples
    record the clock and the cumulative busy seconds of ``busy(t)``."""

    def __init__(self, clock: ManualClock, busy: Callable[[float], float], gpm: bool = True):
        for name in dir(real):
            if name.startswith(("NVML_", "nvmlMemory_v", "nvmlClocks")) or name == "NVMLError":
                setattr(self, name, getattr(real, name))
        self.clock, self.busy, self.gpm = clock, busy, gpm
        self.calls: dict[str, int] = {}
        self.fail: dict[str, int] = {}  # function name -> NVML error code to raise
        self.freed = 0
        self.shut = False
        self.pcie_cost_s = 0.0
        self.metric_errors: dict[int, int] = {}

    def __getattr__(self, name: str) -> Any:  # only for names not set above: the functions
        raise AttributeError(name)

    def _enter(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if name in self.fail:
            raise real.NVMLError(self.fail[name])

    # library
    def nvmlInit(self) -> None:
        self._enter("nvmlInit")

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.159.04"

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return 13000

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"handle{index}"

    def nvmlDeviceGetUUID(self, handle: str) -> str:
        return "GPU-5c3d1a2b-0000-1111-2222-333344445555"

    def nvmlDeviceGetName(self, handle: str) -> str:
        return "NVIDIA H100 80GB HBM3"

    # fields
    def nvmlDeviceGetMemoryInfo(self, handle: str, version: int | None = None) -> Any:
        self._enter("nvmlDeviceGetMemoryInfo" + ("_v2" if version else ""))
        if version:
            return SimpleNamespace(total=85_520_809_984, reserved=570_425_344, used=1 << 30)
        return SimpleNamespace(total=85_520_809_984, used=1 << 30)

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        self._enter("nvmlDeviceGetPowerUsage")
        return 351_250  # mW

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        self._enter("nvmlDeviceGetTotalEnergyConsumption")
        return 123_456_789  # mJ

    def nvmlDeviceGetTemperature(self, handle: str, sensor: int) -> int:
        self._enter("nvmlDeviceGetTemperature")
        return 47

    def nvmlDeviceGetClockInfo(self, handle: str, kind: int) -> int:
        self._enter("nvmlDeviceGetClockInfo")
        return {real.NVML_CLOCK_SM: 1980, real.NVML_CLOCK_MEM: 2619}[kind]  # MHz

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: str) -> int:
        self._enter("nvmlDeviceGetCurrentClocksEventReasons")
        return real.nvmlClocksEventReasonSwPowerCap

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: str) -> int:
        self._enter("nvmlDeviceGetCurrentClocksThrottleReasons")
        return real.nvmlClocksEventReasonGpuIdle

    def nvmlDeviceGetTotalEccErrors(self, handle: str, kind: int, counter: int) -> int:
        self._enter("nvmlDeviceGetTotalEccErrors")
        return 3 if kind == real.NVML_MEMORY_ERROR_TYPE_CORRECTED else 0

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[Any]:
        self._enter("nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=4242, usedGpuMemory=1 << 29)]

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> Any:
        self._enter("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=40, memory=10)

    def nvmlDeviceGetPcieThroughput(self, handle: str, counter: int) -> int:
        self._enter("nvmlDeviceGetPcieThroughput")
        time.sleep(self.pcie_cost_s)
        return 2048  # KB/s

    # GPM
    def nvmlGpmQueryDeviceSupport(self, handle: str) -> Any:
        self._enter("nvmlGpmQueryDeviceSupport")
        if not self.gpm:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        return SimpleNamespace(isSupportedDevice=1)

    def nvmlGpmSampleAlloc(self) -> SimpleNamespace:
        return SimpleNamespace(t=None, busy=None)

    def nvmlGpmSampleFree(self, sample: Any) -> None:
        self.freed += 1

    def nvmlGpmSampleGet(self, handle: str, sample: Any) -> Any:
        self._enter("nvmlGpmSampleGet")
        sample.t, sample.busy = self.clock(), self.busy(self.clock())
        return sample

    def c_nvmlGpmMetricsGet_t(self) -> Any:
        return SimpleNamespace(
            metrics=[SimpleNamespace(metricId=0, nvmlReturn=None, value=0.0) for _ in range(8)]
        )

    def nvmlGpmMetricsGet(self, mg: Any) -> Any:
        self._enter("nvmlGpmMetricsGet")
        assert mg.version == real.NVML_GPM_METRICS_GET_VERSION
        dt = mg.sample2.t - mg.sample1.t
        sm = 100.0 * (mg.sample2.busy - mg.sample1.busy) / dt
        values = {
            real.NVML_GPM_METRIC_SM_UTIL: sm,
            real.NVML_GPM_METRIC_SM_OCCUPANCY: sm / 8,
            real.NVML_GPM_METRIC_ANY_TENSOR_UTIL: sm / 2,
            real.NVML_GPM_METRIC_DRAM_BW_UTIL: sm / 4,
            real.NVML_GPM_METRIC_PCIE_TX_PER_SEC: 100.0,  # MiB/s
            real.NVML_GPM_METRIC_PCIE_RX_PER_SEC: 400.0,
        }
        for metric in mg.metrics[: mg.numMetrics]:
            code = self.metric_errors.get(metric.metricId, real.NVML_SUCCESS)
            metric.nvmlReturn, metric.value = code, values[metric.metricId]
        return mg


def half_busy(t: float) -> float:
    """Busy seconds by t of a 50 % duty cycle with a 1 s period (busy first)."""
    cycles, rest = divmod(t, 1.0)
    return cycles * 0.5 + min(rest, 0.5)


@pytest.fixture
def stub(clock: ManualClock) -> StubNvml:
    return StubNvml(clock, half_busy)


def test_fields_are_converted_to_base_units(stub: StubNvml, clock: ManualClock) -> None:
    backend = NvmlBackend(stub, clock)
    system = backend.init()
    assert (system.driver_version, system.cuda_version) == ("580.159.04", "13.0")
    assert system.devices[0].uuid == "GPU-5c3d1a2b-0000-1111-2222-333344445555"
    r = backend.read(0)
    assert (r.memory_used_bytes, r.memory_reserved_bytes, r.memory_total_bytes) == (
        1 << 30,
        570_425_344,
        85_520_809_984,
    )
    assert r.power_watts == 351.25
    assert r.energy_joules == 123_456.789
    assert r.temperature_celsius == 47.0
    assert (r.sm_clock_hertz, r.memory_clock_hertz) == (1.98e9, 2.619e9)
    assert r.clock_events is not None and r.clock_events["sw_power_cap"] is True
    assert sum(r.clock_events.values()) == 1
    assert (r.ecc_corrected, r.ecc_uncorrected) == (3, 0)
    assert r.processes is not None and [(p.pid, p.used_bytes) for p in r.processes] == [
        (4242, 1 << 29)
    ]
    assert backend.errors() == {}


def test_a_run_sampler_makes_only_the_calls_its_samples_need(
    stub: StubNvml, clock: ManualClock
) -> None:
    """Inside a generating process each NVML call's return takes the interpreter lock back:
    the run's sampler reads activity, memory, power and energy, nothing else."""
    full, lean = NvmlBackend(stub, clock), NvmlBackend(stub, clock, run_figures_only=True)
    full.init()
    lean.init()
    stub.calls.clear()
    whole = full.read(0, processes=False)
    full_calls = dict(stub.calls)
    stub.calls.clear()
    clock.advance(0.2)
    brief = lean.read(0, processes=False)
    needed = {
        "nvmlDeviceGetMemoryInfo_v2",
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetTotalEnergyConsumption",
        "nvmlGpmSampleGet",
    }
    assert needed <= set(stub.calls) <= needed | {"nvmlGpmMetricsGet"}
    assert sum(stub.calls.values()) <= sum(full_calls.values()) - 6
    assert (brief.memory_used_bytes, brief.power_watts) == (
        whole.memory_used_bytes,
        whole.power_watts,
    )
    assert brief.energy_joules is not None and brief.activity is not None
    assert brief.temperature_celsius is None and brief.clock_events is None


def test_state_gauges_are_read_on_their_own_schedule(stub: StubNvml, clock: ManualClock) -> None:
    """Temperature, clocks, clock events, ECC and processes: at most every gauge interval,
    served as last read in between; activity, power and memory every sample."""
    backend = NvmlBackend(stub, clock, gauge_interval_s=2.0)
    backend.init()
    temperatures, memories, readings = [], [], []
    for _ in range(5):  # t = 0, 0.5, 1.0, 1.5, 2.0
        readings.append(backend.read(0))
        temperatures.append(stub.calls["nvmlDeviceGetTemperature"])
        memories.append(stub.calls["nvmlDeviceGetMemoryInfo_v2"])
        clock.advance(0.5)
    assert temperatures == [1, 1, 1, 1, 2] and memories == [1, 2, 3, 4, 5]
    assert stub.calls["nvmlDeviceGetTotalEccErrors"] == 4  # two kinds, twice
    assert stub.calls["nvmlDeviceGetComputeRunningProcesses"] == 2
    served = {(r.temperature_celsius, r.sm_clock_hertz, r.ecc_corrected) for r in readings}
    assert served == {(47.0, 1.98e9, 3)}
    assert all(r.processes and r.processes[0].pid == 4242 for r in readings)
    backend.read(0, processes=False)  # asked without processes: not the held read
    assert stub.calls["nvmlDeviceGetTemperature"] == 3
    backend.init()  # NVML restarted: every gauge afresh
    backend.read(0, processes=False)
    assert stub.calls["nvmlDeviceGetTemperature"] == 4
    clock.advance(-1.0)  # a clock that went back does not hold them for longer
    backend.read(0, processes=False)
    assert stub.calls["nvmlDeviceGetTemperature"] == 5


def test_gpm_windows_integrate_exactly(stub: StubNvml, clock: ManualClock) -> None:
    backend = NvmlBackend(stub, clock)
    backend.init()
    integral = pcie_rx = 0.0
    for step in (0.0, 0.3, 0.45, 0.25, 1.0, 0.7):  # t = 0, 0.3, 0.75, 1.0, 2.0, 2.7
        clock.advance(step)
        activity = backend.read(0, processes=False).activity
        assert activity is not None and activity.source == semconv.SOURCE_GPM
        assert activity.sm_active is not None
        integral += activity.sm_active * activity.window_s
        pcie_rx += activity.pcie_rx_bytes or 0.0  # None while priming (t = 0)
        last = activity
    assert integral == pytest.approx(half_busy(2.7), abs=1e-12)  # 1.5 s busy by 2.7 s
    assert pcie_rx == pytest.approx(400 * 2**20 * 2.7)
    assert last.sm_occupancy == pytest.approx(last.sm_active / 8)
    assert last.tensor_active == pytest.approx(last.sm_active / 2)


def test_gpm_reads_closer_than_100ms_wait_for_the_next_window(
    stub: StubNvml, clock: ManualClock
) -> None:
    backend = NvmlBackend(stub, clock)
    backend.init()
    backend.read(0)  # primes at t = 0
    clock.advance(0.05)
    early = backend.read(0).activity
    assert early is not None and early.window_s == 0.0
    assert stub.calls["nvmlGpmSampleGet"] == 1  # not sampled again
    clock.advance(0.45)
    later = backend.read(0).activity
    assert later is not None and later.window_s == 0.5 and later.sm_active == 1.0


def test_a_gpm_read_a_few_ms_early_waits_for_its_window(stub: StubNvml, clock: ManualClock) -> None:
    """A sampler every 0.1 s wakes a few ms early half the time: such a read waits out the
    gap (GPM needs more than 100 ms) rather than leave a 0.2 s window."""
    backend = NvmlBackend(stub, clock, sleep=clock.advance)
    backend.init()
    backend.read(0)  # primes at t = 0
    clock.advance(0.095)
    activity = backend.read(0).activity
    assert activity is not None and activity.window_s == pytest.approx(0.1002)
    assert activity.sm_active == 1.0  # busy for the first half second
    assert stub.calls["nvmlGpmSampleGet"] == 2
    clock.advance(0.05)  # 50 ms early: too far to wait for, an empty window
    early = backend.read(0).activity
    assert early is not None and early.window_s == 0.0
    assert stub.calls["nvmlGpmSampleGet"] == 2


def test_a_gpm_read_too_soon_leaves_the_counter_out_of_the_recorded_sample(
    stub: StubNvml, clock: ManualClock, tmp_path: Path
) -> None:
    """The recorder samples on real time, GPM's gap is measured on ``clock``: frozen, every
    read after the first is too soon and moves no counter. Such a sample must carry no counter
    (stamped with its own time, the held value would put the next read's busy time, which
    covers both windows, into one sample interval: a step at 200 % beside one at 0 %)."""
    path = tmp_path / "gpu_samples.jsonl"
    recorder = GpuSampleRecorder(path, interval_s=0.1, backend=NvmlBackend(stub, clock))
    assert recorder.start()
    try:
        reads = lambda: stub.calls.get("nvmlDeviceGetMemoryInfo_v2", 0)  # noqa: E731
        wait_until(lambda: reads() >= 3)  # the priming read and two too soon
        clock.advance(0.5)
        done = reads()
        wait_until(lambda: reads() > done)  # a read that measures 0 .. 0.5 s
    finally:
        recorder.stop()  # its final read is too soon again: the clock stands at 0.5
    counters = [s.sm_active_s for s in read_samples(path, [])]
    assert counters[0] == 0.0 and counters[1] is None and counters[-1] is None
    assert {c for c in counters[1:] if c is not None} == {half_busy(0.5)}


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the sampler did not get there"
        time.sleep(0.01)


def test_integrals_say_whether_a_read_moved_them(stub: StubNvml, clock: ManualClock) -> None:
    backend = NvmlBackend(stub, clock)
    backend.init()
    integrals = Integrals(semconv.SOURCE_GPM)
    currents, values = [], []
    for step in (0.0, 0.05, 0.3, 0.02, 0.5):  # too soon after 0 and after 0.35
        clock.advance(step)
        counters = integrals.add(backend.read(0, processes=False))
        assert counters is not None
        currents.append(counters.current)
        values.append(counters.sm_active_s)
    assert currents == [True, False, True, False, True]
    assert values == pytest.approx([0.0, 0.0, half_busy(0.35), half_busy(0.35), half_busy(0.87)])


def test_the_energy_counter_is_read_on_its_own_schedule(stub: StubNvml, clock: ManualClock) -> None:
    backend = NvmlBackend(stub, clock, energy_interval_s=5.0)
    backend.init()
    published = []
    for _ in range(11):  # every 0.5 s for 5 s
        published.append(backend.read(0, processes=False).energy_joules)
        clock.advance(0.5)
    assert stub.calls["nvmlDeviceGetTotalEnergyConsumption"] == 2  # at 0 and 5 s
    assert stub.calls["nvmlDeviceGetPowerUsage"] == 11
    # between readings: the counter plus 95 % of the stand-in's constant 351.25 W, less half
    # a second of it (kept below the counter)
    start = 123_456.789
    assert published[:4] == pytest.approx(
        [start, start, start + 0.95 * 351.25 - 175.625, start + 0.95 * 526.875 - 175.625]
    )
    assert backend.energy_schedules()[0].reads == 2


def test_a_reinitialised_nvml_never_lowers_the_energy_counter(
    stub: StubNvml, clock: ManualClock
) -> None:
    """The counter runs 3 % below what the power readings say (sensors disagree); NVML is
    re-initialised (the sampler does so after any ``Uninitialized``). A fresh schedule used to
    publish the counter below the estimate before it: Prometheus then counted the GPU's whole
    lifetime energy as a counter reset."""
    counter_w = 0.97 * 351.25
    stub.nvmlDeviceGetTotalEnergyConsumption = (  # type: ignore[method-assign]
        lambda handle: int(1000 * (100_000.0 + counter_w * clock()))
    )
    backend = NvmlBackend(stub, clock, energy_interval_s=5.0)
    backend.init()
    published = []
    for step in range(40):
        if step == 18:
            backend.shutdown()
            backend.init()
        value = backend.read(0, processes=False).energy_joules
        assert value is not None and value <= 100_000.0 + counter_w * clock() + 1e-3
        published.append(value)
        clock.advance(0.5)
    assert published == sorted(published)


def test_unsupported_fields_are_none_and_not_called_again(
    stub: StubNvml, clock: ManualClock
) -> None:
    stub.fail["nvmlDeviceGetPowerUsage"] = real.NVML_ERROR_NOT_SUPPORTED
    stub.fail["nvmlDeviceGetTotalEccErrors"] = real.NVML_ERROR_NOT_SUPPORTED
    stub.fail["nvmlDeviceGetCurrentClocksEventReasons"] = real.NVML_ERROR_FUNCTION_NOT_FOUND
    backend = NvmlBackend(stub, clock)
    backend.init()
    for _ in range(3):
        r = backend.read(0)
        clock.advance(0.5)
    assert r.power_watts is None and r.ecc_corrected is None and r.ecc_uncorrected is None
    assert r.clock_events is not None and r.clock_events["gpu_idle"] is True  # old API used
    assert stub.calls["nvmlDeviceGetPowerUsage"] == 1
    assert stub.calls["nvmlDeviceGetTotalEccErrors"] == 1
    assert backend.errors() == {}  # unsupported is not an error


def test_memory_info_falls_back_to_v1_without_reserved(stub: StubNvml, clock: ManualClock) -> None:
    stub.fail["nvmlDeviceGetMemoryInfo_v2"] = real.NVML_ERROR_FUNCTION_NOT_FOUND
    backend = NvmlBackend(stub, clock)
    backend.init()
    r = backend.read(0)
    assert (r.memory_used_bytes, r.memory_reserved_bytes, r.memory_total_bytes) == (
        1 << 30,
        None,
        85_520_809_984,
    )


def test_other_failures_are_counted_per_call_and_retried(
    stub: StubNvml, clock: ManualClock
) -> None:
    stub.fail["nvmlDeviceGetTemperature"] = real.NVML_ERROR_UNKNOWN
    backend = NvmlBackend(stub, clock)
    backend.init()
    assert backend.read(0).temperature_celsius is None
    assert backend.read(0).temperature_celsius is None
    assert backend.errors() == {"nvmlDeviceGetTemperature": 2}
    del stub.fail["nvmlDeviceGetTemperature"]
    assert backend.read(0).temperature_celsius == 47.0


def test_gpu_lost_raises_device_error(stub: StubNvml, clock: ManualClock) -> None:
    backend = NvmlBackend(stub, clock)
    backend.init()
    stub.fail["nvmlDeviceGetMemoryInfo_v2"] = real.NVML_ERROR_GPU_IS_LOST
    with pytest.raises(DeviceError, match="nvmlDeviceGetMemoryInfo: GPU is lost"):
        backend.read(0)
    assert backend.errors() == {"nvmlDeviceGetMemoryInfo": 1}


def test_uninitialised_library_raises_backend_unavailable(
    stub: StubNvml, clock: ManualClock
) -> None:
    backend = NvmlBackend(stub, clock)
    backend.init()
    stub.fail["nvmlDeviceGetPowerUsage"] = real.NVML_ERROR_UNINITIALIZED
    with pytest.raises(BackendUnavailable):
        backend.read(0)


def test_init_failure(stub: StubNvml, clock: ManualClock) -> None:
    stub.fail["nvmlInit"] = real.NVML_ERROR_LIBRARY_NOT_FOUND
    backend = NvmlBackend(stub, clock)
    with pytest.raises(BackendUnavailable, match="nvmlInit"):
        backend.init()
    assert backend.errors() == {"nvmlInit": 1}


def test_without_gpm_activity_is_nvml_utilization_times_window(clock: ManualClock) -> None:
    stub = StubNvml(clock, half_busy, gpm=False)
    backend = NvmlBackend(stub, clock, pcie_cheap_s=1.0)  # the stub's PCIe call counts as cheap
    backend.init()
    first = backend.read(0).activity
    clock.advance(0.5)
    second = backend.read(0).activity
    assert first is not None and second is not None
    assert (first.source, first.window_s) == (semconv.SOURCE_NVML_UTIL, 0.0)
    assert (second.sm_active, second.window_s, second.sm_occupancy) == (0.4, 0.5, None)
    # Cheap PCIe throughput is used: KB/s * 1024 * window.
    assert second.pcie_rx_bytes == 2048 * 1024 * 0.5


def test_slow_pcie_throughput_is_not_used_without_gpm(clock: ManualClock) -> None:
    stub = StubNvml(clock, half_busy, gpm=False)
    stub.pcie_cost_s = 0.003  # real drivers block ~20 ms
    backend = NvmlBackend(stub, clock)
    backend.init()
    backend.read(0)
    clock.advance(0.5)
    activity = backend.read(0).activity
    assert activity is not None and activity.pcie_rx_bytes is None
    assert stub.calls["nvmlDeviceGetPcieThroughput"] == 1  # only the timing probe


def test_gpm_without_sm_utilization_falls_back_to_nvml_utilization(
    stub: StubNvml, clock: ManualClock
) -> None:
    stub.metric_errors[real.NVML_GPM_METRIC_SM_UTIL] = real.NVML_ERROR_NOT_SUPPORTED
    backend = NvmlBackend(stub, clock)
    backend.init()
    backend.read(0)
    clock.advance(0.5)
    backend.read(0)  # GPM answers without SM util: switch, freeing both buffers
    clock.advance(0.5)
    activity = backend.read(0).activity
    assert activity is not None and activity.source == semconv.SOURCE_NVML_UTIL
    assert stub.freed == 2


def test_shutdown_frees_gpm_buffers_and_the_library(stub: StubNvml, clock: ManualClock) -> None:
    backend = NvmlBackend(stub, clock)
    backend.init()
    backend.shutdown()
    assert (stub.freed, stub.shut) == (2, True)


@pytest.mark.skipif(
    ctypes.util.find_library("nvidia-ml") is not None, reason="an NVIDIA driver is installed"
)
def test_real_pynvml_without_a_driver_is_unavailable() -> None:
    backend = NvmlBackend()
    with pytest.raises(BackendUnavailable, match="nvmlInit"):
        backend.init()
    assert backend.errors() == {"nvmlInit": 1}
