"""The per-GPU panels of the exporter's series, each defined once for every dashboard that
shows it (the GPU dashboard and the Run drill-down).

Two shapes cover them: ``activity``, the mean ratio of an active-seconds counter (its
``rate()`` over any window is the exact mean), and ``gauge``, a gauge's value. Both draw one
line per GPU and filter on the namespace, pod and gpu variables.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries

from dashboards import panels as p
from wan_otel import semconv as s

GPU_LEGEND = "{{hostname}} GPU {{gpu}} {{pod}}"


def gpu(metric: str, extra: str = "") -> str:
    """``metric`` filtered by the namespace, pod and gpu variables (and ``extra`` matchers)."""
    return p.selector(metric, p.GPU_FILTER, extra)


def activity(title: str, metric: str, description: str) -> timeseries.Panel:
    """The mean active ratio of one activity counter, per GPU. The legend names the source
    (``gpm`` or ``nvml_util``) because the two measure different things."""
    return p.series(
        title,
        [(f"rate({gpu(metric)}{p.RATE})", GPU_LEGEND + " {{source}}")],
        unit="percentunit",
        max_value=1,
        description=description,
    )


def gauge(title: str, metric: str, *, unit: str, description: str) -> timeseries.Panel:
    """A gauge's value, per GPU."""
    return p.series(title, [(gpu(metric), GPU_LEGEND)], unit=unit, description=description)


def sm_activity(note: str = "") -> timeseries.Panel:
    """``note``: a sentence the dashboard adds to the description (how to read it there)."""
    description = (
        "Mean fraction of time SMs were busy (rate of wan_gpu_sm_active_seconds_total"
        "; source gpm = SMs busy, nvml_util = any kernel running)."
    )
    return activity("SM activity", s.GPU_SM_ACTIVE, f"{description} {note}".strip())


def tensor_activity() -> timeseries.Panel:
    return activity(
        "Tensor pipe activity",
        s.GPU_TENSOR_ACTIVE,
        "Fraction of time tensor pipes were active (GPM).",
    )


def memory_used() -> timeseries.Panel:
    return gauge(
        "Memory used",
        s.GPU_MEMORY_USED,
        unit="bytes",
        description="Device memory used (NVML, includes the driver's reservation).",
    )


def power() -> timeseries.Panel:
    return gauge("Power", s.GPU_POWER, unit="watt", description="Power draw per GPU.")


def pcie_traffic() -> timeseries.Panel:
    return p.series(
        "PCIe traffic",
        [
            (f"rate({gpu(s.GPU_PCIE_RX)}{p.RATE})", "rx " + GPU_LEGEND),
            (f"rate({gpu(s.GPU_PCIE_TX)}{p.RATE})", "tx " + GPU_LEGEND),
        ],
        unit="Bps",
        description="Bytes per second over PCIe (rx: host to device, e.g. offload "
        "onloads). GPM only: absent on GPUs without it.",
    )
