"""The timeline figure of the HTML report: one lane group per rank, a bar per span, its
figures in a tooltip; spans too narrow to see apart are drawn as one bar that says so."""

from __future__ import annotations

from wan_otel import semconv as sc
from wan_otel.report.formatting import activity_label, duration, gib_or_mib
from wan_otel.report.spans import GIB, attr_float, attr_gib, attr_int, attr_str, error_text
from wan_otel.report.stages import stage_key
from wan_otel.report.svg_axis import GUTTER, WIDTH, Axis, esc, px
from wan_otel.report.timeline import LANE_NAMES, Bar, RankView, Timeline

COLORS = {
    "run": "#c7cdd4",
    "initialization": "#b07aa1",
    "text_encoding": "#edc948",
    "preprocess": "#bab0ac",
    "denoising": "#4e79a7",
    "vae_decode": "#59a14f",
    "export": "#ff9da7",
    "init": "#d4b9cf",
    "step0": "#6f9fd8",
    "step1": "#9dbde6",
    "lo0": "#a67c52",
    "lo1": "#c9a57f",
    "fwd": "#b9d3ee",
    "xfer": "#f28e2b",
    "coll": "#e15759",
    "span": "#d3d3d3",
    "other": "#e4e4e4",
}
"""Fill of each bar class (``c-<key>``): stages by their contract key; steps alternate two
shades (the low-noise expert's in brown), so that neighbouring steps read apart."""
LANE_HEIGHT = 14
LANE_GAP = 2
HEADER = 20
"""Height of a rank group's title row."""
AXIS_HEIGHT = 22
MIN_BAR_PX = 1.0
"""Spans narrower than this are gathered with their lane neighbours into one bar."""
GATHER_PX = 3.0
"""Width one gathered bar may reach."""
LABEL_PX_PER_CHAR = 6.2


def color_key(bar: Bar) -> str:
    span = bar.span
    if bar.kind in ("root", "rank"):
        return "run"
    if bar.kind == "stage":
        return stage_key(span.name)
    if bar.kind == "step":
        parity = (attr_int(span, sc.DENOISE_STEP) or 0) % 2
        return f"{'lo' if bar.expert == 'transformer_2' else 'step'}{parity}"
    return {"init": "init", "forward": "fwd", "transfer": "xfer", "collective": "coll"}.get(
        bar.kind, "span"
    )


def _memory_line(bar: Bar) -> str | None:
    span = bar.span
    start = attr_gib(span, sc.MEMORY_ALLOCATED_START)
    end = attr_gib(span, sc.MEMORY_ALLOCATED_END)
    peak = attr_gib(span, sc.MEMORY_ALLOCATED_PEAK)
    reserved = attr_gib(span, sc.MEMORY_RESERVED_PEAK)
    parts = []
    if start is not None and end is not None:
        parts.append(f"allocated {start:.2f} → {end:.2f} GiB")
    if peak is not None:
        parts.append(f"peak {peak:.2f} GiB")
    if reserved is not None:
        parts.append(f"reserved peak {reserved:.2f} GiB")
    return " · ".join(parts) or None


def _kind_line(bar: Bar) -> str | None:
    span = bar.span
    if bar.kind == "step":
        parts = []
        timestep = attr_float(span, sc.DENOISE_TIMESTEP)
        if timestep is not None:
            parts.append(f"timestep {timestep:g}")
        for key, name in ((sc.STEP_COMPUTE_S, "compute"), (sc.STEP_COMM_S, "comm")):
            value = attr_float(span, key)
            if value is not None:
                parts.append(f"{name} {duration(value)}")
        return " · ".join(parts) or None
    if bar.kind == "transfer":
        moved = attr_int(span, sc.TRANSFER_BYTES)
        direction = attr_str(span, sc.TRANSFER_DIRECTION) or "moved"
        if moved is None:
            return None
        rate = moved / GIB / span.duration_s if span.duration_s > 0 and moved else None
        return f"{gib_or_mib(moved / GIB)} {direction}" + (
            f", {gib_or_mib(rate, 1)}/s" if rate else ""
        )
    if bar.kind == "collective":
        count = attr_int(span, sc.COLLECTIVE_COUNT)
        sent = attr_int(span, sc.COLLECTIVE_BYTES)
        parts = [f"{count} call(s)" if count is not None else ""]
        parts.append(f"{gib_or_mib(sent / GIB)} sent" if sent is not None else "")
        return " · ".join(p for p in parts if p) or None
    return None


def span_tip(bar: Bar, origin_ns: int, source: str | None) -> str:
    """The hover text of one span's bar: what it is, when, how long, its SM activity and
    memory, and what its kind adds (a step's timestep, a transfer's bytes)."""
    span = bar.span
    head = f"{bar.label} ({span.name})"
    if bar.stand_in:
        head += ", stood in for: its span never ended"
    lines = [head, f"at {(span.start_ns - origin_ns) / 1e9:.3f} s for {duration(span.duration_s)}"]
    label = activity_label(source)
    if bar.sm.pct is not None:
        tolerance = f" ±{bar.sm.tolerance_pct:.1f} pp" if bar.sm.tolerance_pct >= 0.05 else ""
        lines.append(f"{label} {bar.sm.pct:.1f}%{tolerance}")
    elif bar.sm.reason and "interval" in bar.sm.reason:
        lines.append(f"{label} n/a: shorter than the sample interval")
    for line in (_memory_line(bar), _kind_line(bar)):
        if line:
            lines.append(line)
    error = error_text(span)
    if error:
        lines.append(f"ERROR {error}")
    return "\n".join(lines)


def _rect(x: float, y: float, w: float, cls: str, tip: str) -> str:
    return (
        f'<rect class="{cls}" x="{px(x)}" y="{y}" width="{px(max(w, 0.6))}" '
        f'height="{LANE_HEIGHT}"><title>{esc(tip)}</title></rect>'
    )


def _gathered_tip(bars: list[Bar], origin_ns: int) -> str:
    first, last = bars[0].span, bars[-1].span
    busy = sum(b.span.duration_s for b in bars)
    name = LANE_NAMES[bars[0].kind]
    return (
        f"{len(bars)} {name} too narrow to draw apart: {bars[0].label} … {bars[-1].label}\n"
        f"from {(first.start_ns - origin_ns) / 1e9:.3f} s to "
        f"{(last.end_ns - origin_ns) / 1e9:.3f} s; {duration(busy)} in all, "
        f"{duration(busy / len(bars))} each on average"
    )


def _lane_bars(bars: list[Bar], axis: Axis, y: int, source: str | None) -> list[str]:
    """One lane's bars; runs of narrow spans of one kind gathered into one bar each."""
    out: list[str] = []
    pending: list[Bar] = []

    def flush() -> None:
        if len(pending) == 1:
            out.append(_bar(pending[0], axis, y, source))
        elif pending:
            lo, hi = pending[0].span.start_ns, pending[-1].span.end_ns
            cls = f"bar gathered c-{color_key(pending[0])}"
            out.append(
                _rect(
                    axis.x(lo), y, axis.width(lo, hi), cls, _gathered_tip(pending, axis.origin_ns)
                )
            )
        pending.clear()

    for bar in sorted(bars, key=lambda b: b.span.start_ns):
        span = bar.span
        narrow = axis.width(span.start_ns, span.end_ns) < MIN_BAR_PX and not error_text(span)
        if not narrow:
            flush()
            out.append(_bar(bar, axis, y, source))
            continue
        if pending and (
            pending[0].kind != bar.kind
            or axis.width(pending[0].span.start_ns, span.end_ns) > GATHER_PX
        ):
            flush()
        pending.append(bar)
    flush()
    return out


def _bar(bar: Bar, axis: Axis, y: int, source: str | None) -> str:
    span = bar.span
    x, w = axis.x(span.start_ns), axis.width(span.start_ns, span.end_ns)
    cls = f"bar c-{color_key(bar)}"
    if error_text(span):
        cls += " err"
    if bar.stand_in:
        cls += " stand-in"
    out = _rect(x, y, w, cls, span_tip(bar, axis.origin_ns, source))
    if w > LABEL_PX_PER_CHAR * len(bar.label) + 6:
        out += (
            f'<text class="lbl" x="{px(x + 3)}" y="{y + LANE_HEIGHT - 3}">{esc(bar.label)}</text>'
        )
    return out


def _group(
    view: RankView, axis: Axis, top: int, source: str | None, prefix: str
) -> tuple[str, int]:
    """One rank's lane group at ``top``, and its height."""
    parts = [f'<text class="rank-title" x="4" y="{top + 14}">{esc(view.title)}</text>']
    y = top + HEADER
    for lane, name in enumerate(view.lanes):
        parts.append(
            f'<text class="lane-name" x="{GUTTER - 6}" y="{y + LANE_HEIGHT - 3}">{esc(name)}</text>'
        )
        parts += _lane_bars([b for b in view.bars if b.lane == lane], axis, y, source)
        y += LANE_HEIGHT + LANE_GAP
    body = "".join(parts)
    return f'<g class="rank" id="{prefix}rank-{view.rank}">{body}</g>', y - top


def axis_labels(axis: Axis, y: int) -> str:
    labels = "".join(f'<text x="{px(x)}" y="{y}">{esc(label)}</text>' for x, label in axis.ticks())
    return f'<g class="ticks">{labels}</g>'


def timeline_svg(tl: Timeline, axis: Axis | None = None, prefix: str = "") -> str:
    """The timeline: the time axis on top, then each rank's lanes. ``axis`` where another
    figure's must be shared (two runs compared); ``prefix`` keeps two figures' ids apart."""
    axis = axis or Axis(tl.origin_ns, tl.duration_ns)
    groups, y = [], AXIS_HEIGHT
    for view in tl.ranks:
        group, height = _group(view, axis, y, tl.sm_source, prefix)
        groups.append(group)
        y += height + 6
    return (
        f'<svg id="{prefix}timeline" class="figure" viewBox="0 0 {WIDTH} {y}" '
        'role="img" aria-label="timeline of the spans">'
        f"{axis.grid(y)}{axis_labels(axis, 14)}{''.join(groups)}</svg>"
    )
