"""Trace and span ids: minted ones go to the next root on their thread, and the rest are
random from the operating system, whatever a user does to the ``random`` module."""

from __future__ import annotations

import random
import threading

from opentelemetry.sdk.trace import TracerProvider

from wan_otel.pipeline.runner.trace_ids import MintedTraceIds


def test_seeding_the_random_module_does_not_repeat_trace_ids() -> None:
    """Users seed ``random`` for reproducible generations (``transformers.set_seed``): each
    run must still start a trace of its own."""
    ids = MintedTraceIds()
    drawn = set()
    for _ in range(3):
        random.seed(42)
        drawn.add((ids.generate_trace_id(), ids.generate_span_id(), ids.new_trace_id()))
    assert len(drawn) == 3
    assert all(t > 0 and s > 0 for t, s, _ in drawn)


def test_minted_ids_go_to_the_next_root_on_their_thread_only() -> None:
    ids = MintedTraceIds()
    tracer = TracerProvider(id_generator=ids).get_tracer("test")
    trace_id, span_id = ids.new_trace_id(), ids.new_span_id()
    other: list[int] = []
    with ids.minting(trace_id, span_id):
        thread = threading.Thread(
            target=lambda: other.append(tracer.start_span("elsewhere").get_span_context().trace_id)
        )
        thread.start()
        thread.join()
        root = tracer.start_span("root").get_span_context()
        after = tracer.start_span("next root").get_span_context()
    assert (root.trace_id, root.span_id) == (trace_id, span_id)
    assert after.trace_id != trace_id and other[0] != trace_id
