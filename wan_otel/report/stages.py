"""The latency breakdown: one line per stage, plus the time no stage span covers."""

from __future__ import annotations

from collections.abc import Callable

from wan_otel import semconv as sc
from wan_otel.report.integrate import WindowMean
from wan_otel.report.model import StageLine
from wan_otel.report.spans import RunTree
from wan_otel.store.otlp_json import SpanRecord

STAGE_LABELS = {
    sc.SPAN_INITIALIZE: ("initialization", "Initialization"),
    sc.SPAN_PREPROCESS: ("preprocess", "Preprocess"),
    sc.SPAN_TEXT_ENCODE: ("text_encoding", "Text Encoding"),
    sc.SPAN_DENOISE: ("denoising", "Denoising"),
    sc.SPAN_VAE_DECODE: ("vae_decode", "VAE Decoding"),
    sc.SPAN_EXPORT: ("export", "Export"),
}
OTHER_KEY = "other"
OTHER_LABEL = "Other / unattributed"


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
    for name in sc.STAGE_SPANS:
        key, label = STAGE_LABELS[name]
        spans = [s for s in stages if s.name == name]
        if not spans:
            lines.append(StageLine(key, label, None, None, None, 0.0))
            continue
        duration_ns = sum(s.end_ns - s.start_ns for s in spans)
        transfers = [t for s in spans for t in tree.descendants(s, sc.SPAN_WEIGHT_TRANSFER)]
        lines.append(
            StageLine(
                key=key,
                label=label,
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


def largest_gap(tree: RunTree) -> tuple[float, str, str] | None:
    """The longest stretch of the root span no stage covers: (seconds, after, before)."""
    root = tree.root
    marks: list[tuple[int, int, str]] = [(root.start_ns, root.start_ns, "start")]
    marks += [(s.start_ns, s.end_ns, STAGE_LABELS[s.name][1]) for s in tree.stages()]
    marks.append((root.end_ns, root.end_ns, "end"))
    best: tuple[float, str, str] | None = None
    reach, after = root.start_ns, "start"
    for start, end, label in sorted(marks)[1:]:
        gap = (start - reach) / 1e9
        if gap > 0 and (best is None or gap > best[0]):
            best = (gap, after, label)
        if end >= reach:
            reach, after = end, label
    return best
