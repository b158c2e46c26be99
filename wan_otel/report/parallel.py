"""Multi-GPU figures: each rank's compute, communication and waiting, and each step's straggler.

Waiting is computed here, from every rank's collective durations aligned across ranks: the
c-th collective of op ``o`` in the f-th transformer forward of step ``s`` is the same
collective on every rank (the contract of ``wan.collective.durations``), and a rank's wait in
it is its duration above the fastest rank's. A collective only one rank recorded (its peers
killed) has no fastest peer to compare with, and counts no wait. The straggler of a step is the
rank with the longest compute in it (lowest rank on a tie); what it cost is the other ranks'
wait in that step.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from wan_otel import semconv as sc
from wan_otel.report.model import ParallelFigures, RankLine, StepStraggler
from wan_otel.report.ranks import RankEnd
from wan_otel.report.run_info import system_info
from wan_otel.report.sm import SmSeries
from wan_otel.report.spans import (
    GIB,
    RunTree,
    attr_float,
    attr_floats,
    attr_gib,
    attr_int,
    attr_str,
)
from wan_otel.store.otlp_json import SpanRecord
from wan_otel.store.samples import GpuSample

WAIT_AGREES_S = 1e-3
WAIT_AGREES_SHARE = 0.01
"""The report's wait and the pipeline's ``wan.parallel.wait_s`` agree within the larger of
these (1 ms, 1 %); beyond, a note gives both."""

Key = tuple[int, int, str]
"""(step index, forward ordinal in the step, collective op): one merged collective span."""


@dataclass
class _RankSteps:
    """One rank's steps: compute and communication per step, collective durations by key."""

    rank: int
    compute: dict[int, float] = field(default_factory=dict)
    comm: dict[int, float] = field(default_factory=dict)
    collectives: dict[Key, list[float]] = field(default_factory=dict)
    sent_bytes: int | None = None
    without_durations: int = 0


def _forward_ordinal(tree: RunTree, span: SpanRecord, forwards: dict[str, int]) -> int:
    """Ordinal of the forward the collective ran in (-1 outside any forward of the step)."""
    parent = span.parent_span_id
    for _ in range(64):  # parent chains are short; a cycle in bad input must not hang
        if parent is None:
            return -1
        if parent in forwards:
            return forwards[parent]
        node = tree.by_id.get(parent)
        parent = node.parent_span_id if node is not None else None
    return -1


def _rank_steps(tree: RunTree) -> _RankSteps:
    out = _RankSteps(tree.rank)
    for ordinal, step in enumerate(tree.steps()):
        index = attr_int(step, sc.DENOISE_STEP)
        s = ordinal if index is None else index
        forwards = {
            f.span_id: i for i, f in enumerate(tree.descendants(step, sc.SPAN_TRANSFORMER_FORWARD))
        }
        collectives = tree.descendants(step, sc.SPAN_COLLECTIVE)
        comm = _non_negative(attr_float(step, sc.STEP_COMM_S))
        if comm is None and collectives:
            comm = sum(c.duration_s for c in collectives)
        compute = _non_negative(attr_float(step, sc.STEP_COMPUTE_S))
        if compute is None and comm is not None:
            compute = max(0.0, step.duration_s - comm)
        if comm is not None:
            out.comm[s] = out.comm.get(s, 0.0) + comm
        if compute is not None:
            out.compute[s] = out.compute.get(s, 0.0) + compute
        for span in collectives:
            sent = attr_int(span, sc.COLLECTIVE_BYTES)
            if sent is not None and sent >= 0:
                out.sent_bytes = (out.sent_bytes or 0) + sent
            durations = attr_floats(span, sc.COLLECTIVE_DURATIONS)
            if durations is None:
                out.without_durations += 1
                continue
            key = (
                s,
                _forward_ordinal(tree, span, forwards),
                attr_str(span, sc.COLLECTIVE_OP) or "?",
            )
            out.collectives.setdefault(key, []).extend(durations)
    return out


def _non_negative(value: float | None) -> float | None:
    return value if value is not None and value >= 0 else None


def _waits(ranks: Sequence[_RankSteps], notes: list[str]) -> dict[int, dict[int, float]]:
    """Rank -> step -> seconds waited, for the ranks that shared a collective with a peer."""
    keys = sorted({key for r in ranks for key in r.collectives})
    waits: dict[int, dict[int, float]] = {}
    uneven = 0
    for key in keys:
        holders = [r for r in ranks if key in r.collectives]
        if len(holders) < 2:
            continue
        arrays = [r.collectives[key] for r in holders]
        count = min(len(a) for a in arrays)
        uneven += any(len(a) != count for a in arrays)
        fastest = [min(a[c] for a in arrays) for c in range(count)]
        for rank_steps, durations in zip(holders, arrays, strict=True):
            per_step = waits.setdefault(rank_steps.rank, {})
            waited = sum(d - f for d, f in zip(durations, fastest, strict=False))
            per_step[key[0]] = per_step.get(key[0], 0.0) + waited
    if uneven:
        notes.append(
            f"{uneven} merged collective(s) hold different counts on different ranks; "
            "waiting is computed over the collectives all of them recorded"
        )
    return waits


def _stragglers(
    ranks: Sequence[_RankSteps], waits: dict[int, dict[int, float]], root: SpanRecord, world: int
) -> list[StepStraggler]:
    out = []
    for s in sorted({s for r in ranks for s in r.compute}):
        have = [(r.compute[s], r.rank) for r in ranks if s in r.compute]
        if len(have) < 2:
            continue
        compute, rank = max(have, key=lambda pair: (pair[0], -pair[1]))
        others = statistics.fmean(c for c, k in have if k != rank)
        caused = [w[s] for k, w in waits.items() if k != rank and s in w]
        out.append(
            StepStraggler(s, rank, compute, compute - others, sum(caused) if caused else None)
        )
    if out:
        return out
    # No rank recorded its compute next to another's: the pipeline's own naming, uncosted.
    named = root.attributes.get(sc.PARALLEL_STRAGGLERS)
    if not isinstance(named, tuple):
        return []
    return [
        StepStraggler(s, rank, None, None, None)
        for s, rank in enumerate(named)
        if isinstance(rank, int) and not isinstance(rank, bool) and 0 <= rank < world
    ]


def _sum(values: Sequence[float]) -> float | None:
    return sum(values) if values else None


def _rank_line(
    tree: RunTree | None,
    end: RankEnd,
    steps: _RankSteps | None,
    waits: dict[int, dict[int, float]],
    straggled: int,
    samples: Sequence[GpuSample],
    notes: list[str],
) -> RankLine:
    if tree is None or steps is None:
        return _missing_line(end)
    system = system_info(tree.root)
    step_spans = tree.steps()
    loop = tree.first(sc.SPAN_DENOISE)
    denoising = loop.duration_s if loop is not None else _sum([s.duration_s for s in step_spans])
    comm = _sum(list(steps.comm.values()))
    wait = _sum(list(waits[tree.rank].values())) if tree.rank in waits else None
    reported = (
        _non_negative(attr_float(tree.root, sc.PARALLEL_WAIT_S)) if tree.root_is_real else None
    )
    if wait is None:
        wait = reported
    elif reported is not None and abs(wait - reported) > max(
        WAIT_AGREES_S, WAIT_AGREES_SHARE * max(wait, reported)
    ):
        notes.append(
            f"rank {tree.rank}: waiting computed from the collectives ({wait:.4f} s) differs "
            f"from the recorded {sc.PARALLEL_WAIT_S} ({reported:.4f} s)"
        )
    peaks = [v for s in tree.spans if (v := attr_gib(s, sc.MEMORY_ALLOCATED_PEAK)) is not None]
    return RankLine(
        rank=tree.rank,
        status=end.status,
        error=end.error,
        gpu_uuid=system.gpu_uuid,
        gpu_name=system.gpu_name,
        device=system.device,
        host_name=system.host_name,
        steps_done=len(step_spans),
        step_s_mean=statistics.fmean(s.duration_s for s in step_spans) if step_spans else None,
        denoising_s=denoising,
        compute_s=_sum(list(steps.compute.values())),
        comm_s=comm,
        comm_pct=100.0 * comm / denoising if comm is not None and denoising else None,
        wait_s=wait,
        wait_reported_s=reported,
        comm_gb=None if steps.sent_bytes is None else steps.sent_bytes / GIB,
        straggler_steps=straggled,
        sm_pct=SmSeries(tree.root, samples).mean(loop).pct if loop is not None else None,
        peak_memory_gb=max(peaks) if peaks else None,
    )


def _missing_line(end: RankEnd) -> RankLine:
    """A rank that wrote no spans: only its rank and status are known."""
    return RankLine(
        rank=end.rank,
        status=end.status,
        error=end.error,
        gpu_uuid=None,
        gpu_name=None,
        device=None,
        host_name=None,
        steps_done=0,
        step_s_mean=None,
        denoising_s=None,
        compute_s=None,
        comm_s=None,
        comm_pct=None,
        wait_s=None,
        wait_reported_s=None,
        comm_gb=None,
        straggler_steps=0,
        sm_pct=None,
        peak_memory_gb=None,
    )


def _degree(trees: Sequence[RunTree], key: str) -> int | None:
    """A parallel degree from rank 0's root, or from another rank's where it has none."""
    return next((d for t in trees if (d := attr_int(t.root, key)) is not None), None)


def _share(lines: Sequence[RankLine], part: str) -> tuple[float | None, float | None]:
    """(sum of ``part`` over the ranks, its share of their denoising time in percent)."""
    pairs = [
        (value, line.denoising_s)
        for line in lines
        if (value := getattr(line, part)) is not None and line.denoising_s
    ]
    total = _sum([getattr(line, part) for line in lines if getattr(line, part) is not None])
    if not pairs:
        return total, None
    return total, 100.0 * sum(v for v, _ in pairs) / sum(d for _, d in pairs)


def parallel_figures(
    tree: RunTree, ends: Sequence[RankEnd], samples: Sequence[GpuSample], notes: list[str]
) -> tuple[list[RankLine], ParallelFigures]:
    """Per-rank lines and the run's multi-GPU figures (efficiency is added by the caller)."""
    trees = {t.rank: t for t in tree.rank_trees()}
    steps = {rank: _rank_steps(t) for rank, t in trees.items()}
    waits = _waits(list(steps.values()), notes)
    stragglers = _stragglers(list(steps.values()), waits, tree.root, tree.world_size)
    counts = Counter(s.rank for s in stragglers)
    lacking = sum(s.without_durations for s in steps.values())
    if lacking:
        notes.append(
            f"{lacking} collective span(s) carry no usable {sc.COLLECTIVE_DURATIONS}; "
            "their waiting is not computed"
        )
    lines = [
        _rank_line(
            trees.get(end.rank), end, steps.get(end.rank), waits, counts[end.rank], samples, notes
        )
        for end in ends
    ]
    comm_s, comm_pct = _share(lines, "comm_s")
    wait_s, wait_pct = _share(lines, "wait_s")
    top = min(counts, key=lambda rank: (-counts[rank], rank)) if counts else None
    figures = ParallelFigures(
        world_size=tree.world_size,
        ulysses_degree=_degree(tree.rank_trees(), sc.PARALLEL_ULYSSES),
        ring_degree=_degree(tree.rank_trees(), sc.PARALLEL_RING),
        comm_s=comm_s,
        comm_pct=comm_pct,
        wait_s=wait_s,
        wait_pct=wait_pct,
        straggler=top,
        straggler_steps=counts[top] if top is not None else 0,
        stragglers=stragglers,
        efficiency=None,
    )
    return lines, figures
