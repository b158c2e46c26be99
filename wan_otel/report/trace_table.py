"""The execution trace table: one row per stage, step and weight transfer, then the total."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from wan_otel import semconv as sc
from wan_otel.report.experts import has_two_experts, step_expert
from wan_otel.report.formatting import duration, gib_or_mib, shorten
from wan_otel.report.integrate import WindowMean
from wan_otel.report.model import TraceRow
from wan_otel.report.spans import GIB, RunTree, attr_gib, attr_int, attr_str, error_text
from wan_otel.report.stages import stage_label, stage_order
from wan_otel.store.otlp_json import SpanRecord

COMPUTE_BOUND_PCT = 80.0
IDLE_PCT = 20.0
ERROR_CELL_CHARS = 60
"""An error in a row's comment is cut (at a word) to this; the Error section has it whole."""
STEP_ROW = "Step "
"""Name of a step's row, before its index (and, in a two-expert run, its expert)."""
NO_OP_FOLD_MIN = 2
"""No-op transfers (0 B moved) of one stage fold into one row from this many on."""


def _row_name(tree: RunTree, span: SpanRecord, experts: bool) -> str:
    if span.name == sc.SPAN_DENOISE_STEP:
        name = f"{STEP_ROW}{attr_int(span, sc.DENOISE_STEP)}"
        expert = step_expert(tree, span) if experts else None
        return name if expert is None else f"{name} ({sc.EXPERTS[expert]})"
    if span.name == sc.SPAN_WEIGHT_TRANSFER:
        return f"Transfer {attr_str(span, sc.COMPONENT_NAME) or '?'}"
    if span.name == sc.SPAN_COMPONENT_INITIALIZE:
        return f"Init {attr_str(span, sc.COMPONENT_NAME) or '?'}"
    if span.name == sc.SPAN_GENERATE:
        return "Total (root span)"
    return stage_label(span)


def _error_comment(tree: RunTree, span: SpanRecord) -> str | None:
    """The span's error, cut for the cell, on the span it was raised in; a span that only
    passed a descendant's error on says "failed"."""
    error = error_text(span)
    if error is None:
        return None
    todo = list(tree.kids(span))
    while todo:
        node = todo.pop()
        if error_text(node) == error:
            return "failed"
        todo.extend(tree.kids(node))
    return f"ERROR {shorten(error, ERROR_CELL_CHARS)}"


def _comment(tree: RunTree, span: SpanRecord, window: WindowMean, transfer_s: float) -> str:
    error = _error_comment(tree, span)
    if error:
        return error
    parts = []
    if span.name == sc.SPAN_WEIGHT_TRANSFER:
        moved = attr_int(span, sc.TRANSFER_BYTES)
        direction = attr_str(span, sc.TRANSFER_DIRECTION) or "moved"
        if moved == 0:
            parts.append("no-op (0 B moved)")
        elif moved is not None:
            rate = moved / GIB / span.duration_s if span.duration_s > 0 else None
            parts.append(
                f"{gib_or_mib(moved / GIB)} {direction}"
                + (f", {gib_or_mib(rate, 1)}/s" if rate else "")
            )
    elif window.pct is not None and span.name != sc.SPAN_GENERATE:
        if window.pct >= COMPUTE_BOUND_PCT:
            parts.append("compute-bound")
        elif window.pct < IDLE_PCT:
            parts.append("GPU mostly idle")
    if transfer_s > 0 and span.name != sc.SPAN_WEIGHT_TRANSFER:
        parts.append(f"incl. {duration(transfer_s)} transfers")
    if window.pct is None and window.reason and "interval" in window.reason:
        parts.append("too short for SM")
    elif window.pct is None and window.reason and "faster than time" in window.reason:
        parts.append("GPU samples inconsistent")
    return "; ".join(parts)


@dataclass(frozen=True)
class _Table:
    """What every row of one run's table is built from."""

    tree: RunTree
    mean: Callable[[SpanRecord], WindowMean]
    experts: bool
    """A two-expert run: step rows name their expert."""
    step_comments: Mapping[int, str]


def _row(table: _Table, span: SpanRecord, depth: int) -> TraceRow:
    tree = table.tree
    window = table.mean(span)
    start = attr_gib(span, sc.MEMORY_ALLOCATED_START)
    end = attr_gib(span, sc.MEMORY_ALLOCATED_END)
    transfers = (
        [] if span.name == sc.SPAN_GENERATE else tree.descendants(span, sc.SPAN_WEIGHT_TRANSFER)
    )
    comment = _comment(tree, span, window, sum(t.duration_s for t in transfers))
    if span.name == sc.SPAN_DENOISE_STEP:
        index = attr_int(span, sc.DENOISE_STEP)
        extra = table.step_comments.get(index) if index is not None else None
        comment = "; ".join(p for p in (comment, extra) if p)
    return TraceRow(
        name=_row_name(tree, span, table.experts),
        depth=depth,
        duration_s=span.duration_s,
        sm_pct=window.pct,
        sm_tolerance_pct=window.tolerance_pct if window.pct is not None else None,
        load=span.duration_s * window.pct / 100.0 if window.pct is not None else None,
        mem_start_gb=start,
        mem_end_gb=end,
        peak_mem_gb=attr_gib(span, sc.MEMORY_ALLOCATED_PEAK),
        mem_delta_gb=end - start if start is not None and end is not None else None,
        comment=comment,
    )


def _is_no_op(span: SpanRecord) -> bool:
    return (
        span.name == sc.SPAN_WEIGHT_TRANSFER
        and attr_int(span, sc.TRANSFER_BYTES) == 0
        and error_text(span) is None
    )


def _no_op_row(spans: list[SpanRecord], depth: int) -> TraceRow:
    """One row for many transfers that moved nothing (model offload's hook on a component
    already on the device): their count and summed time, no per-window figures."""
    components = sorted({attr_str(s, sc.COMPONENT_NAME) or "?" for s in spans})
    return TraceRow(
        name=f"{len(spans)} no-op transfers",
        depth=depth,
        duration_s=sum(s.duration_s for s in spans),
        sm_pct=None,
        sm_tolerance_pct=None,
        load=None,
        mem_start_gb=None,
        mem_end_gb=None,
        peak_mem_gb=None,
        mem_delta_gb=None,
        comment=f"{', '.join(components)}: 0 B moved",
    )


def _stage_rows(table: _Table, stage: SpanRecord) -> list[TraceRow]:
    """A stage's row, then under initialization its components, under denoising each step,
    and under any row the weight transfers inside it; no-op transfers folded into one row
    right under the stage."""
    tree = table.tree
    no_ops = [t for t in tree.descendants(stage, sc.SPAN_WEIGHT_TRANSFER) if _is_no_op(t)]
    fold = len(no_ops) >= NO_OP_FOLD_MIN
    rows = [_row(table, stage, 0)]
    if fold:
        rows.append(_no_op_row(no_ops, 1))

    def transfers(parent: SpanRecord, depth: int) -> list[TraceRow]:
        found = tree.descendants(parent, sc.SPAN_WEIGHT_TRANSFER)
        return [_row(table, t, depth) for t in found if not (fold and _is_no_op(t))]

    if stage.name == sc.SPAN_INITIALIZE:
        for comp in tree.descendants(stage, sc.SPAN_COMPONENT_INITIALIZE):
            rows.append(_row(table, comp, 1))
    if stage.name == sc.SPAN_DENOISE:
        for child in sorted(tree.kids(stage), key=lambda s: s.start_ns):
            folded = fold and _is_no_op(child)
            if child.name in (sc.SPAN_DENOISE_STEP, sc.SPAN_WEIGHT_TRANSFER) and not folded:
                rows.append(_row(table, child, 1))
                rows += transfers(child, 2)
    else:
        rows += transfers(stage, 1)
    return rows


def trace_rows(
    tree: RunTree,
    mean: Callable[[SpanRecord], WindowMean],
    step_comments: Mapping[int, str] | None = None,
) -> list[TraceRow]:
    """Rows of the stages in the contract's run order (the latency breakdown's), each with
    its children; the root span last. A two-expert run's step rows name their expert;
    ``step_comments`` (step index -> text: a multi-GPU run's straggler) are added to the
    comments of those steps' rows."""
    table = _Table(tree, mean, has_two_experts(tree), step_comments or {})
    rows = []
    for stage in sorted(tree.stages(), key=stage_order):
        rows += _stage_rows(table, stage)
    rows.append(_row(table, tree.root, 0))
    return rows
