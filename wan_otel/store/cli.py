"""``wan-otel runs``: the runs in the local store, one line each, newest first."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wan_otel import semconv as sc
from wan_otel.errors import WanOtelError
from wan_otel.store.otlp_json import STATUS_ERROR
from wan_otel.store.run_store import STORE_ENV, RunStore, default_store_root
from wan_otel.store.summary import ERROR, OK, RunSummary, iso_time, summary_from_attributes

NO_SPANS = "no spans yet"
INCOMPLETE = "incomplete"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help=f"run store folder (default ${STORE_ENV} or ./wan-otel-runs)",
    )


def summary_from_spans(store: RunStore, run_id: str) -> RunSummary:
    """A summary for a run folder without ``run.json`` (written by an older wan-otel, or by
    hand): read from its spans."""
    try:
        data = store.read(run_id)
    except WanOtelError:
        return RunSummary(run_id, NO_SPANS)
    mine = [s for s in data.spans if s.attributes.get(sc.RUN_ID) == run_id]
    if not mine:
        return RunSummary(run_id, NO_SPANS)
    roots = [s for s in mine if s.name == sc.SPAN_GENERATE and s.parent_span_id is None]
    roots = roots or [s for s in mine if s.name == sc.SPAN_GENERATE]
    if roots:
        root = roots[-1]
        status = ERROR if root.status_code == STATUS_ERROR else OK
        return summary_from_attributes(run_id, root.attributes, root.start_ns, root.end_ns, status)
    start, end = min(s.start_ns for s in mine), max(s.end_ns for s in mine)
    return RunSummary(run_id, INCOMPLETE, start_ns=start, total_s=(end - start) / 1e9)


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def main(args: argparse.Namespace) -> int:
    store = RunStore(args.store or default_store_root())
    if not store.root.is_dir():
        raise WanOtelError(f"run store {store.root} does not exist (set --store or {STORE_ENV})")
    skipped: list[str] = []
    rows = []
    for run_id in store.run_ids(skipped):
        summary = store.summary(run_id) or summary_from_spans(store, run_id)
        rows.append(summary.seen_from())
    rows.sort(key=lambda r: (r.start_ns, r.run_id), reverse=True)
    out = sys.stdout
    out.write(
        f"{'RUN ID':<36} {'STARTED (UTC)':<20} {'MODEL':<16} {'SIZE':>9} {'FRAMES':>6} "
        f"{'STEPS':>5} {'TOTAL S':>9} STATUS\n"
    )
    for r in rows:
        started = iso_time(r.start_ns) if r.start_ns else "-"
        total = f"{r.total_s:.2f}" if r.total_s is not None else "-"
        status = r.status if r.detail is None else f"{r.status}: {r.detail}"
        out.write(
            f"{r.run_id:<36} {started:<20} {_cell(r.model):<16} {_cell(r.resolution):>9} "
            f"{_cell(r.num_frames):>6} {_cell(r.num_steps):>5} {total:>9} {status}\n"
        )
    if not rows:
        out.write(f"(no runs in {store.root})\n")
    for line in skipped:
        print(f"wan-otel: skipped {line}", file=sys.stderr)
    return 0
