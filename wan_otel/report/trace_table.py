"""The execution trace table: one row per stage, step and weight transfer, then the total."""

from __future__ import annotations

from collections.abc import Callable

from wan_otel import semconv as sc
from wan_otel.report.integrate import WindowMean
from wan_otel.report.model import TraceRow
from wan_otel.report.spans import GIB, RunTree, attr_gib, attr_int, attr_str, error_text
from wan_otel.report.stages import STAGE_LABELS
from wan_otel.store.otlp_json import SpanRecord

COMPUTE_BOUND_PCT = 80.0
IDLE_PCT = 20.0


def _row_name(span: SpanRecord) -> str:
    if span.name == sc.SPAN_DENOISE_STEP:
        return f"Step {attr_int(span, sc.DENOISE_STEP)}"
    if span.name == sc.SPAN_WEIGHT_TRANSFER:
        return f"Transfer {attr_str(span, sc.COMPONENT_NAME) or '?'}"
    if span.name == sc.SPAN_COMPONENT_INITIALIZE:
        return f"Init {attr_str(span, sc.COMPONENT_NAME) or '?'}"
    if span.name == sc.SPAN_GENERATE:
        return "Total (root span)"
    if span.name in STAGE_LABELS:
        return STAGE_LABELS[span.name][1]
    return span.name


def _comment(span: SpanRecord, window: WindowMean, transfer_s: float) -> str:
    error = error_text(span)
    if error:
        return f"ERROR {error}"
    parts = []
    if span.name == sc.SPAN_WEIGHT_TRANSFER:
        moved = attr_int(span, sc.TRANSFER_BYTES)
        direction = attr_str(span, sc.TRANSFER_DIRECTION) or "moved"
        if moved == 0:
            parts.append("no-op (0 B moved)")
        elif moved is not None:
            rate = moved / GIB / span.duration_s if span.duration_s > 0 else None
            parts.append(
                f"{moved / GIB:.2f} GiB {direction}" + (f", {rate:.1f} GiB/s" if rate else "")
            )
    elif window.pct is not None and span.name != sc.SPAN_GENERATE:
        if window.pct >= COMPUTE_BOUND_PCT:
            parts.append("compute-bound")
        elif window.pct < IDLE_PCT:
            parts.append("GPU mostly idle")
    if transfer_s > 0 and span.name != sc.SPAN_WEIGHT_TRANSFER:
        parts.append(f"incl. {transfer_s:.2f} s transfers")
    if window.pct is None and window.reason and "interval" in window.reason:
        parts.append("too short for SM")
    return "; ".join(parts)


def _row(
    tree: RunTree, span: SpanRecord, depth: int, mean: Callable[[SpanRecord], WindowMean]
) -> TraceRow:
    window = mean(span)
    start = attr_gib(span, sc.MEMORY_ALLOCATED_START)
    end = attr_gib(span, sc.MEMORY_ALLOCATED_END)
    transfers = (
        [] if span.name == sc.SPAN_GENERATE else tree.descendants(span, sc.SPAN_WEIGHT_TRANSFER)
    )
    return TraceRow(
        name=_row_name(span),
        depth=depth,
        duration_s=span.duration_s,
        sm_pct=window.pct,
        sm_tolerance_pct=window.tolerance_pct if window.pct is not None else None,
        load=span.duration_s * window.pct / 100.0 if window.pct is not None else None,
        mem_start_gb=start,
        mem_end_gb=end,
        peak_mem_gb=attr_gib(span, sc.MEMORY_ALLOCATED_PEAK),
        mem_delta_gb=end - start if start is not None and end is not None else None,
        comment=_comment(span, window, sum(t.duration_s for t in transfers)),
    )


def trace_rows(tree: RunTree, mean: Callable[[SpanRecord], WindowMean]) -> list[TraceRow]:
    """Rows in run order: each stage; under initialization its components, under denoising
    each step, and under any row the weight transfers inside it; the root span last."""
    rows = []
    for stage in tree.stages():
        rows.append(_row(tree, stage, 0, mean))
        if stage.name == sc.SPAN_INITIALIZE:
            for comp in tree.descendants(stage, sc.SPAN_COMPONENT_INITIALIZE):
                rows.append(_row(tree, comp, 1, mean))
        if stage.name == sc.SPAN_DENOISE:
            for child in sorted(tree.kids(stage), key=lambda s: s.start_ns):
                if child.name not in (sc.SPAN_DENOISE_STEP, sc.SPAN_WEIGHT_TRANSFER):
                    continue
                rows.append(_row(tree, child, 1, mean))
                for transfer in tree.descendants(child, sc.SPAN_WEIGHT_TRANSFER):
                    rows.append(_row(tree, transfer, 2, mean))
        else:
            for transfer in tree.descendants(stage, sc.SPAN_WEIGHT_TRANSFER):
                rows.append(_row(tree, transfer, 1, mean))
    rows.append(_row(tree, tree.root, 0, mean))
    return rows
