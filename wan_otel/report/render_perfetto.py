"""Render a run as Chrome trace JSON (``traceEvents``) for Perfetto and chrome://tracing.

One process per rank (pid = rank + 1), one thread per lane of the timeline (a span never
overlaps another of its thread, so the viewers nest them as the span tree does), a complete
event (``"ph": "X"``) per span with its attributes as args, and counter events (``"ph":
"C"``) for the rank's GPU: SM activity (windowed means of the cumulative counter), memory
allocated and reserved (the torch allocator's readings on the spans) and used (the GPU
samples). Times are microseconds since the earliest span start; ``otherData`` holds the run
id and that time zero in Unix nanoseconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from wan_otel.report.model import Report
from wan_otel.report.spans import error_text
from wan_otel.report.timeline import Bar, RankView, Timeline, build_timeline
from wan_otel.store.otlp_json import AttrValue
from wan_otel.store.run_store import RunData

POINTS = 20_000
"""Counter values per series and rank, at most (about; the viewers zoom)."""
SM_MIN_INTERVALS = 2
"""Sample intervals per SM window at least: a GPM reading repeated for one sample and
doubled at the next would read as 0 % then 100 %."""
SM_COUNTER = "SM activity %"
MEMORY_COUNTERS = {
    "allocated": "memory allocated GiB",
    "reserved": "memory reserved GiB",
    "used": "memory used GiB",
}


def _json_value(value: AttrValue) -> Any:
    """An attribute as JSON: arrays as lists, non-finite numbers as text."""
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class _Clock:
    def __init__(self, origin_ns: int) -> None:
        self.origin_ns = origin_ns

    def us(self, t_ns: int) -> float:
        """Microseconds since time zero, to the nanosecond."""
        return round((t_ns - self.origin_ns) / 1e3, 3)


def _meta(pid: int, tid: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"ph": "M", "name": name, "pid": pid, "tid": tid, "ts": 0, "args": args}


def _span_event(bar: Bar, pid: int, clock: _Clock) -> dict[str, Any]:
    span = bar.span
    args: dict[str, Any] = {k: _json_value(v) for k, v in sorted(span.attributes.items())}
    args["span.name"] = span.name
    args["span.id"] = span.span_id
    if span.parent_span_id:
        args["span.parent_id"] = span.parent_span_id
    if bar.sm.pct is not None:
        args["sm_pct"] = round(bar.sm.pct, 2)
    error = error_text(span)
    if error:
        args["error"] = error
    if bar.stand_in:
        args["stand_in"] = "its span never ended; stood in for over its children"
    return {
        "ph": "X",
        "name": bar.label,
        "cat": bar.kind,
        "ts": clock.us(span.start_ns),
        "dur": max(0.0, round((span.end_ns - span.start_ns) / 1e3, 3)),
        "pid": pid,
        "tid": bar.lane + 1,
        "args": args,
    }


def _counter(
    name: str, unit: str, points: Sequence[tuple[int, float]], pid: int, clock: _Clock
) -> list[dict[str, Any]]:
    return [
        {
            "ph": "C",
            "name": name,
            "ts": clock.us(t),
            "pid": pid,
            "tid": 0,
            "args": {unit: round(v, 4)},
        }
        for t, v in points
    ]


def _rank_events(view: RankView, clock: _Clock) -> list[dict[str, Any]]:
    pid = view.rank + 1
    events = [
        _meta(pid, 0, "process_name", {"name": view.title}),
        _meta(pid, 0, "process_sort_index", {"sort_index": view.rank}),
    ]
    for lane, name in enumerate(view.lanes):
        events.append(_meta(pid, lane + 1, "thread_name", {"name": name}))
        events.append(_meta(pid, lane + 1, "thread_sort_index", {"sort_index": lane}))
    bars = sorted(view.bars, key=lambda b: (b.lane, b.span.start_ns, -b.span.end_ns))
    events += [_span_event(bar, pid, clock) for bar in bars]
    sm = [(start, pct) for start, _, pct in view.sm]
    if view.sm:
        sm.append((view.sm[-1][1], view.sm[-1][2]))  # the last window's value holds to its end
    events += _counter(SM_COUNTER, "%", sm, pid, clock)
    memory = view.memory
    for key, points in (
        ("allocated", memory.allocated),
        ("reserved", memory.reserved),
        ("used", memory.used),
    ):
        events += _counter(MEMORY_COUNTERS[key], "GiB", points, pid, clock)
    return events


def trace_events(tl: Timeline) -> list[dict[str, Any]]:
    clock = _Clock(tl.origin_ns)
    return [event for view in tl.ranks for event in _rank_events(view, clock)]


def render_perfetto(report: Report, run: RunData) -> str:
    """The run's Chrome trace JSON (one line)."""
    tl = build_timeline(run, POINTS, SM_MIN_INTERVALS)
    body = {
        "displayTimeUnit": "ms",
        "otherData": {
            "run_id": report.run_id,
            "title": report.title,
            "status": report.summary.status,
            "origin_unix_ns": str(tl.origin_ns),
            "sm_source": tl.sm_source or "none",
        },
        "traceEvents": trace_events(tl),
    }
    return json.dumps(body, separators=(",", ":"), allow_nan=False) + "\n"
