"""The latency breakdown: one line per stage of the contract's table, plus the time no stage
span covers, and the gaps between stage spans."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wan_otel import semconv as sc
from wan_otel.report.integrate import WindowMean
from wan_otel.report.model import StageLine
from wan_otel.report.spans import RunTree, attr_gib
from wan_otel.store.otlp_json import SpanRecord

OTHER_KEY = "other"
OTHER_LABEL = "Other / unattributed"
UNTRACED_MEMORY_GIB = 0.1
"""Smallest memory change between two stage spans worth reporting."""


def stage_key(span_name: str) -> str:
    """The contract's key of a stage span (``denoising`` for ``wan.denoise.loop``)."""
    stage = sc.stage_for_span(span_name)
    if stage is None:
        raise KeyError(f"{span_name} is not a stage span")
    return stage.key


def stage_label(span: SpanRecord) -> str:
    """The display label of a stage span (its name for a span that is not a stage)."""
    stage = sc.stage_for_span(span.name)
    return span.name if stage is None else stage.label


def stage_order(span: SpanRecord) -> tuple[int, int]:
    """Sort key of stage spans: the table's run order, then start time (a stage run twice)."""
    stage = sc.stage_for_span(span.name)
    return (len(sc.STAGES) + 1 if stage is None else stage.order, span.start_ns)


def covered_ns(windows: list[tuple[int, int]], lo: int, hi: int) -> int:
    """Length of the union of ``windows`` clipped to ``[lo, hi]``."""
    total, reach = 0, lo
    for start, end in sorted(windows):
        start, end = max(start, reach), min(end, hi)
        if end > start:
            total += end - start
            reach = end
    return total


def stage_lines(tree: RunTree, mean: Callable[[SpanRecord], WindowMean]) -> list[StageLine]:
    """Every stage of the contract in run order (absent ones with ``duration_s`` None), then
    the unattributed remainder, so that the shares add up to 100 %."""
    root = tree.root
    total_ns = root.end_ns - root.start_ns
    stages = tree.stages()
    lines = []
    for stage in sc.STAGES:
        spans = [s for s in stages if s.name == stage.span]
        if not spans:
            lines.append(StageLine(stage.key, stage.label, None, None, None, 0.0))
            continue
        duration_ns = sum(s.end_ns - s.start_ns for s in spans)
        transfers = [t for s in spans for t in tree.descendants(s, sc.SPAN_WEIGHT_TRANSFER)]
        lines.append(
            StageLine(
                key=stage.key,
                label=stage.label,
                duration_s=duration_ns / 1e9,
                share_pct=100.0 * duration_ns / total_ns if total_ns else None,
                sm_pct=mean(spans[0]).pct if len(spans) == 1 else None,
                transfer_s=sum(t.duration_s for t in transfers),
            )
        )
    covered = covered_ns([(s.start_ns, s.end_ns) for s in stages], root.start_ns, root.end_ns)
    other_ns = total_ns - covered
    lines.append(
        StageLine(
            key=OTHER_KEY,
            label=OTHER_LABEL,
            duration_s=other_ns / 1e9,
            share_pct=100.0 * other_ns / total_ns if total_ns else None,
            sm_pct=None,
            transfer_s=0.0,
        )
    )
    return lines


@dataclass(frozen=True)
class Gap:
    """A stretch of the root span that no stage covers, between two stage spans (or the
    root's start or end)."""

    seconds: float
    after: SpanRecord | None
    """The stage span the gap follows; None at the root's start."""
    before: SpanRecord | None
    """The stage span the gap precedes; None at the root's end."""

    @property
    def after_label(self) -> str:
        return "start" if self.after is None else stage_label(self.after)

    @property
    def before_label(self) -> str:
        return "end" if self.before is None else stage_label(self.before)

    def memory_change_gib(self) -> float | None:
        """Allocated memory that changed inside this gap (from the end of the span before it
        to the start of the span after it), when both spans carry allocator figures."""
        if self.after is None or self.before is None:
            return None
        end = attr_gib(self.after, sc.MEMORY_ALLOCATED_END)
        start = attr_gib(self.before, sc.MEMORY_ALLOCATED_START)
        return None if end is None or start is None else start - end


def largest_gap(tree: RunTree) -> Gap | None:
    """The longest stretch of the root span no stage covers."""
    root = tree.root
    marks: list[tuple[int, int, SpanRecord | None]] = [
        (s.start_ns, s.end_ns, s) for s in tree.stages()
    ]
    marks.append((root.end_ns, root.end_ns, None))
    marks.sort(key=lambda m: (m[0], m[1]))
    best: Gap | None = None
    reach, after = root.start_ns, None
    for start, end, span in marks:
        gap = (start - reach) / 1e9
        if gap > 0 and (best is None or gap > best.seconds):
            best = Gap(gap, after, span)
        if end >= reach:
            reach, after = end, span
    return best
