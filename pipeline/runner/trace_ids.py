"""Trace and span ids decided before a root span exists, handed to the SDK when it starts.

A server answers a job's trace id long before the job's root span starts; the ranks of a
multi-GPU run must all know rank 0's root span before any of them generates. Both mint the
ids first and let ``MintedTraceIds`` (the tracer provider's id generator) give them to the
next root span started inside ``minting``, on that thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator


class MintedTraceIds(RandomIdGenerator):
    """Random ids, except that ids minted earlier go to the next root started inside
    ``minting`` on the same thread."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def new_trace_id(self) -> int:
        return super().generate_trace_id()

    def new_span_id(self) -> int:
        return super().generate_span_id()

    @contextlib.contextmanager
    def minting(self, trace_id: int | None, span_id: int | None = None) -> Iterator[None]:
        """The next trace root started on this thread within the block gets these ids."""
        self._local.trace_id, self._local.span_id = trace_id, span_id
        try:
            yield
        finally:
            self._local.trace_id = self._local.span_id = None

    def generate_trace_id(self) -> int:
        pending = getattr(self._local, "trace_id", None)
        if pending is not None:
            self._local.trace_id = None  # one trace root per generation
            return int(pending)
        return super().generate_trace_id()

    def generate_span_id(self) -> int:
        pending = getattr(self._local, "span_id", None)
        if pending is not None:
            self._local.span_id = None
            return int(pending)
        return super().generate_span_id()
