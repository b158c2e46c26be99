"""Render a Report and its run's timeline as one self-contained HTML page.

Everything is inline (styles, the SVG figures drawn here in Python, a few lines of script for
hover), nothing is fetched: the page opens from disk, as a mail attachment or a CI artifact.
Sections: the executive summary, the timeline of the span tree with a lane group per rank,
SM activity and memory on the same time axis, the latency breakdown as a bar, the ranks and
experts of multi-GPU and two-expert runs, memory, recommendations, the execution trace, notes.
"""

from __future__ import annotations

from wan_otel.report.build import iso_time
from wan_otel.report.charts_svg import breakdown_svg, memory_svg, sm_svg
from wan_otel.report.html_tables import (
    experts_table,
    memory_table,
    ranks_table,
    summary_table,
    system_table,
    trace_table,
)
from wan_otel.report.model import Report
from wan_otel.report.svg_axis import esc
from wan_otel.report.timeline import Timeline, build_timeline
from wan_otel.report.timeline_svg import COLORS, timeline_svg
from wan_otel.store.run_store import RunData

CHART_POINTS = 600
"""SM and memory values per rank: about two pixels each across the plot."""
SM_MIN_INTERVALS = 4
"""Sample intervals per SM window at least (0.4 s at the sampler's default 0.1 s)."""

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:#1f2328;margin:0 auto;padding:16px 24px;max-width:1400px;background:#fff}
h1{font-size:20px;margin:4px 0}h2{font-size:16px;margin:22px 0 8px;border-bottom:1px solid #d0d7de}
.run{color:#57606a}.status{font-weight:600;padding:1px 6px;border-radius:4px;background:#dafbe1}
.status.bad{background:#ffebe9;color:#a40e26}
.cols{display:flex;gap:24px;flex-wrap:wrap}.cols>div{flex:1 1 420px}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;border-bottom:1px solid #eaeef2;
text-align:left;vertical-align:top}th{background:#f6f8fa}.num{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}
.kv td:first-child{color:#57606a;white-space:nowrap}
.trace tr.d1 td:first-child{padding-left:22px}.trace tr.d2 td:first-child{padding-left:38px}
.trace tr.d3 td:first-child{padding-left:54px}
svg.figure{display:block;width:100%;height:auto;font-size:11px}
.grid path,.guide{stroke:#eaeef2;stroke-width:1;fill:none}
.ticks text{text-anchor:middle;fill:#57606a}
.lane-name,.scale{text-anchor:end;fill:#57606a}.scale{dominant-baseline:middle}
.rank-title,.chart-title{font-weight:600;fill:#1f2328}
.bar{stroke:#fff;stroke-width:.3}.bar.err{stroke:#d1242f;stroke-width:1.5}
.bar.stand-in{stroke:#57606a;stroke-dasharray:3 2;stroke-width:1}
.bar:hover,.segment:hover{stroke:#1f2328;stroke-width:1}
.lbl{fill:#1f2328;pointer-events:none;font-size:10px}
.sm-line,.mem-allocated,.mem-used,.mem-reserved{fill:none;stroke-width:1.3}
.mem-used{stroke-dasharray:4 2}.legend text{fill:#1f2328}.empty{fill:#57606a}
#tip{position:fixed;display:none;pointer-events:none;background:#1f2328;color:#fff;
font-size:12px;padding:6px 8px;border-radius:4px;white-space:pre;z-index:9;max-width:640px}
.swatch{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
tr.regression td{background:#ffebe9}tr.improved td{background:#dafbe1}
h3{font-size:14px;margin:14px 0 4px}
"""

_SCRIPT = """
(function(){var tip=document.getElementById('tip');
document.querySelectorAll('svg title').forEach(function(t){
t.parentNode.setAttribute('data-tip',t.textContent);t.remove();});
document.addEventListener('mousemove',function(e){
var el=e.target.closest?e.target.closest('[data-tip]'):null;
if(!el){tip.style.display='none';return;}
tip.textContent=el.getAttribute('data-tip');tip.style.display='block';
var x=e.clientX+14,y=e.clientY+14,w=tip.offsetWidth,h=tip.offsetHeight;
if(x+w>innerWidth)x=e.clientX-w-8;if(y+h>innerHeight)y=e.clientY-h-8;
tip.style.left=x+'px';tip.style.top=y+'px';});})();
"""


def _css() -> str:
    fills = "".join(f".c-{key}{{fill:{color}}}" for key, color in COLORS.items())
    return _STYLE + fills


def _header(r: Report) -> str:
    s = r.summary
    bad = "" if s.status == "ok" else " bad"
    return (
        f"<header><h1>{esc(r.title)}</h1>"
        f'<div class="run">Run <code>{esc(r.run_id)}</code>, started {iso_time(s.started_ns)}, '
        f'status <span class="status{bad}">{esc(s.status)}</span></div></header>'
    )


def section(ident: str, title: str, body: str) -> str:
    return f'<section id="{ident}"><h2>{esc(title)}</h2>{body}</section>'


def color_key_text() -> str:
    """What the bar colors mean."""
    items = (
        ("run", "run / rank"),
        ("initialization", "initialization"),
        ("text_encoding", "text encoding"),
        ("denoising", "denoising"),
        ("vae_decode", "VAE decode"),
        ("step0", "steps"),
        ("lo0", "low-noise expert's steps"),
        ("fwd", "transformer forwards"),
        ("xfer", "weight transfers"),
        ("coll", "collectives"),
    )
    swatches = "".join(
        f'<span class="swatch" style="background:{COLORS[key]}"></span>{esc(text)}'
        for key, text in items
    )
    return (
        f'<p class="key">{swatches}. Hover a bar for its figures; a bar outlined in red '
        "failed. Spans too narrow to draw apart are one bar that says how many. "
        "For zooming, open <code>--format perfetto</code> in Perfetto.</p>"
    )


def _timeline(tl: Timeline) -> str:
    return section(
        "timeline-section",
        "Timeline",
        color_key_text() + timeline_svg(tl) + sm_svg(tl) + memory_svg(tl),
    )


def render_html(report: Report, run: RunData) -> str:
    """The page for ``report``, built from ``run`` (its spans and GPU samples, from the store
    or from the backends)."""
    r = report
    tl = build_timeline(run, CHART_POINTS, SM_MIN_INTERVALS)
    parts = [
        _header(r),
        section(
            "summary",
            "Executive summary",
            f'<div class="cols"><div>{summary_table(r)}</div><div>{system_table(r)}</div></div>',
        ),
    ]
    if r.summary.error:
        parts.append(section("error", "Error", f"<pre>{esc(r.summary.error)}</pre>"))
    parts.append(_timeline(tl))
    parts.append(section("breakdown", "Latency breakdown", breakdown_svg(r)))
    if r.experts:
        parts.append(section("experts", "Experts", experts_table(r)))
    if r.ranks:
        parts.append(section("ranks", f"Ranks ({len(r.ranks)} GPUs)", ranks_table(r)))
    parts.append(section("memory", "Memory", memory_table(r)))
    recs = "".join(f"<li>{esc(rec.text)}</li>" for rec in r.recommendations)
    parts.append(
        section(
            "recommendations",
            "Recommendations",
            f"<ul>{recs}</ul>" if recs else "<p>None: no rule found anything to recommend.</p>",
        )
    )
    legend = (
        f"<p>{esc(r.summary.sm_note)}.</p>" if r.summary.sm_note else ""
    ) + "<p>Memory in GiB (torch allocator); Load = Time x SM % / 100 (SM-s).</p>"
    parts.append(section("trace", "Execution trace", trace_table(r) + legend))
    if r.notes:
        notes = "".join(f"<li>{esc(n)}</li>" for n in r.notes)
        parts.append(section("notes", "Notes", f"<ul>{notes}</ul>"))
    return html_page(f"{r.title} · {r.run_id}", "\n".join(parts))


def html_page(title: str, body: str) -> str:
    """A whole page around ``body``: the report's styles, the hover box and its script."""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<style>{_css()}</style></head>\n<body>\n{body}\n"
        f'<div id="tip"></div><script>{_SCRIPT}</script>\n</body></html>\n'
    )
