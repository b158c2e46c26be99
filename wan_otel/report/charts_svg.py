"""The HTML report's charts: SM activity and memory on the timeline's axis, and the latency
breakdown as one stacked bar."""

from __future__ import annotations

import math
from collections.abc import Sequence

from wan_otel.report.formatting import activity_label, duration, rounded_shares
from wan_otel.report.model import Report
from wan_otel.report.svg_axis import GUTTER, PLOT_WIDTH, WIDTH, Axis, esc, px
from wan_otel.report.timeline import Timeline
from wan_otel.report.timeline_svg import COLORS, axis_labels

SM_FILL = "#9fd8cb"
"""Area under a one-GPU run's SM activity."""
RANK_COLORS = ("#1b8a74", "#7b4fa0", "#c8553d", "#2f6db3", "#8a7a1b", "#b0407a", "#3d8c3d", "#555")
"""SM line of each rank (rank k: ``RANK_COLORS[k % 8]``)."""
MEMORY_COLORS = {
    "allocated-peak": "#c6d9ee",
    "allocated": "#2e5f8f",
    "reserved": "#f28e2b",
    "used": "#6b6b6b",
}
SM_HEIGHT = 96
MEMORY_HEIGHT = 84
PANEL_GAP = 18
LEGEND = 18
NICE = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)


def nice_top(value: float) -> float:
    """The smallest round number (``NICE`` x 10^k) at or above ``value``: a scale's top."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(f * power for f in NICE if f * power >= value * (1 - 1e-9))


def _y(value: float, top: float, height: float, scale: float) -> float:
    return top + height * (1 - min(value, scale) / scale) if scale > 0 else top + height


def _scale(top: float, height: float, labels: Sequence[tuple[float, str]], scale: float) -> str:
    """Horizontal guides with their values in the gutter."""
    out = []
    for value, text in labels:
        y = px(_y(value, top, height, scale))
        out.append(f'<path class="guide" d="M{GUTTER} {y}H{GUTTER + PLOT_WIDTH}"/>')
        out.append(f'<text class="scale" x="{GUTTER - 6}" y="{y}">{esc(text)}</text>')
    return "".join(out)


def _legend(items: Sequence[tuple[str, str]], y: float) -> str:
    out, x = [], GUTTER
    for color, text in items:
        out.append(f'<rect x="{x}" y="{px(y - 9)}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text class="legend" x="{x + 14}" y="{px(y)}">{esc(text)}</text>')
        x += 24 + int(6.2 * len(text))
    return f'<g class="legend">{"".join(out)}</g>'


def _sm_path(windows: Sequence[tuple[int, int, float]], axis: Axis, top: float, fill: bool) -> str:
    """The windows' means as steps; where samples stop and start again, a new shape."""
    base = px(top + SM_HEIGHT)
    d: list[str] = []
    last_x: float | None = None
    for start, end, pct in windows:
        x0, x1, y = axis.x(start), axis.x(end), px(_y(pct, top, SM_HEIGHT, 100.0))
        if last_x is None or abs(x0 - last_x) > 0.05:
            if last_x is not None and fill:
                d.append(f"V{base}Z")
            d.append(f"M{px(x0)} {base}V{y}" if fill else f"M{px(x0)} {y}")
        else:
            d.append(f"V{y}")
        d.append(f"H{px(x1)}")
        last_x = x1
    if last_x is not None and fill:
        d.append(f"V{base}Z")
    return "".join(d)


def sm_svg(tl: Timeline, axis: Axis | None = None, prefix: str = "") -> str:
    """SM activity of every rank's GPU, 0 to 100 %, on the timeline's axis (or ``axis``)."""
    axis = axis or Axis(tl.origin_ns, tl.duration_ns)
    top = 6.0
    label = activity_label(tl.sm_source, title_case=True)
    parts = [
        axis.grid(top + SM_HEIGHT),
        _scale(top, SM_HEIGHT, ((0, "0%"), (50, "50%"), (100, "100%")), 100.0),
    ]
    parts.append(f'<text class="chart-title" x="4" y="{top + 12}">{esc(label)}</text>')
    legend = []
    one = len(tl.ranks) == 1
    for view in tl.ranks:
        color = RANK_COLORS[view.rank % len(RANK_COLORS)]
        if not view.sm:
            continue
        if one:
            parts.append(
                f'<path class="sm-area" fill="{SM_FILL}" d="{_sm_path(view.sm, axis, top, True)}"/>'
            )
        parts.append(
            f'<path class="sm-line" stroke="{color}" d="{_sm_path(view.sm, axis, top, False)}"/>'
        )
        legend.append((color, view.title))
    if not legend:
        parts.append(
            f'<text class="empty" x="{GUTTER + 8}" y="{top + SM_HEIGHT / 2}">'
            "no GPU samples for this run: no SM activity to draw</text>"
        )
    height = top + SM_HEIGHT + 20
    parts.append(axis_labels(axis, int(height - 6)))
    if not one and legend:
        parts.append(_legend(legend, height + 12))
        height += LEGEND
    return _figure(f"{prefix}sm-chart", f"{label} over time", height, parts)


def _memory_panel(
    view_index: int, tl: Timeline, axis: Axis, top: float, scale: float, prefix: str
) -> str:
    view = tl.ranks[view_index]
    mem = view.memory
    base = px(top + MEMORY_HEIGHT)

    def y(gib: float) -> str:
        return px(_y(gib, top, MEMORY_HEIGHT, scale))

    guides = [(0.0, "0"), (scale / 2, f"{scale / 2:g} GiB"), (scale, f"{scale:g} GiB")]
    parts = [_scale(top, MEMORY_HEIGHT, guides, scale)]
    title = f"Memory, rank {view.rank}" if len(tl.ranks) > 1 else "Memory"
    parts.append(
        f'<text class="chart-title" x="4" y="{px(top + MEMORY_HEIGHT / 2)}">{esc(title)}</text>'
    )
    peaks = "".join(
        f"M{px(axis.x(a))} {base}V{y(g)}H{px(axis.x(b))}V{base}Z" for a, b, g in mem.allocated_peaks
    )
    reserved = "".join(f"M{px(axis.x(a))} {y(g)}H{px(axis.x(b))}" for a, b, g in mem.reserved_peaks)
    parts.append(f'<path class="mem-peak" fill="{MEMORY_COLORS["allocated-peak"]}" d="{peaks}"/>')
    parts.append(
        f'<path class="mem-reserved" stroke="{MEMORY_COLORS["reserved"]}" d="{reserved}"/>'
    )
    # What the allocator held between two readings is not known: the last reading holds.
    held = "".join(
        f"M{px(axis.x(t))} {y(g)}" if i == 0 else f"H{px(axis.x(t))}V{y(g)}"
        for i, (t, g) in enumerate(mem.allocated)
    )
    used = "".join(
        f"{'M' if i == 0 else 'L'}{px(axis.x(t))} {y(g)}" for i, (t, g) in enumerate(mem.used)
    )
    parts.append(f'<path class="mem-allocated" stroke="{MEMORY_COLORS["allocated"]}" d="{held}"/>')
    parts.append(f'<path class="mem-used" stroke="{MEMORY_COLORS["used"]}" d="{used}"/>')
    return f'<g class="memory-panel" id="{prefix}memory-rank-{view.rank}">{"".join(parts)}</g>'


def memory_svg(
    tl: Timeline, axis: Axis | None = None, prefix: str = "", top_gib: float | None = None
) -> str:
    """Memory of every rank's GPU, one panel per rank, on one scale and the timeline's axis."""
    axis = axis or Axis(tl.origin_ns, tl.duration_ns)
    if top_gib is None:
        top_gib = max((v.memory.top_gib() for v in tl.ranks), default=0.0)
    scale = nice_top(top_gib * 1.05)
    parts, top = [], 8.0
    panels = []
    for i in range(len(tl.ranks)):
        panels.append(_memory_panel(i, tl, axis, top, scale, prefix))
        top += MEMORY_HEIGHT + PANEL_GAP
    parts.append(axis.grid(top - PANEL_GAP))
    parts += panels
    height = top - PANEL_GAP + 20
    parts.append(axis_labels(axis, int(height - 6)))
    parts.append(
        _legend(
            [
                (MEMORY_COLORS["allocated-peak"], "allocated peak (spans)"),
                (MEMORY_COLORS["allocated"], "allocated (spans)"),
                (MEMORY_COLORS["reserved"], "reserved peak (spans)"),
                (MEMORY_COLORS["used"], "used on the device (GPU samples)"),
            ],
            height + 12,
        )
    )
    return _figure(f"{prefix}memory-chart", "memory over time", height + LEGEND, parts)


def breakdown_svg(r: Report, prefix: str = "", scale_s: float | None = None) -> str:
    """The latency breakdown: one bar, a segment per stage in run order, shares as printed
    in the text report (largest remainder). With ``scale_s`` the whole plot is that many
    seconds (two runs compared: the shorter run's bar is shorter)."""
    full = float(PLOT_WIDTH)
    if scale_s and r.summary.total_s > 0:
        full = PLOT_WIDTH * min(1.0, r.summary.total_s / scale_s)
    shares = rounded_shares([st.share_pct for st in r.stages])
    parts, x = [], float(GUTTER)
    legend = []
    for st, share in zip(r.stages, shares, strict=True):
        if st.duration_s is None or st.share_pct is None or share is None:
            continue
        color = COLORS.get(st.key, COLORS["other"])
        w = full * st.share_pct / 100.0
        tip = f"{st.label}: {duration(st.duration_s)} ({share:.1f}%)"
        if st.sm_pct is not None:
            tip += f", {activity_label(r.summary.sm_source)} {st.sm_pct:.1f}%"
        parts.append(
            f'<rect class="segment c-{st.key}" x="{px(x)}" y="4" width="{px(w)}" height="26">'
            f"<title>{esc(tip)}</title></rect>"
        )
        text = f"{st.label} {share:.1f}%"
        if w > 6.2 * len(text) + 8:
            parts.append(f'<text class="lbl" x="{px(x + 4)}" y="21">{esc(text)}</text>')
        legend.append((color, f"{st.label} {duration(st.duration_s)} ({share:.1f}%)"))
        x += w
    parts.append(
        f'<text class="chart-title" x="4" y="21">Total {duration(r.summary.total_s)}</text>'
    )
    rows = [legend[i : i + 4] for i in range(0, len(legend), 4)]
    for k, row in enumerate(rows):
        parts.append(_legend(row, 50 + k * LEGEND))
    return _figure(f"{prefix}breakdown-bar", "latency breakdown", 40 + LEGEND * len(rows), parts)


def _figure(ident: str, label: str, height: float, parts: Sequence[str]) -> str:
    return (
        f'<svg id="{ident}" class="figure" viewBox="0 0 {WIDTH} {px(height)}" role="img" '
        f'aria-label="{esc(label)}">{"".join(parts)}</svg>'
    )
