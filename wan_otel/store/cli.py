"""``wan-otel runs``: the runs in the local store, one line each, newest first."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from wan_otel import semconv as sc
from wan_otel.errors import WanOtelError
from wan_otel.report.build import iso_time
from wan_otel.report.spans import attr_int, attr_str
from wan_otel.store.otlp_json import STATUS_ERROR
from wan_otel.store.run_store import SPANS_FILE, STORE_ENV, RunStore, default_store_root, read_spans


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help=f"run store folder (default ${STORE_ENV} or ./wan-otel-runs)",
    )


def _from_spans(store: RunStore, run_id: str) -> dict[str, Any]:
    """A summary for a run whose ``run.json`` is missing (it never ended): read its spans."""
    path = store.run_dir(run_id) / SPANS_FILE
    if not path.is_file():  # a run in progress: only GPU samples (or nothing) written yet
        return {"run_id": run_id, "start_ns": 0, "status": "no spans yet"}
    spans = read_spans(path, [])
    mine = [s for s in spans if s.attributes.get(sc.RUN_ID) == run_id]
    roots = [s for s in mine if s.name == sc.SPAN_GENERATE]
    if not mine:
        return {"run_id": run_id, "start_ns": 0, "status": "empty"}
    if roots:
        root = roots[-1]
        width, height = attr_int(root, sc.REQUEST_WIDTH), attr_int(root, sc.REQUEST_HEIGHT)
        return {
            "run_id": run_id,
            "start_ns": root.start_ns,
            "model": attr_str(root, sc.MODEL_NAME),
            "resolution": f"{width}x{height}" if width and height else None,
            "num_frames": attr_int(root, sc.REQUEST_NUM_FRAMES),
            "num_steps": attr_int(root, sc.REQUEST_NUM_STEPS),
            "total_s": root.duration_s,
            "status": "error" if root.status_code == STATUS_ERROR else "ok",
        }
    start, end = min(s.start_ns for s in mine), max(s.end_ns for s in mine)
    return {
        "run_id": run_id,
        "start_ns": start,
        "total_s": (end - start) / 1e9,
        "status": "incomplete",
    }


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def main(args: argparse.Namespace) -> int:
    store = RunStore(args.store or default_store_root())
    if not store.root.is_dir():
        raise WanOtelError(f"run store {store.root} does not exist (set --store or {STORE_ENV})")
    rows = []
    for run_id in store.run_ids():
        summary = store.summary(run_id) or _from_spans(store, run_id)
        rows.append(summary)
    rows.sort(key=lambda r: (int(r.get("start_ns") or 0), str(r.get("run_id"))), reverse=True)
    out = sys.stdout
    out.write(
        f"{'RUN ID':<36} {'STARTED (UTC)':<20} {'MODEL':<16} {'SIZE':>9} {'FRAMES':>6} "
        f"{'STEPS':>5} {'TOTAL S':>9} STATUS\n"
    )
    for r in rows:
        total = r.get("total_s")
        started = iso_time(int(r["start_ns"])) if r.get("start_ns") else "-"
        out.write(
            f"{_cell(r.get('run_id')):<36} {started:<20} {_cell(r.get('model')):<16} "
            f"{_cell(r.get('resolution')):>9} {_cell(r.get('num_frames')):>6} "
            f"{_cell(r.get('num_steps')):>5} "
            f"{(f'{total:.2f}' if isinstance(total, (int, float)) else '-'):>9} "
            f"{_cell(r.get('status'))}\n"
        )
    if not rows:
        out.write(f"(no runs in {store.root})\n")
    return 0
