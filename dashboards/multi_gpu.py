"""The Serving dashboard's Multi-GPU rows: step time by world size and each rank's
communication and waiting, from ``wan_parallel_comm_duration_seconds`` and
``wan_parallel_wait_duration_seconds`` (per denoising step, labels ``rank`` and
``world_size``).

A static "Multi-GPU" row compares world sizes and ranks side by side; a second row repeats once
per value of the ``rank`` variable (Grafana row repeat), each showing one rank's figures. The
step histogram has no ``rank``: a step is the job's, so shares divide each rank's mean time per
step by the mean step of the same world size. A one-GPU run records no communication, so these
panels stay empty until a multi-GPU run is scraped.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, QueryVariable
from grafana_foundation_sdk.models.dashboard import VariableSort

from dashboards import panels as p
from dashboards.histogram_queries import mean, quantile
from wan_otel import semconv

N = semconv.PROMETHEUS_NAMES
STEP_S = N[semconv.METRIC_STEP_DURATION]
COMM_S = N[semconv.METRIC_COMM_DURATION]
WAIT_S = N[semconv.METRIC_WAIT_DURATION]
RANK, WORLD_SIZE = semconv.LABEL_RANK, semconv.LABEL_WORLD_SIZE

VARIABLE = "rank"
"""The variable the per-rank row repeats by."""
RANK_FILTER = f'{RANK}=~"${VARIABLE}"'
OF_WORLD = "{{world_size}} GPUs"
ALERTS = (
    "The alerts WanParallelCommunicationBound (communication above 25 % of the step) and "
    "WanParallelStragglerWait (waiting above 10 %) watch the same shares per pod."
)


def rank_variable() -> QueryVariable:
    """The ranks that recorded communication in the selected pods (at most the GPUs of a job:
    8 per node for Wan2.2's parallel modes), numbers sorted as numbers."""
    query = f"label_values({p.selector(COMM_S + '_count')}, {RANK})"
    return p.label_variable(VARIABLE, query, "Rank", sort=VariableSort.NUMERICAL_ASC)


def share(histogram: str) -> str:
    """Each selected rank's mean time per step in ``histogram`` over the mean step time of the
    same world size."""
    per_rank = mean(histogram, by=f"{WORLD_SIZE}, {RANK}", extra=RANK_FILTER)
    step = mean(STEP_S, by=WORLD_SIZE)
    return f"({per_rank}) / on ({WORLD_SIZE}) group_left () ({step})"


def _per_step(histogram: str) -> list[p.Query]:
    return [
        (quantile(0.5, histogram, by=WORLD_SIZE, extra=RANK_FILTER), f"p50 {OF_WORLD}"),
        (quantile(0.95, histogram, by=WORLD_SIZE, extra=RANK_FILTER), f"p95 {OF_WORLD}"),
        (mean(histogram, by=WORLD_SIZE, extra=RANK_FILTER), f"mean {OF_WORLD}"),
    ]


def with_rows(dashboard: Dashboard) -> Dashboard:
    """``dashboard`` with the Multi-GPU rows added at its end (a repeated row repeats the
    panels up to the next row, so it goes last)."""
    dashboard = (
        dashboard.with_row(p.row("Multi-GPU"))
        .with_panel(
            p.series(
                "Denoising step p50/p95 by world size",
                [
                    (quantile(0.5, STEP_S, by=WORLD_SIZE), "p50 " + OF_WORLD),
                    (quantile(0.95, STEP_S, by=WORLD_SIZE), "p95 " + OF_WORLD),
                ],
                unit="s",
                description="One denoising step (GPU time) for each number of GPUs a "
                "generation runs on (world_size 1: one GPU). A step on N GPUs against a step on "
                "one is the speedup the parallelism buys.",
            )
        )
        .with_panel(
            p.series(
                "Communication and wait share by rank",
                [
                    (share(COMM_S), "communication rank {{rank}} of " + OF_WORLD),
                    (share(WAIT_S), "waiting rank {{rank}} of " + OF_WORLD),
                ],
                unit="percentunit",
                description="Per rank, the mean time per step in collectives (communication) "
                "and the part of it spent waiting for a slower peer, over the mean step of the "
                "same world size. The straggler is the rank that waits least: the others wait "
                f"for it. {ALERTS}",
            )
        )
    )
    return (
        dashboard.with_row(p.row(f"Multi-GPU: rank ${VARIABLE}").repeat(VARIABLE))
        .with_panel(
            p.series(
                f"Communication per step, rank ${VARIABLE}",
                _per_step(COMM_S),
                unit="s",
                span=8,
                description="Time this rank spends in collectives (Ulysses all-to-alls, ring "
                "attention's exchanges) per denoising step, measured on its compute stream: "
                "the transfers and the wait for the slowest peer.",
            )
        )
        .with_panel(
            p.series(
                f"Wait per step, rank ${VARIABLE}",
                _per_step(WAIT_S),
                unit="s",
                span=8,
                description="Per denoising step, the time this rank's collectives took above "
                "the fastest rank's time for the same collective: waiting for a slower peer.",
            )
        )
        .with_panel(
            p.series(
                f"Communication share, rank ${VARIABLE}",
                [
                    (share(COMM_S), "communication " + OF_WORLD),
                    (share(WAIT_S), "waiting " + OF_WORLD),
                ],
                unit="percentunit",
                span=8,
                description="This rank's mean communication and wait per step over the mean "
                f"step of the same world size. {ALERTS}",
            )
        )
    )
