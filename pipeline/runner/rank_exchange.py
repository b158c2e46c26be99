"""What the ranks of a multi-GPU run tell each other, outside the denoising loop.

Before the generation (``join``): rank 0 creates the run's folder (or fails for everyone) and
hands every rank the run id and its root span's trace and span ids, so that every rank's spans
are one trace. After the pipeline call (``exchange_figures``): each rank's per-collective
durations, gathered on every rank, give the time each one waited for a slower peer (its
collective's time above the fastest rank's, collective by collective) and the straggler of
each step (the rank whose compute was longest). The figures go on the root spans and into the
communication histograms; the report recomputes them from the spans.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from wan_otel import __version__, semconv
from wan_otel.errors import WanOtelError
from wan_otel.pipeline.instrumentation.generation import Generation, Record
from wan_otel.pipeline.instrumentation.generation_metrics import labels_of
from wan_otel.pipeline.instrumentation.span_stream import RootScope
from wan_otel.pipeline.runner.parallel import ParallelPlan, gather, share
from wan_otel.pipeline.runner.trace_ids import MintedTraceIds
from wan_otel.store.run_store import RunStore

_log = logging.getLogger(__name__)

METER_NAME = "wan_otel.pipeline.parallel"


@dataclass(frozen=True)
class Joined:
    """A rank's place in the run: the run id, and how its root joins the one trace."""

    run_id: str
    context: Context | None = None
    """The parent of this rank's root (rank 0's root span), on ranks 1 and up."""
    root_scope: RootScope | None = None
    """On rank 0: gives its root the ids every rank was told."""


def join(
    run_id: str, store: RunStore | None, plan: ParallelPlan, ids: MintedTraceIds | None
) -> Joined:
    """Agree on the run and its trace before the generation (one broadcast)."""
    if not plan.parallel:
        return Joined(run_id)
    if plan.rank == 0:
        assert ids is not None, "a multi-GPU run needs MintedTraceIds as the id generator"
        error = None
        try:
            if store is not None:
                store.create_run(run_id)
        except WanOtelError as exc:
            error = str(exc)
        trace_id, span_id = ids.new_trace_id(), ids.new_span_id()
        share(plan, (run_id, trace_id, span_id, error))
        if error is not None:
            raise WanOtelError(error)
        return Joined(run_id, root_scope=lambda: ids.minting(trace_id, span_id))
    shared: tuple[str, int, int, str | None] = share(plan, ("", 0, 0, None))
    run_id, trace_id, span_id, error = shared
    if error is not None:
        raise WanOtelError(error)
    parent = SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    return Joined(run_id, context=trace.set_span_in_context(NonRecordingSpan(parent)))


@dataclass(frozen=True)
class StepFigures:
    """One step of one rank: each collective's duration in call order, and compute."""

    durations_s: list[float]
    compute_s: float


def step_figures(generation: Generation) -> list[StepFigures]:
    """The rank's steps, in order, from its records (the timeline is resolved by now)."""
    time_ns = generation.timeline.time_ns
    steps = []
    for record in generation.records:
        if record.name != semconv.SPAN_DENOISE_STEP or record.end is None:
            continue
        durations = [
            max(0, time_ns(end) - time_ns(start)) / 1e9
            for collective in _collectives(record)
            for start, end in collective.intervals or ()
        ]
        total = max(0, time_ns(record.end) - time_ns(record.start)) / 1e9
        steps.append(StepFigures(durations, max(0.0, total - sum(durations))))
    return steps


def _collectives(step: Record) -> list[Record]:
    found, todo = [], list(step.children)
    while todo:
        node = todo.pop(0)
        if node.name == semconv.SPAN_COLLECTIVE and not node.merged:
            found.append(node)
        todo.extend(node.children)
    return found


def waits(everyone: Sequence[Sequence[StepFigures]], rank: int) -> list[float]:
    """Per step, the time ``rank``'s collectives spent above the fastest rank's."""
    out = []
    for index, mine in enumerate(everyone[rank]):
        peers = [steps[index] for steps in everyone if index < len(steps)]
        if any(len(p.durations_s) != len(mine.durations_s) for p in peers):
            out.append(0.0)  # the ranks did not run the same collectives: no alignment
            continue
        fastest = [min(p.durations_s[c] for p in peers) for c in range(len(mine.durations_s))]
        out.append(sum(d - f for d, f in zip(mine.durations_s, fastest, strict=True)))
    return out


def stragglers(everyone: Sequence[Sequence[StepFigures]]) -> list[int]:
    """Per step, the rank whose compute was longest."""
    steps = min(len(s) for s in everyone)
    return [
        max(range(len(everyone)), key=lambda r: everyone[r][index].compute_s)
        for index in range(steps)
    ]


class ParallelMetrics:
    """Communication and wait per step and rank (``rank`` is bounded by the job's GPUs)."""

    def __init__(self, provider: metrics.MeterProvider | None = None) -> None:
        meter = (provider or metrics.get_meter_provider()).get_meter(METER_NAME, __version__)
        buckets = list(semconv.DURATION_BUCKETS_S)
        self.comm = meter.create_histogram(
            semconv.METRIC_COMM_DURATION,
            unit="s",
            description="Time in collectives per denoising step, per rank",
            explicit_bucket_boundaries_advisory=buckets,
        )
        self.wait = meter.create_histogram(
            semconv.METRIC_WAIT_DURATION,
            unit="s",
            description="Time per denoising step a rank's collectives waited for a slower peer",
            explicit_bucket_boundaries_advisory=buckets,
        )


def exchange_figures(
    generation: Generation, plan: ParallelPlan, instruments: ParallelMetrics
) -> None:
    """After the pipeline call: gather every rank's figures, record this rank's wait and
    communication, and put the run's totals on the root. A peer gone: one warning."""
    if not plan.parallel:
        return
    generation.timeline.resolve()
    mine = step_figures(generation)
    try:
        everyone: list[list[StepFigures]] = gather(plan, mine)
    except Exception as exc:  # a rank died: the others' spans stay as they are
        _log.warning("collective figures not exchanged (a rank is gone?): %s", exc)
        return
    waited = waits(everyone, plan.rank)
    labels: dict[str, Any] = {
        semconv.LABEL_MODEL: labels_of(generation.root)[semconv.LABEL_MODEL],
        semconv.LABEL_RANK: str(plan.rank),
        semconv.LABEL_WORLD_SIZE: str(plan.world_size),
    }
    for step, wait in zip(mine, waited, strict=True):
        instruments.comm.record(sum(step.durations_s), labels)
        instruments.wait.record(wait, labels)
    root = generation.root.attributes
    root[semconv.PARALLEL_WAIT_S] = sum(waited)
    if plan.rank == 0:
        root[semconv.PARALLEL_STRAGGLERS] = tuple(stragglers(everyone))
