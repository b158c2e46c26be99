"""SM activity of one GPU over span windows, from the run's GPU samples of that GPU's UUID."""

from __future__ import annotations

from collections.abc import Sequence

from wan_otel import semconv as sc
from wan_otel.report.integrate import CounterSeries, WindowMean
from wan_otel.report.spans import attr_str
from wan_otel.store.otlp_json import SpanRecord
from wan_otel.store.samples import GpuSample

SOURCE_MEANING = {
    "gpm": "GPM SM activity (share of SMs busy)",
    "nvml_util": "NVML utilization (share of time any kernel ran; this GPU has no GPM)",
}


class SmSeries:
    """SM activity of one GPU: window means, or why there are none."""

    def __init__(self, root: SpanRecord, samples: Sequence[GpuSample]) -> None:
        """The GPU of ``root`` (the run's root span, or a rank's): its ``wan.gpu.uuid``."""
        uuid = attr_str(root, sc.GPU_UUID)
        self.series: CounterSeries | None = None
        self.source: str | None = None
        if not samples:
            gpu = attr_str(root, sc.DEVICE) or "unknown device"
            self.why = f"no GPU samples were recorded for this run (device: {gpu})"
            return
        mine = [s for s in samples if s.uuid == uuid and s.sm_active_s is not None]
        if not mine:
            seen = sorted({s.uuid for s in samples})
            self.why = f"no GPU samples for the run's GPU {uuid} (samples cover {', '.join(seen)})"
            return
        self.source = mine[-1].source
        self.series = CounterSeries(
            [s.t_ns for s in mine],
            [s.sm_active_s or 0.0 for s in mine],
            activity=True,
            # An unchanged GPM reading closer than GPM's floor to the one before was a skipped read.
            min_gap_ns=round(sc.GPM_MIN_GAP_S * 1e9) if self.source == sc.SOURCE_GPM else 0,
        )
        self.why = ""

    def mean(self, span: SpanRecord) -> WindowMean:
        return self.window(span.start_ns, span.end_ns)

    def window(self, start_ns: int, end_ns: int) -> WindowMean:
        """Mean activity over ``[start_ns, end_ns]`` (a stretch no single span covers)."""
        if self.series is None:
            return WindowMean(None, self.why)
        return self.series.mean(start_ns, end_ns)
