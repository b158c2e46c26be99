"""GPM activity windows for ``NvmlBackend``: two sample buffers per GPU used in turn, so each read
yields the mean activity over exactly the time since the previous read.

Works on the pynvml module ``nvml.py`` passes in (nvml.py stays the only importer) and makes its
calls through the backend's error-handling ``call``, so failures are counted in one place.
GPM metrics are percentages (0..100) and MiB/s; they leave here as 0..1 fractions and bytes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from wan_otel import semconv
from wan_otel.exporter.backend import Activity

GPM_MIN_GAP_S = semconv.GPM_MIN_GAP_S
"""NVML: two ``nvmlGpmSampleGet`` calls of a GPU must be more than 100 ms apart."""

GPM_WAIT_MAX_S = 0.02
"""A read this little too soon waits out the rest of the gap instead of skipping the sample:
a sampler every 0.1 s (the floor) wakes a few ms early about half the time, and skipping those
reads would leave GPM windows of 0.2 s."""

GPM_WAIT_MARGIN_S = 0.0002

_MIB = 1 << 20

# (Activity field, GPM metric id name); ids are looked up on the pynvml module.
_METRICS = (
    ("sm_active", "NVML_GPM_METRIC_SM_UTIL"),
    ("sm_occupancy", "NVML_GPM_METRIC_SM_OCCUPANCY"),
    ("tensor_active", "NVML_GPM_METRIC_ANY_TENSOR_UTIL"),
    ("dram_active", "NVML_GPM_METRIC_DRAM_BW_UTIL"),
    ("pcie_tx_bytes", "NVML_GPM_METRIC_PCIE_TX_PER_SEC"),
    ("pcie_rx_bytes", "NVML_GPM_METRIC_PCIE_RX_PER_SEC"),
)

Call = Callable[..., Any]
"""``call(nvml_function_name, *args)``: the result, or ``None`` if the call failed."""


class GpmUnusable(Exception):
    """GPM answers but without SM utilization (reported on some SM120 parts): fall back."""


def fraction(percent: float) -> float:
    return min(max(percent / 100.0, 0.0), 1.0)


class GpmWindow:
    """The GPM state of one GPU. ``metrics_get`` is a ``c_nvmlGpmMetricsGet_t`` (19 KB) shared by
    all GPUs of a backend; allocation raises pynvml's ``NVMLError``."""

    def __init__(
        self,
        nvml: Any,
        handle: Any,
        clock: Callable[[], float],
        metrics_get: Any,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._n = nvml
        self._handle = handle
        self._clock = clock
        self._sleep = sleep
        self._mg = metrics_get
        self._samples = [nvml.nvmlGpmSampleAlloc(), nvml.nvmlGpmSampleAlloc()]
        self._prev_t: float | None = None
        self._prev_call_t: float | None = None

    def reset(self) -> None:
        """Forget the window start (after an error): the next read primes a new window."""
        self._prev_t = None

    def free(self) -> None:
        for sample in self._samples:
            with contextlib.suppress(Exception):  # the library may already be gone
                self._n.nvmlGpmSampleFree(sample)
        self._samples = []

    def read(self, call: Call) -> Activity | None:
        """Activity since the previous read; ``None`` if a call failed (the window restarts).
        Raises ``GpmUnusable`` when GPM returns no SM utilization."""
        before = self._clock()
        last_call = self._prev_call_t if self._prev_t is not None else None
        if last_call is not None and before - last_call <= GPM_MIN_GAP_S:
            short = GPM_MIN_GAP_S - (before - last_call)
            if short > GPM_WAIT_MAX_S:
                # Too soon for GPM: an empty window; the next read covers this time too.
                return Activity(source=semconv.SOURCE_GPM, window_s=0.0, sm_active=0.0)
            # "More than 100 ms apart", by a margin small enough not to push every later
            # tick of a fixed-rate sampler at the floor out of reach: each wait leaves the
            # next read that much shorter, so one in about 100 is still skipped.
            self._sleep(short + GPM_WAIT_MARGIN_S)
            before = self._clock()
        self._prev_call_t = before
        if call("nvmlGpmSampleGet", self._handle, self._samples[1]) is None:
            self._prev_t = None
            return None
        now = (before + self._clock()) / 2  # the sample is taken somewhere inside the call
        prev_t, self._prev_t = self._prev_t, now
        self._samples.reverse()  # the sample just taken starts the next window
        if prev_t is None:
            return Activity(source=semconv.SOURCE_GPM, window_s=0.0, sm_active=0.0)
        values = self._values(call, self._samples[1], self._samples[0])
        if values is None:
            self._prev_t = None
            return None
        if values["sm_active"] is None:
            raise GpmUnusable("GPM returned no SM utilization")
        window = now - prev_t

        def frac(key: str) -> float | None:
            percent = values[key]
            return None if percent is None else fraction(percent)

        def bytes_over_window(key: str) -> float | None:
            mib_per_s = values[key]
            return None if mib_per_s is None else max(mib_per_s, 0.0) * _MIB * window

        return Activity(
            source=semconv.SOURCE_GPM,
            window_s=window,
            sm_active=frac("sm_active"),
            sm_occupancy=frac("sm_occupancy"),
            tensor_active=frac("tensor_active"),
            dram_active=frac("dram_active"),
            pcie_rx_bytes=bytes_over_window("pcie_rx_bytes"),
            pcie_tx_bytes=bytes_over_window("pcie_tx_bytes"),
        )

    def _values(self, call: Call, first: Any, second: Any) -> dict[str, float | None] | None:
        n, mg = self._n, self._mg
        mg.version = n.NVML_GPM_METRICS_GET_VERSION
        mg.numMetrics = len(_METRICS)
        mg.sample1, mg.sample2 = first, second
        for i, (_, id_name) in enumerate(_METRICS):
            mg.metrics[i].metricId = getattr(n, id_name)
        if call("nvmlGpmMetricsGet", mg) is None:
            return None
        return {
            key: float(mg.metrics[i].value) if mg.metrics[i].nvmlReturn == n.NVML_SUCCESS else None
            for i, (key, _) in enumerate(_METRICS)
        }
