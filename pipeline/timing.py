"""Timelines: marks taken at span boundaries, resolved to Unix-epoch nanoseconds after the run.

GPU work is asynchronous: the host clock at a hook tells when work was *queued*, not when the
GPU ran it. On CUDA each mark records a CUDA event, which the GPU stamps when it reaches it in
the stream. Nothing reads the stamps until the generation is over; then ``resolve()`` makes the
one host synchronization, records an anchor event on the now idle GPU (it executes at once, so
its GPU time is the host time read right after it) and maps every event onto the host clock by
its elapsed time to the anchor. Hooks inside the denoising loop therefore add no host
synchronization. On a CPU the marks are host ``perf_counter_ns`` values mapped to the epoch.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any, Protocol

import torch

_log = logging.getLogger(__name__)

SOURCE_CUDA_EVENT = "cuda_event"
"""Value of ``semconv.TIMING_SOURCE`` when span windows come from CUDA events (GPU time)."""

SOURCE_HOST = "host"
"""Value of ``semconv.TIMING_SOURCE`` when span windows come from the host clock."""


class Timeline(Protocol):
    """Marks on one clock; ``time_ns`` is valid after ``resolve``."""

    @property
    def source(self) -> str: ...

    def mark(self, stream: Any = None) -> int: ...

    def resolve(self) -> None: ...

    def time_ns(self, mark: int) -> int: ...


class HostTimeline:
    """The host's monotonic clock, mapped to the epoch at construction."""

    source = SOURCE_HOST

    def __init__(self) -> None:
        # Read the two clocks back to back: epoch = epoch0 + (perf - perf0).
        self._epoch0 = time.time_ns()
        self._perf0 = time.perf_counter_ns()
        self._marks: list[int] = []

    def mark(self, stream: Any = None) -> int:
        self._marks.append(time.perf_counter_ns())
        return len(self._marks) - 1

    def resolve(self) -> None:
        return None

    def to_epoch(self, perf_ns: int) -> int:
        return self._epoch0 + (perf_ns - self._perf0)

    def time_ns(self, mark: int) -> int:
        return self.to_epoch(self._marks[mark])

    def host_perf_ns(self, mark: int) -> int:
        return self._marks[mark]


class CudaTimeline:
    """CUDA events on ``device``, with a host mark beside each as a fallback."""

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._host = HostTimeline()
        self._events: list[Any] = []
        self._resolved: list[int] | None = None
        self._source = SOURCE_CUDA_EVENT

    @property
    def source(self) -> str:
        return self._source

    def mark(self, stream: Any = None) -> int:
        event = _timing_event()
        # Record on the stream the work runs on (the device's current stream unless a side
        # stream, e.g. group offloading's copy stream, is named).
        event.record(stream if stream is not None else torch.cuda.current_stream(self._device))
        self._events.append(event)
        return self._host.mark()

    def resolve(self) -> None:
        if self._resolved is not None or not self._events:
            return
        try:
            # The one host synchronization of the generation, after the pipeline call.
            torch.cuda.synchronize(self._device)
            anchor = _timing_event()
            anchor.record(torch.cuda.current_stream(self._device))
            anchor.synchronize()
            anchor_epoch = self._host.to_epoch(time.perf_counter_ns())
            self._resolved = _chain(self._events, anchor, anchor_epoch)
        except Exception as exc:  # a CUDA error in the run can poison the events
            _log.warning("CUDA event times unavailable (%s); spans use the host clock", exc)
            self._source = SOURCE_HOST
            self._resolved = [self._host.time_ns(i) for i in range(len(self._events))]

    def time_ns(self, mark: int) -> int:
        if self._resolved is None:
            return self._host.time_ns(mark)
        return self._resolved[mark]


def _timing_event() -> Any:
    event_class: Any = torch.cuda.Event  # untyped in torch's stubs
    return event_class(enable_timing=True)


def _chain(events: list[Any], anchor: Any, anchor_ns: int) -> list[int]:
    """Epoch ns of each event. Elapsed times are float milliseconds; summing the short gaps
    between consecutive events (in double precision) keeps sub-microsecond resolution over a
    long run, where one elapsed time from the first event would lose it."""
    ordered = [*events, anchor]
    gaps = [a.elapsed_time(b) for a, b in itertools.pairwise(ordered)]
    times = [0] * len(events)
    to_anchor_ms = 0.0
    for i in range(len(events) - 1, -1, -1):
        to_anchor_ms += gaps[i]
        times[i] = anchor_ns - round(to_anchor_ms * 1e6)
    return times


def timeline_for(device: torch.device) -> Timeline:
    """CUDA events on a CUDA device, the host clock otherwise."""
    if device.type == "cuda" and torch.cuda.is_available():
        return CudaTimeline(device)
    return HostTimeline()
