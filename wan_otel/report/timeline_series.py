"""A rank's GPU series on the run's timeline: SM activity as windowed means of the cumulative
counter, memory allocated and reserved from the spans, memory used from the GPU samples."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from wan_otel import semconv as sc
from wan_otel.report.sm import SmSeries
from wan_otel.report.spans import RunTree, attr_gib
from wan_otel.store.otlp_json import SpanRecord
from wan_otel.store.samples import GpuSample

GIB = float(1 << 30)

Window = tuple[int, int]
"""(start ns, end ns) of the run's timeline."""


def sm_points(
    sm: SmSeries, window: Window, points: int, min_intervals: int = 1
) -> list[tuple[int, int, float]]:
    """SM activity (percent) over consecutive windows covering the samples inside ``window``.

    Each window is a run of whole sample intervals, so its mean is exact (the counter's
    difference over it): at least ``min_intervals`` of them (a GPM reading can repeat for one
    sample and double the next, which reads as 0 % then 100 %), and enough that there are at
    most ``points`` windows."""
    series = sm.series
    if series is None or len(series) < 2:
        return []
    lo, hi = window
    times, values = series.times, series.values
    first = max(0, bisect.bisect_right(times, lo) - 1)
    last = min(len(times) - 1, bisect.bisect_left(times, hi))
    per = max(min_intervals, 1, -(-(last - first) // max(points, 1)))
    out: list[tuple[int, int, float]] = []
    for i in range(first, last, per):
        j = min(i + per, last)
        t0, t1 = times[i], times[j]
        pct = 100.0 * (values[j] - values[i]) / ((t1 - t0) / 1e9)
        start, end = max(t0, lo), min(t1, hi)
        if end > start:
            out.append((start, end, min(max(pct, 0.0), 100.0)))
    return out


@dataclass(frozen=True)
class MemorySeries:
    """GiB over time. The allocator's figures come from the spans: the current allocation at
    each span's start and end, and the peaks of the innermost spans that carry one (a parent's
    peak is one of its children's, or lies between them); the device's from the samples."""

    allocated: list[tuple[int, float]]
    """(time, GiB allocated) at every span start and end."""
    allocated_peaks: list[tuple[int, int, float]]
    """(start, end, peak GiB allocated) of the innermost spans with a peak."""
    reserved_peaks: list[tuple[int, int, float]]
    """(start, end, peak GiB reserved by the caching allocator) of the same spans."""
    reserved: list[tuple[int, float]]
    """(time, GiB reserved by the caching allocator) at every span end."""
    used: list[tuple[int, float]]
    """(time, GiB used on the device) from the GPU samples of the rank's GPU."""

    def top_gib(self) -> float:
        values = [v for _, v in self.allocated] + [v for _, v in self.used]
        values += [v for *_, v in self.allocated_peaks] + [v for *_, v in self.reserved_peaks]
        return max(values, default=0.0)


def _leaves(tree: RunTree, key: str) -> list[SpanRecord]:
    """Spans carrying ``key`` none of whose children carries it."""
    return [
        s
        for s in tree.spans
        if key in s.attributes and not any(key in k.attributes for k in tree.kids(s))
    ]


def _peaks(tree: RunTree, key: str) -> list[tuple[int, int, float]]:
    found = [
        (s.start_ns, s.end_ns, gib)
        for s in _leaves(tree, key)
        if (gib := attr_gib(s, key)) is not None
    ]
    return sorted(found)


def _used(
    samples: Sequence[GpuSample], uuid: str | None, window: Window, points: int
) -> list[tuple[int, float]]:
    """The rank's GPU memory used, at most about ``points`` values: where there are more
    samples, the largest of each stretch (a peak must not vanish in the drawing)."""
    lo, hi = window
    mine = [
        (s.t_ns, s.memory_used_bytes / GIB)
        for s in samples
        if s.uuid == uuid and s.memory_used_bytes is not None and lo <= s.t_ns <= hi
    ]
    mine.sort()
    if len(mine) <= points:
        return mine
    width = (hi - lo) / points
    best: dict[int, tuple[int, float]] = {}
    for t, gib in mine:
        k = int((t - lo) / width)
        if k not in best or gib > best[k][1]:
            best[k] = (t, gib)
    return [best[k] for k in sorted(best)]


def memory_series(
    tree: RunTree, samples: Sequence[GpuSample], uuid: str | None, window: Window, points: int
) -> MemorySeries:
    allocated, reserved = [], []
    for span in tree.spans:
        held = attr_gib(span, sc.MEMORY_RESERVED_END)
        if held is not None:
            reserved.append((span.end_ns, held))
        start = attr_gib(span, sc.MEMORY_ALLOCATED_START)
        end = attr_gib(span, sc.MEMORY_ALLOCATED_END)
        if start is not None:
            allocated.append((span.start_ns, start))
        if end is not None:
            allocated.append((span.end_ns, end))
    allocated.sort()
    reserved.sort()
    return MemorySeries(
        allocated=allocated,
        allocated_peaks=_peaks(tree, sc.MEMORY_ALLOCATED_PEAK),
        reserved_peaks=_peaks(tree, sc.MEMORY_RESERVED_PEAK),
        reserved=reserved,
        used=_used(samples, uuid, window, points),
    )
