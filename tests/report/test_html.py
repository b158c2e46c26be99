"""The HTML report: one self-contained page with the summary, the timeline of the span tree
(a lane group per rank), SM activity and memory on the same axis, the latency breakdown and
the trace table. Opened in headless Chromium, whose screenshot must show the figures."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image

from benchmarks.report_store import run_template, write_run
from tests.report.helpers import run_cli
from tests.report.multirank import Plan, write_parallel_run
from wan_otel import semconv as sc
from wan_otel.report import build_report
from wan_otel.report.charts_svg import MEMORY_COLORS, SM_FILL
from wan_otel.report.comparison import Comparison, compare
from wan_otel.report.render_compare_html import render_compare_html
from wan_otel.report.render_html import render_html
from wan_otel.report.svg_axis import Axis
from wan_otel.report.timeline import build_timeline
from wan_otel.report.timeline_svg import COLORS
from wan_otel.store import RunStore

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "runs"
ULYSSES = "h200-ti2v-5b-random-ulysses2-10steps-20261128T235018Z"
A14B_OFFLOAD = "h200-t2v-a14b-random-model-4steps-20261128T233252Z"
GOLDEN = Path(__file__).parent / "golden" / "html-outline"
UPDATE = os.environ.get("WAN_OTEL_UPDATE_GOLDEN") == "1"
BROWSER_TIMEOUT_S = 90
MAX_PAGE_BYTES = 2 * 1024 * 1024


def _page(store: Path, run_id: str) -> str:
    run = RunStore(store).read(run_id)
    return render_html(build_report(run), run)


# --------------------------------------------------------------------------- page structure


class _Outline(HTMLParser):
    """Counts of elements (tag and classes) under each element with an id."""

    VOID: ClassVar[set[str]] = {"meta", "br", "img", "input", "link", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str | None]] = []
        self.order: list[str] = []
        self.counts: dict[str, Counter[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        owner = next((i for _, i in reversed(self.stack) if i is not None), "(page)")
        classes = "".join(f".{c}" for c in sorted((found.get("class") or "").split()))
        self.counts.setdefault(owner, Counter())[f"{tag}{classes}"] += 1
        ident = found.get("id")
        if ident is not None:
            key = f"{tag}#{ident}"
            self.order.append(key)
            self.counts.setdefault(key, Counter())
        if tag not in self.VOID:
            self.stack.append((tag, None if ident is None else f"{tag}#{ident}"))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def text(self) -> str:
        lines = []
        for key in ["(page)", *self.order]:
            lines.append(key)
            lines += [f"  {name} x{n}" for name, n in sorted(self.counts.get(key, {}).items())]
        return "\n".join(lines) + "\n"


def outline(page: str) -> str:
    parser = _Outline()
    parser.feed(page)
    return parser.text()


def _golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8")


def test_reference_page_outline_is_golden(reference_store: Path, reference_run_id: str) -> None:
    _golden("reference-l40s.txt", outline(_page(reference_store, reference_run_id)))


def test_two_gpu_page_outline_is_golden() -> None:
    page = _page(EXAMPLES, ULYSSES)
    _golden("ulysses2.txt", outline(page))
    # One lane group per rank, each with its collectives; the ranks table.
    assert 'id="rank-0"' in page and 'id="rank-1"' in page and 'id="ranks"' in page
    assert _spans_drawn(page, "coll") == 80


def _spans_drawn(page: str, color: str) -> int:
    """Spans drawn in bars of class ``c-<color>``: one a bar, or as many as a bar of
    gathered narrow spans says."""
    count = 0
    for tip in re.findall(rf'class="bar (?:gathered )?c-{color}[^"]*"[^>]*><title>([^<]*)', page):
        gathered = re.match(r"(\d+) \w+ too narrow", tip)
        count += int(gathered[1]) if gathered else 1
    return count


def test_page_fetches_nothing(reference_store: Path, reference_run_id: str) -> None:
    page = _page(reference_store, reference_run_id)
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    for fetching in ("<link", "<iframe", "<img", "@import", "url(", "src=", "@font-face"):
        assert fetching not in page.lower(), fetching
    assert "http://" not in page and "https://" not in page
    assert page.count("<style>") == 1 and page.count("<script>") == 1


def test_page_holds_the_reports_sections(reference_store: Path, reference_run_id: str) -> None:
    run = RunStore(reference_store).read(reference_run_id)
    report = build_report(run)
    page = render_html(report, run)
    for ident in ("summary", "timeline", "sm-chart", "memory-chart", "breakdown-bar", "trace"):
        assert f'id="{ident}"' in page, ident
    assert "593.45 s" in page and "74.2%" in page and "GPU Busy" in page
    # The trace table: every row of the report, in its order.
    names = re.findall(r'<tr class="d\d"><td>([^<]*)</td>', page)
    assert names == [row.name for row in report.trace]
    # The breakdown: a segment per stage that ran, plus the unattributed time, widths by share.
    widths = re.findall(r'<rect class="segment c-(\w+)" x="[\d.]+" y="4" width="([\d.]+)"', page)
    shares = {s.key: s.share_pct for s in report.stages if s.duration_s is not None}
    assert [k for k, _ in widths] == list(shares)
    total = sum(float(w) for _, w in widths)
    for key, width in widths:
        assert float(width) / total * 100 == pytest.approx(shares[key], abs=0.05)


# --------------------------------------------------------------------------- the timeline


@pytest.mark.parametrize("run_id", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()))
def test_lanes_nest_spans_without_overlap(run_id: str) -> None:
    """Every span is drawn once, in a lane below its parent's, and no two spans of a lane
    overlap (they would hide each other, and Perfetto's threads could not nest them)."""
    run = RunStore(EXAMPLES).read(run_id)
    tl = build_timeline(run, 600)
    drawn = [b.span.span_id for v in tl.ranks for b in v.bars]
    assert sorted(drawn) == sorted(s.span_id for s in run.spans)
    for view in tl.ranks:
        lane_of = {b.span.span_id: b.lane for b in view.bars}
        for bar in view.bars:
            parent = bar.span.parent_span_id
            if parent in lane_of:
                assert bar.lane > lane_of[parent]
        for lane in range(len(view.lanes)):
            mine = sorted((b.span.start_ns, b.span.end_ns) for b in view.bars if b.lane == lane)
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(mine))


def test_span_tooltips_carry_the_trace_tables_figures(
    reference_store: Path, reference_run_id: str
) -> None:
    run = RunStore(reference_store).read(reference_run_id)
    report = build_report(run)
    page = render_html(report, run)
    tips = re.findall(r'class="bar c-step\d"[^>]*><title>([^<]*)</title>', page)
    rows = [row for row in report.trace if row.name.startswith("Step ")]
    assert len(tips) == len(rows) == 30
    for tip, row in zip(tips, rows, strict=True):
        assert tip.startswith(f"{row.name} (wan.denoise.step)")
        assert f"GPU Busy {row.sm_pct:.1f}%" in tip
        assert f"peak {row.peak_mem_gb:.2f} GiB" in tip


def test_sm_windows_are_exact_means_of_the_counter(tmp_path: Path) -> None:
    """Each GPU works at its own fraction from its first step to the end of its VAE decode
    (tests/report/multirank.py): every window inside that stretch reads that fraction."""
    plan = Plan(sm=(0.92, 0.95))
    write_parallel_run(tmp_path, plan)
    tl = build_timeline(RunStore(tmp_path).read(plan.run_id), 600, 1)
    for view in tl.ranks:
        steps = [b.span for b in view.bars if b.kind == "step"]
        lo, hi = steps[0].start_ns, steps[-1].end_ns
        inside = [pct for a, b, pct in view.sm if lo <= a and b <= hi]
        assert len(inside) >= 15
        assert inside == pytest.approx([100 * plan.sm[view.rank]] * len(inside), abs=1e-6)


def test_memory_series_reach_the_reports_peaks() -> None:
    run = RunStore(EXAMPLES).read(ULYSSES)
    report = build_report(run)
    tl = build_timeline(run, 600)
    for view, line in zip(tl.ranks, report.ranks, strict=True):
        peak = max(g for *_, g in view.memory.allocated_peaks)
        assert peak == pytest.approx(line.peak_memory_gb, abs=1e-9)
        assert max(g for _, g in view.memory.used) > peak  # the driver holds the cache too
    assert report.memory.reserved_peak_gb == pytest.approx(
        max(g for *_, g in tl.ranks[0].memory.reserved_peaks), abs=1e-9
    )


def test_weight_transfers_are_drawn() -> None:
    page = _page(EXAMPLES, A14B_OFFLOAD)
    transfers = re.findall(r'class="bar c-xfer"[^>]*><title>([^<]*)</title>', page)
    assert len(transfers) == 11
    assert any("GiB" in tip and "/s" in tip for tip in transfers)
    assert page.count("bar c-lo0") + page.count("bar c-lo1") == 2  # the low-noise steps


def test_a_thousand_step_page_is_small_and_loses_no_span(tmp_path: Path) -> None:
    write_run(tmp_path, "long-1000", run_template(1000))
    page = _page(tmp_path, "long-1000")
    assert len(page.encode("utf-8")) < MAX_PAGE_BYTES
    assert len(re.findall(r'<tr class="d1"><td>Step \d+</td>', page)) == 1000
    # Steps narrower than a pixel are gathered; the bars still account for every step.
    assert _spans_drawn(page, r"step\d") == 1000
    assert _spans_drawn(page, "fwd") == 2000
    assert page.count("gathered") > 100


def test_a_failed_rank_is_outlined_and_its_error_shown(tmp_path: Path) -> None:
    plan = Plan(fail="raise", fail_rank=1)
    write_parallel_run(tmp_path, plan)
    page = _page(tmp_path, plan.run_id)
    assert 'id="error"' in page and 'class="status bad"' in page
    failed = re.findall(r'class="bar c-[\w-]+ err"[^>]*><title>([^<]*)</title>', page)
    assert any("ERROR RuntimeError: CUDA error" in tip for tip in failed)


def test_a_killed_ranks_stand_ins_are_marked(tmp_path: Path) -> None:
    plan = Plan(fail="kill", fail_rank=1)
    write_parallel_run(tmp_path, plan)
    page = _page(tmp_path, plan.run_id)
    # Its loop and its rank span never ended: both drawn as stand-ins over what it left.
    stand_ins = re.findall(r'class="bar c-[\w-]+ stand-in"[^>]*><title>([^<]*)</title>', page)
    assert sorted(t.split(" (")[0] for t in stand_ins) == ["Denoising", "Rank 1"]


def test_a_run_read_from_a_collector_file_renders_without_samples(
    reference_store: Path, reference_run_id: str, tmp_path: Path
) -> None:
    """The store's span files are OTLP JSON lines, as the Collector's file exporter writes:
    read through ``--traces``, the run has spans and no GPU samples."""
    spans = reference_store / reference_run_id / "spans.jsonl"
    out = tmp_path / "report.html"
    result = run_cli(
        "report",
        "--run-id",
        reference_run_id,
        "--traces",
        str(spans),
        "--format",
        "html",
        "-o",
        str(out),
    )
    assert (result.code, result.out, result.err) == (0, "", "")
    page = out.read_text(encoding="utf-8")
    assert page.count("bar c-step") == 30
    assert "no GPU samples for this run: no SM activity to draw" in page


def test_output_flag_errors_are_one_line(reference_store: Path, reference_run_id: str) -> None:
    base = ("report", "--run-id", reference_run_id, "--store", str(reference_store))
    result = run_cli(*base, "--format", "html", "-o", str(reference_store))
    assert result.code == 2 and result.err.count("\n") == 1 and "is a folder" in result.err
    result = run_cli(*base, "-o", str(reference_store / "missing" / "page.html"))
    assert result.code == 2 and result.err.count("\n") == 1 and "does not exist" in result.err


def test_axis_ticks_are_round_and_inside_the_plot() -> None:
    axis = Axis(0, int(593.45e9))
    ticks = axis.ticks()
    assert [label for _, label in ticks[:3]] == ["0 s", "50 s", "100 s"]
    assert len(ticks) == 12 and ticks[-1][1] == "550 s"
    assert Axis(0, int(0.5e9)).ticks()[1][1] == "0.05 s"


def test_element_ids_are_unique() -> None:
    page = _page(EXAMPLES, ULYSSES)
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids))


# --------------------------------------------------------------------------- two runs compared

H200_NONE = "h200-ti2v-5b-random-none-10steps-20261128T224324Z"
H200_MODEL = "h200-ti2v-5b-random-model-10steps-20261128T224324Z"


def _compare_page(run_a: str, run_b: str) -> tuple[str, Comparison]:
    store = RunStore(EXAMPLES)
    ra, rb = store.read(run_a), store.read(run_b)
    a, b = build_report(ra), build_report(rb)
    c = compare(a, b, 5.0, forced=True)
    return render_compare_html(c, (a, ra), (b, rb)), c


def _root_width(page: str, prefix: str) -> float:
    group = page[page.index(f'id="{prefix}rank-0"') :]
    match = re.search(r'<rect class="bar c-run" x="[\d.]+" y="\d+" width="([\d.]+)"', group)
    assert match, prefix
    return float(match[1])


def test_compared_runs_share_one_time_axis() -> None:
    """Run B (model offload) took 72.31 s, run A 37.63 s: on one axis A's root bar is that
    much shorter, and both timelines carry the same ticks."""
    page, c = _compare_page(H200_NONE, H200_MODEL)
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    for run in ("a", "b"):
        for figure in ("timeline", "sm-chart", "memory-chart", "breakdown-bar"):
            assert f'id="{run}-{figure}"' in page
    a_ticks, b_ticks = (
        page[page.index(f'id="{run}-timeline"') :].split('<g class="ticks">')[1].split("</g>")[0]
        for run in ("a", "b")
    )
    assert a_ticks == b_ticks
    totals = {row.key: (row.a, row.b) for row in c.rows}["total_s"]
    assert totals[0] is not None and totals[1] is not None
    ratio = _root_width(page, "a-") / _root_width(page, "b-")
    assert ratio == pytest.approx(totals[0] / totals[1], abs=0.002)


def test_compared_figures_flag_regressions() -> None:
    page, c = _compare_page(H200_NONE, H200_MODEL)
    assert c.regressions
    assert page.count('<tr class="regression">') == len(c.regressions)
    assert page.count('<tr class="improved">') == sum(r.improved for r in c.rows)
    assert "offload none -&gt; model" in page  # the configurations differ: forced
    assert "http://" not in page and "https://" not in page and "src=" not in page


# --------------------------------------------------------------------------- in a browser


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "no Chromium to open the page in: install Debian's chromium (apt-get install chromium)"
    )


def _run_browser(page: Path, *flags: str) -> str:
    """Headless Chromium on ``page``; its standard output. Chromium starts helper processes:
    they get a process group of their own, which is killed whatever happens."""
    command = [
        _browser(),
        "--headless",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-background-networking",
        f"--user-data-dir={page.parent / 'chromium-profile'}",
        *flags,
        page.as_uri(),
    ]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=BROWSER_TIMEOUT_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}"
    return out.decode("utf-8", errors="replace")


def screenshot(page: Path, png: Path, width: int, height: int) -> Image.Image:
    """The page as headless Chromium draws it at ``width`` x ``height``."""
    _run_browser(page, f"--window-size={width},{height}", f"--screenshot={png}")
    assert png.exists()
    return Image.open(png).convert("RGB")


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


class Shot:
    """Where colors lie in a screenshot."""

    def __init__(self, image: Image.Image) -> None:
        self.width, self.height = image.size
        self.pixels = image.load()

    def rows_with(self, color: str, least: int) -> list[tuple[int, int]]:
        """Bands (first row, last row) of consecutive rows holding ``least`` pixels of it."""
        want = _rgb(color)
        rows = [
            y
            for y in range(self.height)
            if sum(1 for x in range(0, self.width, 2) if self.pixels[x, y] == want) * 2 >= least
        ]
        bands: list[tuple[int, int]] = []
        for y in rows:
            if bands and y == bands[-1][1] + 1:
                bands[-1] = (bands[-1][0], y)
            else:
                bands.append((y, y))
        return bands

    def columns_with(self, color: str, y: int) -> tuple[int, int]:
        want = _rgb(color)
        xs = [x for x in range(self.width) if self.pixels[x, y] == want]
        return min(xs), max(xs)

    def count_in_column(self, color: str, x: int, top: int, bottom: int) -> int:
        want = _rgb(color)
        return sum(1 for y in range(top, bottom + 1) if self.pixels[x, y] == want)


def test_reference_page_draws_timeline_and_charts_in_chromium(
    reference_store: Path, reference_run_id: str, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    result = run_cli(
        "report",
        "--run-id",
        reference_run_id,
        "--store",
        str(reference_store),
        "--format",
        "html",
        "-o",
        str(page),
    )
    assert result.code == 0, result.err
    shot = Shot(screenshot(page, tmp_path / "shot.png", 1400, 1200))
    wide = shot.width // 3
    # The denoising stage: a wide bar in the timeline, and again in the latency breakdown.
    denoising = shot.rows_with(COLORS["denoising"], wide)
    assert len(denoising) == 2, denoising
    (stage_top, stage_bottom), (bar_top, _) = denoising
    # Its steps in the lane under it, in alternating shades.
    for shade in ("step0", "step1"):
        (band,) = shot.rows_with(COLORS[shade], 100)
        assert stage_bottom < band[0] < stage_bottom + 30
    # SM activity (GPU Busy) under the timeline and memory under that, above the breakdown.
    sm_bands = shot.rows_with(SM_FILL, 50)
    sm_top, sm_bottom = sm_bands[0][0], sm_bands[-1][1]
    memory_top = shot.rows_with(MEMORY_COLORS["allocated-peak"], 50)[0][0]
    assert stage_bottom < sm_top < sm_bottom < memory_top < bar_top
    # On the same time axis: under the middle of the denoising bar the GPU is busy (97 % in
    # the reference), under initialization it idles (0 %).
    x0, x1 = shot.columns_with(COLORS["denoising"], (stage_top + stage_bottom) // 2)
    height = sm_bottom - sm_top + 1
    busy = shot.count_in_column(SM_FILL, (x0 + x1) // 2, sm_top, sm_bottom)
    assert busy > 0.9 * height, (busy, height)
    init = shot.columns_with(COLORS["initialization"], (stage_top + stage_bottom) // 2)
    idle = shot.count_in_column(SM_FILL, (init[0] + init[1]) // 2, sm_top, sm_bottom)
    assert idle < 0.05 * height, (idle, height)


def test_two_gpu_page_draws_a_lane_group_per_rank_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    result = run_cli(
        "report",
        "--run-id",
        ULYSSES,
        "--store",
        str(EXAMPLES),
        "--format",
        "html",
        "-o",
        str(page),
    )
    assert result.code == 0, result.err
    shot = Shot(screenshot(page, tmp_path / "shot.png", 1400, 1300))
    # Rank 0's and rank 1's denoising stages, then the breakdown's: three bands.
    denoising = shot.rows_with(COLORS["denoising"], shot.width // 3)
    assert len(denoising) == 3, denoising
    # Collectives in both groups, between the first and the second stage bands and after.
    collectives = shot.rows_with(COLORS["coll"], 4)
    assert any(denoising[0][1] < top < denoising[1][0] for top, _ in collectives)
    assert any(denoising[1][1] < top < denoising[2][0] for top, _ in collectives)
    # Memory panels of both ranks under the timeline.
    assert len(shot.rows_with(MEMORY_COLORS["allocated-peak"], 200)) >= 2
    assert sc.SPAN_COLLECTIVE in page.read_text(encoding="utf-8")


def test_hover_script_runs_in_chromium(reference_store: Path, reference_run_id: str) -> None:
    """The page's script turns each figure's title into the text its hover box shows (the
    DOM after scripts ran: no title left in the figures, every bar carrying its figures)."""
    page = reference_store / "report.html"
    run = RunStore(reference_store).read(reference_run_id)
    page.write_text(render_html(build_report(run), run), encoding="utf-8")
    dom = _run_browser(page, "--dump-dom")
    figures = dom[dom.index('<svg id="timeline"') : dom.index('id="breakdown"')]
    assert "<title>" not in figures
    tips = re.findall(r'data-tip="(Step \d+) \(wan.denoise.step\)', figures)
    assert tips == [f"Step {i}" for i in range(30)]
