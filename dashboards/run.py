"""The Run drill-down dashboard: find a run's traces in Tempo by ``wan.run.id``, open one in
Grafana's trace view, and read the GPU panels of the same pod and time range beside it.

A run id is a span attribute (``semconv.RUN_ID``), never a metric label, so runs are found
with TraceQL; the GPU panels are scoped by namespace, pod and GPU instead. Picking a trace id in
either table sets ``$trace_id`` through a data link.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards import gpu_panels as g
from dashboards import panels as p
from dashboards.panels import NS_POD
from wan_otel import semconv as s

UID = "wan-otel-run"
TITLE = "wan-otel / Run drill-down"

RUN_TRACES = f'{{ span.{s.RUN_ID} = "$run_id" }}'
RECENT = (
    f'{{ name = "{s.SPAN_GENERATE}" }} '
    f"| select(span.{s.RUN_ID}, span.{s.MODEL_NAME}, span.{s.GPU_UUID}, span.{s.ERROR_TYPE})"
)
PICK_TRACE = (
    "Open this trace",
    f"/d/{UID}/wan-otel-run-drill-down?var-trace_id=${{__value.raw}}&${{run_id:queryparam}}"
    "&${datasource:queryparam}&${tempo:queryparam}&${namespace:queryparam}"
    "&${pod:queryparam}&${gpu:queryparam}&${__url_time_range}",
)


def build() -> Dashboard:
    dashboard = p.dashboard(
        TITLE,
        UID,
        description="One Wan2.2 run: its traces (Tempo, by wan.run.id) and its GPUs.",
        refresh="",
        since="now-6h",
        variables=[
            *p.datasource_variables(),
            p.textbox("run_id", "Run id"),
            p.textbox("trace_id", "Trace id"),
            *p.scope_variables(s.GPU_MEMORY_TOTAL, True),
        ],
    )

    dashboard = (
        dashboard.with_row(p.row("Traces"))
        .with_panel(
            p.tempo_table(
                "Traces of run $run_id",
                RUN_TRACES,
                trace_link=PICK_TRACE,
                span=12,
                description="TraceQL search for spans whose wan.run.id is $run_id. Click a "
                "trace id to open it below.",
            )
        )
        .with_panel(
            p.tempo_table(
                "Recent generations",
                RECENT,
                trace_link=PICK_TRACE,
                span=12,
                description="Root spans (wan.pipeline.generate) in the time range with their "
                "run id, model, GPU uuid and error type.",
            )
        )
        .with_panel(
            p.trace_view(
                "Trace $trace_id",
                "$trace_id",
                description="The selected trace: stages, denoising steps, transformer passes "
                "and offload transfers, with GPU-time windows.",
            )
        )
    )

    return (
        dashboard.with_row(p.row("GPUs of the pod"))
        .with_panel(g.sm_activity(note="Narrow the time range to the run's trace."))
        .with_panel(g.tensor_activity())
        .with_panel(g.memory_used())
        .with_panel(g.power())
        .with_panel(g.pcie_traffic())
        .with_panel(
            p.series(
                "Memory by process",
                [
                    (
                        f"sum by ({NS_POD}, {s.LABEL_PID}) ({g.gpu(s.GPU_PROCESS_MEMORY)})",
                        "{{pod}} pid {{pid}}",
                    )
                ],
                unit="bytes",
                description="Device memory per process (pid in the host namespace).",
            )
        )
    )
