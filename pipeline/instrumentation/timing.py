"""Timelines: marks taken at span boundaries, resolved to Unix-epoch nanoseconds.

GPU work is asynchronous: the host clock at a hook tells when work was *queued*, not when the
GPU ran it. On CUDA each mark records a CUDA event, which the GPU stamps when it reaches it in
the stream. Marks resolve while the run goes on, without any host synchronization: a mark whose
event the GPU has passed (``Event.query``) gets its time from the previous resolved mark plus
the elapsed time between the two events (summing short gaps keeps sub-microsecond resolution,
where one elapsed time from a distant event, a float in milliseconds, would lose it). The chain
starts at an anchor: an event recorded on an idle side stream, which the GPU stamps at once, so
its GPU time is the host time read around it; a new anchor every ``ANCHOR_EVERY_S`` keeps the
GPU's clock from drifting away from the host's over a long run. ``resolve()`` after the
pipeline call makes the one synchronization and resolves the rest. On a CPU the marks are host
``perf_counter_ns`` values mapped to the epoch.
"""

from __future__ import annotations

import logging
import threading
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

    def resolved(self, mark: int) -> int | None:
        """The mark's epoch ns if known now (never waits), else None."""
        ...

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

    def resolved(self, mark: int) -> int | None:
        return self.time_ns(mark)

    def resolve(self) -> None:
        return None

    def to_epoch(self, perf_ns: int) -> int:
        return self._epoch0 + (perf_ns - self._perf0)

    def time_ns(self, mark: int) -> int:
        return self.to_epoch(self._marks[mark])


ANCHOR_EVERY_S = 10.0
"""How often the chain of event times is re-anchored to the host clock."""


class CudaTimeline:
    """CUDA events on ``device``, with a host mark beside each as a fallback."""

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._host = HostTimeline()
        self._events: list[Any] = []
        self._times: list[int] = []
        self._lock = threading.Lock()
        self._source = SOURCE_CUDA_EVENT
        stream_class: Any = torch.cuda.Stream  # untyped in torch's stubs
        self._side = stream_class(device)
        self._failed = False
        self._base = self._anchor()
        self._anchored_s = time.monotonic()

    @property
    def source(self) -> str:
        return self._source

    def _anchor(self) -> tuple[Any, int]:
        """An event the GPU stamps now (an idle side stream) and the host time it stands for."""
        event = _timing_event()
        before = time.perf_counter_ns()
        event.record(self._side)
        event.synchronize()  # waits for the side stream only: it has nothing else to run
        after = time.perf_counter_ns()
        return event, self._host.to_epoch((before + after) // 2)

    def mark(self, stream: Any = None) -> int:
        event = _timing_event()
        # Record on the stream the work runs on (the device's current stream unless a side
        # stream, e.g. group offloading's copy stream, is named).
        event.record(stream if stream is not None else torch.cuda.current_stream(self._device))
        self._events.append(event)
        return self._host.mark()

    def _advance(self, upto: int, wait: bool = False) -> None:
        """Resolve marks in order up to ``upto`` while the GPU has passed them."""
        with self._lock:
            if self._failed:
                return
            try:
                if not wait and time.monotonic() - self._anchored_s > ANCHOR_EVERY_S:
                    self._base, self._anchored_s = self._anchor(), time.monotonic()
                base_event, base_ns = self._base
                while len(self._times) <= upto:
                    event = self._events[len(self._times)]
                    if not wait and not event.query():
                        break
                    base_ns += round(base_event.elapsed_time(event) * 1e6)
                    base_event = event
                    self._times.append(base_ns)
                self._base = (base_event, base_ns)
            except Exception as exc:  # a CUDA error in the run can poison the events
                _log.warning("CUDA event times unavailable (%s); spans use the host clock", exc)
                self._failed = True
                self._source = SOURCE_HOST

    def resolved(self, mark: int) -> int | None:
        if mark >= len(self._times) and not self._failed:
            self._advance(mark)
        if self._failed:
            return self._host.time_ns(mark)
        return self._times[mark] if mark < len(self._times) else None

    def resolve(self) -> None:
        if len(self._times) >= len(self._events) or self._failed:
            return
        try:
            # The one host synchronization of the generation, after the pipeline call.
            torch.cuda.synchronize(self._device)
        except Exception as exc:
            _log.warning("CUDA event times unavailable (%s); spans use the host clock", exc)
            self._failed, self._source = True, SOURCE_HOST
            return
        self._advance(len(self._events) - 1, wait=True)

    def time_ns(self, mark: int) -> int:
        value = self.resolved(mark)
        return value if value is not None else self._host.time_ns(mark)


def _timing_event() -> Any:
    event_class: Any = torch.cuda.Event  # untyped in torch's stubs
    return event_class(enable_timing=True)


def timeline_for(device: torch.device) -> Timeline:
    """CUDA events on a CUDA device, the host clock otherwise."""
    if device.type == "cuda" and torch.cuda.is_available():
        return CudaTimeline(device)
    return HostTimeline()
