"""The GPU dashboard: activity, memory, power and energy, PCIe, throttling and exporter health,
per GPU and per pod, from the wan-otel exporter (``wan_gpu_*``, ``wan_exporter_*``).

Activity series are counters of active seconds, so ``rate()`` over any window is the exact
mean ratio. Per-GPU panels filter on ``pod``, which GPU series carry when the exporter runs in
the serving pod; with the node-level DaemonSet they have no ``pod`` and the "Pods" row
attributes GPUs to pods through the per-process memory series instead.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards import gpu_panels as g
from dashboards import panels as p
from dashboards.panels import NS_POD, RANGE, RATE
from wan_otel import semconv as s

UID = "wan-otel-gpu"
TITLE = "wan-otel / GPU"

GENERATIONS = s.PROMETHEUS_NAMES[s.METRIC_GENERATIONS]


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
    dashboard = p.dashboard(
        TITLE,
        UID,
        description="GPU activity, memory, power and exporter health (wan-otel exporter).",
        refresh="30s",
        since="now-1h",
        variables=[*p.datasource_variables(), *p.scope_variables(s.GPU_MEMORY_TOTAL, True)],
    )

    # Not filtered by pod: with the node-level exporter GPU series have none; the owners side
    # of the join picks the pods.
    sm_active = f'rate({s.GPU_SM_ACTIVE}{{{s.LABEL_GPU}=~"$gpu"}}{RATE})'
    dashboard = (
        dashboard.with_row(p.row("Activity"))
        .with_panel(g.sm_activity())
        .with_panel(
            g.activity(
                "SM occupancy",
                s.GPU_SM_OCCUPANCY,
                "Resident warps over the maximum, time-averaged (GPM, Hopper and newer).",
            )
        )
        .with_panel(g.tensor_activity())
        .with_panel(
            g.activity(
                "DRAM activity",
                s.GPU_DRAM_ACTIVE,
                "Fraction of DRAM bandwidth in use, time-averaged (GPM).",
            )
        )
    )

    used, total = g.gpu(s.GPU_MEMORY_USED), g.gpu(s.GPU_MEMORY_TOTAL)
    dashboard = (
        dashboard.with_row(p.row("Memory"))
        .with_panel(
            p.series(
                "Memory used vs total",
                [
                    (used, "used " + g.GPU_LEGEND),
                    (total, "total " + g.GPU_LEGEND),
                ],
                unit="bytes",
                description="Device memory used (NVML, includes the driver's reservation) "
                "and the device's total.",
            )
        )
        .with_panel(
            p.series(
                "Memory used / total",
                [(f"{used} / {total}", g.GPU_LEGEND)],
                unit="percentunit",
                max_value=1,
                description="Fraction of device memory in use (the WanGpuMemoryNearCapacity "
                "alert fires above 0.95).",
            )
        )
    )

    energy = f"sum by ({NS_POD}) (increase({g.gpu(s.GPU_ENERGY)}{RANGE}))"
    ok = p.selector(GENERATIONS, extra=f'{s.LABEL_STATUS}="ok"')
    generations = f"sum by ({NS_POD}) (increase({ok}{RANGE}))"
    dashboard = (
        dashboard.with_row(p.row("Power and energy"))
        .with_panel(g.power())
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
            g.gauge(
                "Temperature", s.GPU_TEMPERATURE, unit="celsius", description="GPU temperature."
            )
        )
        .with_panel(
            g.gauge(
                "SM clock",
                s.GPU_SM_CLOCK,
                unit="hertz",
                description="SM clock; drops show throttling (see clock events).",
            )
        )
    )

    dashboard = (
        dashboard.with_row(p.row("PCIe and throttling"))
        .with_panel(g.pcie_traffic())
        .with_panel(
            p.series(
                "Clock event reasons active",
                [
                    (
                        f"max by ({s.LABEL_HOSTNAME}, {s.LABEL_GPU}, {s.LABEL_REASON}) "
                        f"({g.gpu(s.GPU_CLOCK_EVENT)})",
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
                        f"(increase({g.gpu(s.GPU_ECC_ERRORS)}{RATE}))",
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
                f"{NS_POD}) ({g.gpu(s.GPU_INFO)})",
                description="Every GPU the exporters see; uuid equals the span attribute "
                "wan.gpu.uuid.",
            )
        )
    )
