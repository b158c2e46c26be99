"""Render a comparison of two runs (``wan-otel compare``) as one self-contained HTML page:
the figures side by side with their verdicts, then both runs' timelines, SM activity, memory
and latency breakdowns on one time axis and one memory scale, so that lengths compare."""

from __future__ import annotations

from wan_otel.report.charts_svg import breakdown_svg, memory_svg, sm_svg
from wan_otel.report.comparison import Comparison
from wan_otel.report.model import Report

# The comparison's cells print as in its text and Markdown renderings.
from wan_otel.report.render_compare import cell_change, cell_value, cell_verdict, verdict_line
from wan_otel.report.render_html import (
    CHART_POINTS,
    SM_MIN_INTERVALS,
    color_key_text,
    html_page,
    section,
)
from wan_otel.report.svg_axis import Axis, esc
from wan_otel.report.timeline import Timeline, build_timeline
from wan_otel.report.timeline_svg import timeline_svg
from wan_otel.store.run_store import RunData


def _table(c: Comparison) -> str:
    rows = []
    for row in c.rows:
        cls = "regression" if row.regression else "improved" if row.improved else ""
        cells = (cell_value(row, row.a), cell_value(row, row.b), cell_change(row))
        numbers = "".join(f'<td class="num">{esc(v)}</td>' for v in cells)
        opening = f'<tr class="{cls}">' if cls else "<tr>"
        rows.append(
            f"{opening}<td>{esc(row.label)}</td>{numbers}<td>{esc(cell_verdict(row))}</td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("Figure", "A", "B", "Change", "Verdict"))
    return (
        f'<table class="data comparison"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _header(c: Comparison) -> str:
    failed = bool(c.regressions) or c.status_regressed
    runs = "".join(
        f'<div class="run">Run {name}: <code>{esc(run)}</code>, status '
        f'<span class="status{"" if status == "ok" else " bad"}">{esc(status)}</span></div>'
        for name, run, status in (("A", c.run_a, c.status_a), ("B", c.run_b, c.status_b))
    )
    same = ", ".join(f"{k} {v}" for k, v in c.config_a.items() if c.config_b.get(k) == v)
    differ = (
        f"<p>Differ (compared with --force): {esc('; '.join(c.differences))}</p>"
        if c.differences
        else ""
    )
    return (
        f"<header><h1>wan-otel compare: run B against run A</h1>{runs}</header>"
        f'<p class="verdict"><span class="status{" bad" if failed else ""}">'
        f"{esc(verdict_line(c))}</span></p><p>Same: {esc(same or 'nothing')}</p>{differ}"
        f"<p>Tolerance {c.tolerance_pct:g}%: B worse than A by more than this, and by more "
        "than the noise floor, is a regression.</p>"
    )


def _run_figures(name: str, report: Report, tl: Timeline, duration_ns: int, top_gib: float) -> str:
    axis = Axis(tl.origin_ns, duration_ns)
    prefix = f"{name.lower()}-"
    return (
        f"<h3>Run {name}: {esc(report.run_id)}</h3>"
        + timeline_svg(tl, axis, prefix)
        + sm_svg(tl, axis, prefix)
        + memory_svg(tl, axis, prefix, top_gib)
    )


def render_compare_html(c: Comparison, a: tuple[Report, RunData], b: tuple[Report, RunData]) -> str:
    """The page of ``c``, with both runs' figures: (Report, RunData) of run A and of run B."""
    timelines = [build_timeline(run, CHART_POINTS, SM_MIN_INTERVALS) for _, run in (a, b)]
    duration_ns = max(tl.duration_ns for tl in timelines)
    top_gib = max(v.memory.top_gib() for tl in timelines for v in tl.ranks)
    figures = "".join(
        _run_figures(name, report, tl, duration_ns, top_gib)
        for name, (report, _), tl in zip("AB", (a, b), timelines, strict=True)
    )
    longest = max(a[0].summary.total_s, b[0].summary.total_s)
    bars = "".join(
        f"<h3>Run {name}: {esc(report.run_id)}</h3>"
        + breakdown_svg(report, f"{name.lower()}-", longest)
        for name, (report, _) in zip("AB", (a, b), strict=True)
    )
    body = [
        _header(c),
        section("comparison", "Figures", _table(c)),
        section(
            "timelines",
            "Timelines (one time axis: 0 s is each run's first span)",
            color_key_text() + figures,
        ),
        section("breakdowns", "Latency breakdown (one scale)", bars),
    ]
    return html_page(f"wan-otel compare: {c.run_b} against {c.run_a}", "\n".join(body))
