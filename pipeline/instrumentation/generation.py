"""One generation's span records: a tree built while the pipeline runs, streamed as spans.

Hooks open and close ``Record``s at boundaries, taking timeline marks (CUDA events on a GPU).
The generation's ``SpanStream`` turns records into OTel spans on a background thread once the
GPU has reached their marks (``span_stream.py``), so a run killed mid-way keeps its spans up
to its last completed step, and the denoising loop gains no host synchronization; ``finish``
resolves what is left with one synchronization after the pipeline call.

Records nest as a stack. Closing a record closes the records still open above it at the same
mark (an exception unwinding through them).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from wan_otel import semconv
from wan_otel.pipeline.instrumentation.guard import Guard
from wan_otel.pipeline.instrumentation.memory import CudaMemory, MemoryWindow
from wan_otel.pipeline.instrumentation.records import (
    MERGED_MOVES,
    AttributeValue,
    Record,
    merge_children,
)
from wan_otel.pipeline.instrumentation.timing import Timeline

__all__ = ["MERGED_MOVES", "AttributeValue", "Generation", "Listener", "Outcome", "Record"]


class Listener(Protocol):
    """Told about records as they open and close (the progress bar)."""

    def on_open(self, record: Record) -> None: ...

    def on_close(self, record: Record) -> None: ...


class Finisher(Protocol):
    """What runs when a generation ends: metrics."""

    def __call__(self, generation: Generation) -> None: ...


class Stream(Protocol):
    """Turns the generation's records into spans while it runs (``span_stream.SpanStream``)."""

    def attach(self, generation: Generation) -> None: ...

    def finish(self, generation: Generation) -> None: ...


@dataclass(frozen=True)
class OpenRecord:
    """A record an event source opened, to close when its event ends (a weight move)."""

    generation: Generation
    record: Record

    def close(self, error: BaseException | None, stream: Any = None) -> None:
        self.generation.close(self.record, error=error, stream=stream)


@dataclass
class Outcome:
    """How a finished generation went, for the caller."""

    run_id: str
    duration_s: float
    error_type: str | None


class Generation:
    """The record tree of one generation (one run), rooted at ``wan.pipeline.generate`` (or,
    on the other ranks of a multi-GPU run, ``wan.parallel.rank``)."""

    def __init__(
        self,
        timeline: Timeline,
        *,
        run_id: str,
        memory: CudaMemory | None = None,
        stream: Stream | None = None,
        finishers: Sequence[Finisher] = (),
        nvtx: bool = False,
        listeners: Sequence[Listener] = (),
        attributes: dict[str, AttributeValue] | None = None,
        guard: Guard | None = None,
        root_name: str = semconv.SPAN_GENERATE,
    ) -> None:
        self.timeline = timeline
        self.run_id = run_id
        self.guard = guard or Guard()
        self.thread_id = _thread_id()
        self._memory = memory
        self._finishers = list(finishers)
        self._nvtx = _nvtx_module() if nvtx else None
        self._listeners = list(listeners)
        self.outcome: Outcome | None = None
        self.lock = threading.Lock()
        """Held while the tree changes shape; the stream reads it under the same lock."""
        self.root = Record(root_name, None, timeline.mark(), dict(attributes or {}))
        self.records: list[Record] = [self.root]
        """Every record in the order it was opened (parents before their children)."""
        if memory is not None:
            self.root.memory = memory.open(())
        self._nvtx_start(self.root)
        self._stack: list[Record] = [self.root]
        self._stream = stream
        if stream is not None:
            stream.attach(self)

    # -- building -------------------------------------------------------------------------

    @property
    def top(self) -> Record:
        return self._stack[-1]

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    def is_open(self, record: Record) -> bool:
        return record in self._stack

    def open(
        self,
        name: str,
        attributes: dict[str, AttributeValue] | None = None,
        *,
        merge_key: tuple[str, ...] | None = None,
        stream: Any = None,
        notify: bool = True,
        at: int | None = None,
        provisional: bool = False,
        memory: bool = True,
        nvtx: bool = True,
    ) -> Record:
        """Open a record under the innermost open one. ``notify=False`` keeps listeners out of
        it; ``provisional``: it may be discarded while it has no children; ``at`` reuses a
        mark taken just before (a loop and its first step start together)."""
        parent = self._stack[-1]
        attrs = dict(attributes or {})
        step = parent.attributes.get(semconv.DENOISE_STEP)
        if step is not None and name != semconv.SPAN_DENOISE_STEP:
            attrs.setdefault(semconv.DENOISE_STEP, step)  # "on step spans and their children"
        start = at if at is not None else self.timeline.mark(stream)
        record = Record(name, parent, start, attrs, merge_key=merge_key, provisional=provisional)
        if self._memory is not None and memory:
            record.memory = self._memory.open(self._windows())
        with self.lock:
            parent.children.append(record)
            self.records.append(record)
        self._stack.append(record)
        if nvtx:
            self._nvtx_start(record)
        if notify:
            for listener in self._listeners:
                self.guard.call(listener.on_open, record)
        return record

    def close(
        self,
        record: Record,
        *,
        error: BaseException | None = None,
        end: int | None = None,
        stream: Any = None,
        seal: bool = True,
    ) -> None:
        """Close ``record`` and any record still open above it, at one mark (``end`` if given:
        a mark taken earlier, e.g. the last step's end for the loop). ``seal=False``: it may
        be reopened (``seal`` it when that chance has passed)."""
        if record not in self._stack:
            return
        mark = end if end is not None else self.timeline.mark(stream)
        while True:
            top = self._stack[-1]
            if error is not None:
                top.fail(error)
            if self._memory is not None and top.memory is not None:
                self._memory.close(top.memory, self._windows())
            with self.lock:
                self._stack.pop()
                top.end = mark
                top.sealed = seal or top is not record
                merge_children(top)
            self._nvtx_end(top)
            for listener in self._listeners:
                self.guard.call(listener.on_close, top)
            if top is record or not self._stack:
                return

    def discard(self, record: Record) -> None:
        """Forget an open record that turned out empty (a provisional stage); its memory peak
        moves to its parent."""
        if self._stack[-1] is not record or record.children or record.parent is None:
            return
        with self.lock:
            if record.children:  # a child arrived meanwhile: the record stays
                return
            self._stack.pop()
            record.parent.children.remove(record)
            self.records.remove(record)
        if record.memory is not None and record.parent.memory is not None:
            record.parent.memory.fold(record.memory.allocated_peak, record.memory.reserved_peak)
        self._nvtx_end(record)

    def reopen(self, record: Record) -> None:
        """Reopen the last closed child of the innermost record (text encoding resumes for the
        negative prompt after the gap it closed at)."""
        parent = self._stack[-1]
        if record.end is None or not parent.children or parent.children[-1] is not record:
            return
        with self.lock:
            if record.sealed:  # its span may have ended already: it stays closed
                return
            record.end = None
        if self._memory is not None and record.memory is not None:
            self._memory.open(self._windows())  # boundary: the gap's peak goes to the parents
            record.memory.allocated_end = record.memory.reserved_end = None
        self._stack.append(record)
        self._nvtx_start(record)
        for listener in self._listeners:
            self.guard.call(listener.on_open, record)

    def seal(self, record: Record | None) -> None:
        """A closed record will not be reopened: its span may end."""
        if record is not None and record.end is not None:
            record.sealed = True

    def where(self) -> tuple[str | None, int | None]:
        """The stage (a direct child of the root) and the denoising step open now."""
        stage = self._stack[1].name if len(self._stack) > 1 else None
        step = None
        for record in reversed(self._stack):
            if record.name == semconv.SPAN_DENOISE_STEP:
                value = record.attributes.get(semconv.DENOISE_STEP)
                step = value if isinstance(value, int) else None
                break
        return stage, step

    @contextmanager
    def span(
        self, name: str, attributes: dict[str, AttributeValue] | None = None
    ) -> Iterator[Record]:
        """A record around a block of the caller's code; an exception marks it failed."""
        record = self.open(name, attributes)
        try:
            yield record
        except BaseException as exc:
            self.close(record, error=exc)
            raise
        self.close(record)

    # -- ending ---------------------------------------------------------------------------

    def finish(self, error: BaseException | None = None) -> Outcome:
        """Close the root, resolve the timeline (one synchronization), end the remaining spans,
        run the finishers (metrics). Idempotent; never raises."""
        if self.outcome is not None:
            return self.outcome
        if self._stack:
            self.close(self.root, error=error)
        if self.root.end is None:  # off the stack unended: see below
            self.root.end = self.timeline.mark()
        for record in self.records:
            if record.end is None:
                # Opened but never closed from the stack: an exception raised between two of
                # our statements (a signal's handler raises wherever the thread is). Left
                # open, its span, and so every ancestor's and the root's, would never end.
                if error is not None:
                    record.fail(error)
                record.end = self.root.end
            record.sealed = True
        self.guard.call(self.timeline.resolve)
        if self._stream is not None:
            self.guard.call(self._stream.finish, self)
        for finisher in self._finishers:
            self.guard.call(finisher, self)
        root = self.root
        duration = 0.0
        if root.end is not None:
            duration = (self.timeline.time_ns(root.end) - self.timeline.time_ns(root.start)) / 1e9
        self.outcome = Outcome(self.run_id, duration, root.error_type)
        return self.outcome

    # -- internals ------------------------------------------------------------------------

    def _windows(self) -> list[MemoryWindow]:
        return [r.memory for r in self._stack if r.memory is not None]

    def _nvtx_start(self, record: Record) -> None:
        if self._nvtx is not None:
            record.nvtx_id = self.guard.call(self._nvtx.range_start, record.name)

    def _nvtx_end(self, record: Record) -> None:
        if self._nvtx is not None and record.nvtx_id is not None:
            self.guard.call(self._nvtx.range_end, record.nvtx_id)
            record.nvtx_id = None


def _thread_id() -> int:
    return threading.get_ident()


def _nvtx_module() -> Any:
    import torch

    return torch.cuda.nvtx
