"""Span records: what a span will be (name, parent, marks, attributes, outcome), and the
folding of events that come in hundreds.

Weight moves of group and sequential offloading, and the collectives of a context-parallel
forward, are opened with a ``merge_key``; when their parent closes, siblings with the same key
become one record whose duration is the sum of theirs, keeping each one's marks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wan_otel import semconv
from wan_otel.pipeline.instrumentation.memory import MemoryWindow

AttributeValue = str | bool | int | float | tuple[int, ...] | tuple[float, ...]

MERGED_MOVES = "moves"
"""Record-local count of weight moves merged into one transfer record (see ``merge_key``)."""


@dataclass(eq=False)
class Record:
    """A span to be: name, parent, marks, attributes, outcome."""

    name: str
    parent: Record | None
    start: int
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    end: int | None = None
    children: list[Record] = field(default_factory=list)
    error_type: str | None = None
    error_message: str | None = None
    memory: MemoryWindow | None = None
    merge_key: tuple[str, ...] | None = None
    intervals: list[tuple[int, int]] | None = None
    """Set on merged transfer records: the (start, end) marks of each move."""
    deferred: dict[str, Any] = field(default_factory=dict)
    """Attribute values read only after the timeline resolves (e.g. a timestep tensor on the
    GPU: reading it inside the loop would synchronize)."""
    nvtx_id: int | None = None
    provisional: bool = False
    """Opened on speculation (a preprocess gap): it becomes a span only once it has children
    or is closed; until then ``discard`` may drop it."""
    sealed: bool = True
    """False while a closed record may still be reopened: its span must not end yet."""
    merged: bool = False
    """Folded into a sibling (merged moves): never a span of its own."""

    def fail(self, exc: BaseException) -> None:
        if self.error_type is None:
            self.error_type = type(exc).__name__
            self.error_message = str(exc)[:256]


SUMMED = (semconv.TRANSFER_BYTES, semconv.COLLECTIVE_BYTES)
"""Attributes that add up when records merge."""


def merge_children(parent: Record) -> None:
    """Fold sibling records with one ``merge_key`` into the first of them."""
    firsts: dict[tuple[str, ...], Record] = {}
    kept: list[Record] = []
    for child in parent.children:
        key = child.merge_key
        if key is None:
            kept.append(child)
            continue
        first = firsts.get(key)
        child.merged = first is not None
        if first is None:
            firsts[key] = child
            child.intervals = [(child.start, child.end if child.end is not None else child.start)]
            child.deferred[MERGED_MOVES] = 1
            kept.append(child)
            continue
        assert first.intervals is not None
        first.intervals.append((child.start, child.end if child.end is not None else child.start))
        first.deferred[MERGED_MOVES] += 1
        for summed in SUMMED:
            nbytes = child.attributes.get(summed)
            if isinstance(nbytes, int):
                total = first.attributes.get(summed, 0)
                first.attributes[summed] = (total if isinstance(total, int) else 0) + nbytes
        if child.error_type is not None and first.error_type is None:
            first.error_type, first.error_message = child.error_type, child.error_message
        if first.memory is not None and child.memory is not None:
            first.memory = first.memory.merge(child.memory)
        first.end = child.end
    parent.children = kept
