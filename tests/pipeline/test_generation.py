"""Records to spans: nesting, error unwinding, provisional stages, merged moves, clamping."""

from __future__ import annotations

import threading

import pytest
from opentelemetry.trace import StatusCode

from tests.pipeline.conftest import SpanBackend
from tests.pipeline.helpers import by_name, span_tree
from wan_otel import semconv as sc
from wan_otel.pipeline.instrumentation.generation import Generation
from wan_otel.pipeline.instrumentation.span_stream import SpanStream
from wan_otel.pipeline.instrumentation.timing import HostTimeline
from wan_otel.store.run_store import check_run_id, new_run_id


class _ScriptedTimeline(HostTimeline):
    """Marks at times the test chooses (ns since an epoch of 0)."""

    def __init__(self, times: list[int]) -> None:
        super().__init__()
        self._times = iter(times)
        self._stamps: list[int] = []

    def mark(self, stream: object = None) -> int:
        self._stamps.append(next(self._times))
        return len(self._stamps) - 1

    def time_ns(self, mark: int) -> int:
        return self._stamps[mark]


def _generation(spans: SpanBackend, times: list[int] | None = None) -> Generation:
    timeline = _ScriptedTimeline(times) if times is not None else HostTimeline()
    return Generation(timeline, run_id="gen", stream=SpanStream(spans.provider.get_tracer("t")))


def test_an_exception_fails_every_record_it_unwinds(spans: SpanBackend) -> None:
    generation = _generation(spans)
    stage = generation.open(sc.SPAN_DENOISE)
    generation.open(sc.SPAN_DENOISE_STEP, {sc.DENOISE_STEP: 0})
    generation.open(sc.SPAN_TRANSFORMER_FORWARD)
    generation.close(stage, error=MemoryError("out of memory"))
    generation.finish(MemoryError("out of memory"))
    done = spans.spans()
    assert {s.name for s in done if s.status.status_code is StatusCode.ERROR} == {
        sc.SPAN_GENERATE,
        sc.SPAN_DENOISE,
        sc.SPAN_DENOISE_STEP,
        sc.SPAN_TRANSFORMER_FORWARD,
    }
    (forward,) = by_name(done, sc.SPAN_TRANSFORMER_FORWARD)
    assert forward.attributes[sc.DENOISE_STEP] == 0  # inherited from its step  # type: ignore[index]
    assert forward.attributes[sc.ERROR_TYPE] == "MemoryError"  # type: ignore[index]


def test_discard_and_reopen(spans: SpanBackend) -> None:
    generation = _generation(spans)
    text = generation.open(sc.SPAN_TEXT_ENCODE)
    generation.close(text)
    gap = generation.open(sc.SPAN_PREPROCESS)
    generation.discard(gap)
    generation.reopen(text)
    generation.close(text)
    generation.finish()
    assert span_tree(spans.spans()) == [(sc.SPAN_GENERATE, ((sc.SPAN_TEXT_ENCODE, ()),))]


def test_merged_moves_last_the_sum_of_their_durations(spans: SpanBackend) -> None:
    # root 0; forward 100; moves 110-120, 150-180, 200-205; forward ends 300; root 400
    generation = _generation(spans, [0, 100, 110, 120, 150, 180, 200, 205, 300, 400])
    forward = generation.open(sc.SPAN_TRANSFORMER_FORWARD)
    for _ in range(3):
        move = generation.open(
            sc.SPAN_WEIGHT_TRANSFER, {sc.TRANSFER_BYTES: 10}, merge_key=("transformer", "to_device")
        )
        generation.close(move)
    generation.close(forward)
    generation.finish()
    (transfer,) = by_name(spans.spans(), sc.SPAN_WEIGHT_TRANSFER)
    assert (transfer.start_time, transfer.end_time) == (110, 110 + 10 + 30 + 5)
    assert transfer.attributes[sc.TRANSFER_MOVES] == 3  # type: ignore[index]
    assert transfer.attributes[sc.TRANSFER_BYTES] == 30  # type: ignore[index]


def test_children_are_clamped_into_their_parent(spans: SpanBackend) -> None:
    # A child whose marks straddle its parent's (events on two streams) is clamped.
    generation = _generation(spans, [100, 150, 140, 200, 210, 300])  # root starts at 100
    parent = generation.open(sc.SPAN_DENOISE)  # 150
    child_start = generation.timeline.mark()  # 140: before its parent
    child = generation.open(sc.SPAN_DENOISE_STEP, at=child_start)
    generation.close(child)  # 200
    generation.close(parent)  # 210
    generation.finish()  # 300
    (step,) = by_name(spans.spans(), sc.SPAN_DENOISE_STEP)
    assert (step.start_time, step.end_time) == (150, 200)


def test_new_run_ids_are_valid_store_folder_names_and_distinct() -> None:
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50
    for run_id in ids:
        assert check_run_id(run_id) == run_id


class _InterruptOnRelease:
    """A lock that raises ``KeyboardInterrupt`` on its release once armed, on the arming
    thread: Ctrl-C arriving between two statements of ``Generation.open``, after the record
    joined its parent and before it joined the stack."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.armed_on: int | None = None

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
        if self.armed_on == threading.get_ident():
            self.armed_on = None
            raise KeyboardInterrupt


def test_a_record_an_interrupt_left_half_open_still_ends_with_every_ancestor(
    spans: SpanBackend,
) -> None:
    generation = _generation(spans)
    stage = generation.open(sc.SPAN_DENOISE)
    lock = _InterruptOnRelease()
    generation.lock = lock  # type: ignore[assignment]
    lock.armed_on = threading.get_ident()
    with pytest.raises(KeyboardInterrupt) as interrupted:
        generation.open(sc.SPAN_DENOISE_STEP, {sc.DENOISE_STEP: 0})
    generation.close(stage, error=interrupted.value)
    generation.finish(interrupted.value)
    done = spans.spans()
    assert {s.name for s in done} == {sc.SPAN_GENERATE, sc.SPAN_DENOISE, sc.SPAN_DENOISE_STEP}
    (step,) = by_name(done, sc.SPAN_DENOISE_STEP)
    assert step.status.status_code is StatusCode.ERROR
    assert step.attributes[sc.ERROR_TYPE] == "KeyboardInterrupt"  # type: ignore[index]
