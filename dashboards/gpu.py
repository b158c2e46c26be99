"""The GPU dashboard: activity, memory, power and energy, PCIe, throttling and exporter health,
per GPU and per pod, from the wan-otel exporter (``wan_gpu_*``, ``wan_exporter_*``).

Activity series are counters of active seconds, so ``rate()`` over any window is the exact
mean ratio. Per-GPU panels filter on ``pod``, which GPU series carry when the exporter runs in
the serving pod; with the node-level DaemonSet they have no ``pod`` and the "Pods" row
attributes GPUs to pods through the per-process memory series instead.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards import panels as p
from wan_otel import semconv as s

UID = "wan-otel-gpu"
TITLE = "wan-otel / GPU"

RATE = "[$__rate_interval]"
RANGE = "[$__range]"
GPU_LEGEND = "{{hostname}} GPU {{gpu}} {{pod}}"
NS_POD = f"{s.LABEL_NAMESPACE}, {s.LABEL_POD}"
GENERATIONS = s.PROMETHEUS_NAMES[s.METRIC_GENERATIONS]


def gpu(metric: str, extra: str = "") -> str:
    return p.selector(metric, p.GPU_FILTER, extra)


def _activity_panel(title: str, metric: str, description: str) -> timeseries.Panel:
    """The mean active ratio of one activity counter, per GPU."""
    return p.series(
        title,
        [(f"rate({gpu(metric)}{RATE})", GPU_LEGEND + " {{source}}")],
        unit="percentunit",
        max_value=1,
        description=description,
    )


# The pods whose processes hold memory on each GPU: 1 per (uuid, namespace, pod). Works with
# the sidecar and with the node-level exporter (hostPID), where GPU series carry no pod.
HAS_POD = f'{s.LABEL_POD}!=""'
GPU_OWNERS = (
    f"max by ({s.LABEL_UUID}, {NS_POD}) ({p.selector(s.GPU_PROCESS_MEMORY, extra=HAS_POD)} * 0 + 1)"
)


def by_owner(expr: str) -> str:
    """``expr`` per GPU, summed per pod that has processes on the GPU."""
    return f"sum by ({NS_POD}) ({expr} * on ({s.LABEL_UUID}) group_right () {GPU_OWNERS})"


def build() -> Dashboard:
    dashboard = (
        Dashboard(TITLE)
        .uid(UID)
        .tags(["wan-otel"])
        .description("GPU activity, memory, power and exporter health (wan-otel exporter).")
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
    )
    for variable in [*p.datasource_variables(), *p.scope_variables(s.GPU_MEMORY_TOTAL, True)]:
        dashboard = dashboard.with_variable(variable)

    # Not filtered by pod: with the node-level exporter GPU series have none; the owners side
    # of the join picks the pods.
    sm_active = f'rate({s.GPU_SM_ACTIVE}{{{s.LABEL_GPU}=~"$gpu"}}{RATE})'
    dashboard = (
        dashboard.with_row(p.row("Activity"))
        .with_panel(
            _activity_panel(
                "SM activity",
                s.GPU_SM_ACTIVE,
                "Mean fraction of time SMs were busy (rate of wan_gpu_sm_active_seconds_total"
                "; source gpm = SMs busy, nvml_util = any kernel running).",
            )
        )
        .with_panel(
            _activity_panel(
                "SM occupancy",
                s.GPU_SM_OCCUPANCY,
                "Resident warps over the maximum, time-averaged (GPM, Hopper and newer).",
            )
        )
        .with_panel(
            _activity_panel(
                "Tensor pipe activity",
                s.GPU_TENSOR_ACTIVE,
                "Fraction of time tensor pipes were active (GPM).",
            )
        )
        .with_panel(
            _activity_panel(
                "DRAM activity",
                s.GPU_DRAM_ACTIVE,
                "Fraction of DRAM bandwidth in use, time-averaged (GPM).",
            )
        )
    )

    used, total = gpu(s.GPU_MEMORY_USED), gpu(s.GPU_MEMORY_TOTAL)
    dashboard = (
        dashboard.with_row(p.row("Memory"))
        .with_panel(
            p.series(
                "Memory used vs total",
                [
                    (used, "used " + GPU_LEGEND),
                    (total, "total " + GPU_LEGEND),
                ],
                unit="bytes",
                description="Device memory used (NVML, includes the driver's reservation) "
                "and the device's total.",
            )
        )
        .with_panel(
            p.series(
                "Memory used / total",
                [(f"{used} / {total}", GPU_LEGEND)],
                unit="percentunit",
                max_value=1,
                description="Fraction of device memory in use (the WanGpuMemoryNearCapacity "
                "alert fires above 0.95).",
            )
        )
    )

    energy = f"sum by ({NS_POD}) (increase({gpu(s.GPU_ENERGY)}{RANGE}))"
    ok = p.selector(GENERATIONS, extra=f'{s.LABEL_STATUS}="ok"')
    generations = f"sum by ({NS_POD}) (increase({ok}{RANGE}))"
    dashboard = (
        dashboard.with_row(p.row("Power and energy"))
        .with_panel(
            p.series(
                "Power",
                [(gpu(s.GPU_POWER), GPU_LEGEND)],
                unit="watt",
                description="Power draw per GPU.",
            )
        )
        .with_panel(
            p.series(
                "Energy per generation by pod",
                [(f"{energy} / {generations}", "{{namespace}}/{{pod}}")],
                unit="joule",
                description="GPU energy over the time range divided by the generations "
                "finished in it, per pod (needs GPU series labelled with the pod: the "
                "exporter in the serving pod).",
            )
        )
        .with_panel(
            p.series(
                "Temperature",
                [(gpu(s.GPU_TEMPERATURE), GPU_LEGEND)],
                unit="celsius",
                description="GPU temperature.",
            )
        )
        .with_panel(
            p.series(
                "SM clock",
                [(gpu(s.GPU_SM_CLOCK), GPU_LEGEND)],
                unit="hertz",
                description="SM clock; drops show throttling (see clock events).",
            )
        )
    )

    dashboard = (
        dashboard.with_row(p.row("PCIe and throttling"))
        .with_panel(
            p.series(
                "PCIe traffic",
                [
                    (f"rate({gpu(s.GPU_PCIE_RX)}{RATE})", "rx " + GPU_LEGEND),
                    (f"rate({gpu(s.GPU_PCIE_TX)}{RATE})", "tx " + GPU_LEGEND),
                ],
                unit="Bps",
                description="Bytes per second over PCIe (rx: host to device, e.g. offload "
                "onloads). GPM only: absent on GPUs without it.",
            )
        )
        .with_panel(
            p.series(
                "Clock event reasons active",
                [
                    (
                        f"max by ({s.LABEL_HOSTNAME}, {s.LABEL_GPU}, {s.LABEL_REASON}) "
                        f"({gpu(s.GPU_CLOCK_EVENT)})",
                        "{{hostname}} GPU {{gpu}} {{reason}}",
                    )
                ],
                unit="short",
                stack=True,
                description="1 while a clock event (throttle) reason is active.",
            )
        )
        .with_panel(
            p.series(
                "ECC errors",
                [
                    (
                        f"sum by ({s.LABEL_HOSTNAME}, {s.LABEL_GPU}, {s.LABEL_ECC_TYPE}) "
                        f"(increase({gpu(s.GPU_ECC_ERRORS)}{RATE}))",
                        "{{hostname}} GPU {{gpu}} {{type}}",
                    )
                ],
                unit="short",
                bars=True,
                description="ECC errors per interval (volatile counters).",
            )
        )
    )

    dashboard = (
        dashboard.with_row(p.row("Pods"))
        .with_panel(
            p.series(
                "SM activity by pod",
                [(by_owner(sm_active), "{{namespace}}/{{pod}}")],
                unit="short",
                description="Sum over each pod's GPUs of their SM-active ratio (1 = one "
                "GPU fully busy). GPUs are attributed to the pods whose processes hold "
                "memory on them, so this works with the node-level exporter too.",
            )
        )
        .with_panel(
            p.series(
                "GPU memory by pod",
                [
                    (
                        f"sum by ({NS_POD}) ({p.selector(s.GPU_PROCESS_MEMORY, p.GPU_FILTER)})",
                        "{{namespace}}/{{pod}}",
                    )
                ],
                unit="bytes",
                description="Device memory held by each pod's processes "
                "(wan_gpu_process_memory_used_bytes).",
            )
        )
    )

    exporter = p.POD_FILTER
    return (
        dashboard.with_row(p.row("Exporter health"))
        .with_panel(
            p.series(
                "Exporter up",
                [(f"min by ({NS_POD}) ({p.selector(s.EXPORTER_UP, exporter)})", "{{pod}}")],
                unit="short",
                span=6,
                max_value=1,
                description="1 while NVML is initialised and sampling (per exporter).",
            )
        )
        .with_panel(
            p.series(
                "Sample age",
                [
                    (
                        f"max by ({NS_POD}) ({p.selector(s.EXPORTER_SAMPLE_AGE, exporter)})",
                        "{{pod}}",
                    )
                ],
                unit="s",
                span=6,
                description="Age of the snapshot a scrape served: stale GPU data shows here.",
            )
        )
        .with_panel(
            p.series(
                "Sample duration",
                [
                    (
                        f"max by ({NS_POD}) ({p.selector(s.EXPORTER_SAMPLE_DURATION, exporter)})",
                        "{{pod}}",
                    )
                ],
                unit="s",
                span=6,
                description="Time the last sample of all GPUs took.",
            )
        )
        .with_panel(
            p.series(
                "NVML errors",
                [
                    (
                        f"sum by ({s.LABEL_CALL}) "
                        f"(increase({p.selector(s.EXPORTER_NVML_ERRORS, exporter)}{RATE}))",
                        "{{call}}",
                    )
                ],
                unit="short",
                span=6,
                bars=True,
                description="Failed NVML calls per interval, by function.",
            )
        )
        .with_panel(
            p.instant_table(
                "GPUs",
                f"max by ({s.LABEL_HOSTNAME}, {s.LABEL_GPU}, {s.LABEL_UUID}, "
                f"{s.LABEL_MODEL_NAME}, {s.LABEL_DRIVER_VERSION}, {s.LABEL_CUDA_VERSION}, "
                f"{NS_POD}) ({gpu(s.GPU_INFO)})",
                description="Every GPU the exporters see; uuid equals the span attribute "
                "wan.gpu.uuid.",
            )
        )
    )
