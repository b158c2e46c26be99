"""Trace and span ids decided before a root span exists, handed to the SDK when it starts.

A server answers a job's trace id long before the job's root span starts; the ranks of a
multi-GPU run must all know rank 0's root span before any of them generates. Both mint the
ids first and let ``MintedTraceIds`` (the tracer provider's id generator) give them to the
next root span started inside ``minting``, on that thread.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator

from opentelemetry import trace
from opentelemetry.sdk.trace.id_generator import IdGenerator


class MintedTraceIds(IdGenerator):
    """Random ids, except that ids minted earlier go to the next root started inside
    ``minting`` on the same thread.

    Random from the operating system, not from the ``random`` module as the SDK's default
    generator draws them: users seed that module for reproducible generations
    (``transformers.set_seed``, ``accelerate.utils.set_seed``), and then every run would get
    the trace ids of the last one, merging different runs into one trace in a backend."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()
        self._random = random.SystemRandom()

    def _draw(self, bits: int, invalid: int) -> int:
        value = self._random.getrandbits(bits)
        while value == invalid:
            value = self._random.getrandbits(bits)
        return value

    def new_trace_id(self) -> int:
        return self._draw(128, trace.INVALID_TRACE_ID)

    def new_span_id(self) -> int:
        return self._draw(64, trace.INVALID_SPAN_ID)

    def is_trace_id_random(self) -> bool:
        return True

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
        return self.new_trace_id()

    def generate_span_id(self) -> int:
        pending = getattr(self._local, "span_id", None)
        if pending is not None:
            self._local.span_id = None
            return int(pending)
        return self.new_span_id()
