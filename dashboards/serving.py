"""The Serving dashboard: throughput, failures, end-to-end, step and stage latency, frames/s,
and (``multi_gpu``) step time by world size and each rank's communication and waiting.

Reads the pipeline's OTel metrics as Prometheus names them (``semconv.PROMETHEUS_NAMES``).
Generations in progress come from ``wan_generations_active``. The server's queue metrics
(``semconv.SERVER_PROMETHEUS_NAMES``, from ``wan-otel serve``) have no panel here yet.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards import multi_gpu
from dashboards import panels as p
from dashboards.histogram_queries import mean, quantile
from dashboards.panels import NS_POD, RANGE, RATE
from wan_otel import semconv

UID = "wan-otel-serving"
TITLE = "wan-otel / Serving"

N = semconv.PROMETHEUS_NAMES
GENERATIONS = N[semconv.METRIC_GENERATIONS]
FAILURES = N[semconv.METRIC_FAILURES]
FRAMES = N[semconv.METRIC_FRAMES]
GENERATION_S = N[semconv.METRIC_GENERATION_DURATION]
STAGE_S = N[semconv.METRIC_STAGE_DURATION]
STEP_S = N[semconv.METRIC_STEP_DURATION]
ACTIVE = N[semconv.METRIC_GENERATIONS_ACTIVE]
ENERGY_J = N[semconv.METRIC_GENERATION_ENERGY]
DROPPED = N[semconv.METRIC_SPANS_DROPPED]

STATUS, ERROR_TYPE, STAGE = semconv.LABEL_STATUS, semconv.LABEL_ERROR_TYPE, semconv.LABEL_STAGE
MODEL, RESOLUTION = semconv.LABEL_MODEL, semconv.LABEL_RESOLUTION

RUN_LINK = (
    "/d/wan-otel-run/wan-otel-run-drill-down?${datasource:queryparam}&${tempo:queryparam}"
    "&${namespace:queryparam}&${pod:queryparam}&${__url_time_range}"
)


def _quantiles(histogram: str) -> list[p.Query]:
    return [
        (quantile(0.5, histogram), "p50"),
        (quantile(0.95, histogram), "p95"),
        (quantile(0.99, histogram), "p99"),
        (mean(histogram), "mean"),
    ]


def build() -> Dashboard:
    to_run = p.link("Traces in this time range (run drill-down)", RUN_LINK)
    dashboard = p.dashboard(
        TITLE,
        UID,
        description="Wan2.2 generations served by wan-otel: throughput, failures, latency.",
        refresh="30s",
        since="now-3h",
        variables=[
            *p.datasource_variables(),
            *p.scope_variables(GENERATIONS, False),
            multi_gpu.rank_variable(),
        ],
    )

    ok = p.selector(GENERATIONS, extra=f'{STATUS}="ok"')
    dashboard = (
        dashboard.with_row(p.row("Overview"))
        .with_panel(
            p.single(
                "Generations / s",
                f"sum(rate({ok}{RATE}))",
                unit="short",
                description="Successful generations per second.",
            )
        )
        .with_panel(
            p.single(
                "Failures in range",
                f"sum(increase({p.selector(FAILURES)}{RANGE}))",
                unit="short",
                decimals=0,
                description="Failed generations over the dashboard's time range.",
            )
        )
        .with_panel(
            p.single(
                "Generation p95 in range",
                quantile(0.95, GENERATION_S, window=RANGE),
                unit="s",
                description="95th percentile of end-to-end generation latency over the range.",
            )
        )
        .with_panel(
            p.single(
                "Denoising step p95 in range",
                quantile(0.95, STEP_S, window=RANGE),
                unit="s",
                description="95th percentile of one denoising step (GPU time) over the range.",
            )
        )
        .with_panel(
            p.single(
                "Frames / s",
                f"sum(rate({p.selector(FRAMES)}{RATE}))",
                unit="short",
                description="Video frames generated per second.",
            )
        )
        .with_panel(
            p.single(
                "In progress",
                f"sum({p.selector(ACTIVE)})",
                unit="short",
                decimals=0,
                description="Generations running now (wan_generations_active).",
            )
        )
    )

    dashboard = (
        dashboard.with_row(p.row("Throughput and failures"))
        .with_panel(
            p.series(
                "Generations / s by status",
                [(f"sum by ({STATUS}) (rate({p.selector(GENERATIONS)}{RATE}))", "{{status}}")],
                unit="short",
                description="Finished generations per second, ok and error.",
            )
        )
        .with_panel(
            p.series(
                "Failures by error type",
                [
                    (
                        f"sum by ({ERROR_TYPE}) (increase({p.selector(FAILURES)}{RATE}))",
                        "{{error_type}}",
                    )
                ],
                unit="short",
                bars=True,
                description="Failed generations per interval, by exception class.",
                links=[to_run],
            )
        )
        .with_panel(
            p.series(
                "Frames / s by model and resolution",
                [
                    (
                        f"sum by ({MODEL}, {RESOLUTION}) (rate({p.selector(FRAMES)}{RATE}))",
                        "{{model}} {{resolution}}",
                    )
                ],
                unit="short",
                description="Video frames generated per second.",
            )
        )
        .with_panel(
            p.series(
                "GPU energy per video by model and resolution",
                [(mean(ENERGY_J, by=f"{MODEL}, {RESOLUTION}"), "{{model}} {{resolution}}")],
                unit="joule",
                description="Mean GPU energy of one generation, every GPU of the run summed "
                "(wan_generation_energy_joules: NVML's energy counter at the generation's start "
                "and end). The GPU dashboard's energy per generation by pod divides all the "
                "energy of the range, idle time included, by the generations.",
            )
        )
        .with_panel(
            p.series(
                "Generations in progress by pod",
                [(f"sum by ({NS_POD}) ({p.selector(ACTIVE)})", "{{namespace}}/{{pod}}")],
                unit="short",
                description="Generations running now, per serving pod.",
            )
        )
    )

    dashboard = (
        dashboard.with_row(p.row("Latency"))
        .with_panel(
            p.series(
                "End-to-end generation latency",
                _quantiles(GENERATION_S),
                unit="s",
                exemplar=True,
                links=[to_run],
                description="wan_generation_duration_seconds quantiles and mean. Exemplars "
                "link to traces where the metrics path carries them (OTLP through the "
                "Collector); the data link opens the run drill-down for this time range.",
            )
        )
        .with_panel(
            p.series(
                "Generation p95 by model and resolution",
                [
                    (
                        quantile(0.95, GENERATION_S, by=f"{MODEL}, {RESOLUTION}"),
                        "{{model}} {{resolution}}",
                    )
                ],
                unit="s",
                links=[to_run],
                description="95th percentile of generation latency per request shape.",
            )
        )
        .with_panel(
            p.series(
                "Denoising step latency",
                _quantiles(STEP_S),
                unit="s",
                exemplar=True,
                links=[to_run],
                description="wan_denoise_step_duration_seconds quantiles (GPU time per step).",
            )
        )
        .with_panel(
            p.histogram_heatmap(
                "Denoising step latency heatmap",
                f"sum by (le) (increase({p.selector(STEP_S + '_bucket')}{RATE}))",
                description="Steps per latency bucket per interval.",
            )
        )
    )

    dashboard = (
        dashboard.with_row(p.row("Stages"))
        .with_panel(
            p.series(
                "Mean stage duration per generation",
                [(mean(STAGE_S, by=STAGE), "{{stage}}")],
                unit="s",
                stack=True,
                description="Mean seconds each stage takes in one generation, stacked: the "
                "latency breakdown over time (wan_stage_duration_seconds).",
            )
        )
        .with_panel(
            p.series(
                "Stage time share",
                [
                    (
                        f"sum by ({STAGE}) (rate({p.selector(STAGE_S + '_sum')}{RATE}))",
                        "{{stage}}",
                    )
                ],
                unit="percentunit",
                stack=True,
                description="Seconds spent in each stage per second of wall time, all "
                "selected pods together.",
            )
        )
        .with_panel(
            p.series(
                "Stage p95",
                [(quantile(0.95, STAGE_S, by=STAGE), "{{stage}}")],
                unit="s",
                description="95th percentile of each stage's duration.",
            )
        )
        .with_panel(
            p.series(
                "Spans dropped",
                [(f"sum by ({NS_POD}) (increase({p.selector(DROPPED)}{RATE}))", "{{pod}}")],
                unit="short",
                bars=True,
                description="Spans the pipeline could not deliver to the OTLP endpoint "
                "(the Collector or trace backend was unreachable).",
            )
        )
    )
    return multi_gpu.with_rows(dashboard)
