"""Where a signal stopped a run, on its root span: the step in progress, or, when the signal
came between two steps (in the step callback or the loop's own work), the step it kept from
starting. The real run scope and tiny pipeline; the signal's exception raised where the
handler would raise it."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest
import torch

from tests.pipeline.conftest import SpanBackend
from tests.pipeline.helpers import by_name, call_tiny
from wan_otel import semconv as sc
from wan_otel.pipeline import instrument, use_generation
from wan_otel.pipeline.instrumentation.guard import Guard
from wan_otel.pipeline.instrumentation.span_stream import SpanStream
from wan_otel.pipeline.runner.interrupt import RunInterrupted
from wan_otel.pipeline.runner.run_scope import RunPlan, run_scope


def _interrupted_run(
    pipe: Any, spans: SpanBackend, **call: Any
) -> tuple[dict[str, Any], list[int]]:
    instrument(pipe, spans.provider, run_id="stopped")
    plan = RunPlan("stopped", torch.device("cpu"), None)
    stream = SpanStream(spans.provider.get_tracer("t"))
    with (
        pytest.raises(RunInterrupted),
        run_scope(plan, stream, guard=Guard(), flush=lambda: None) as generation,
        use_generation(pipe, generation),
    ):
        call_tiny(pipe, num_inference_steps=4, **call)
    done = spans.spans()
    (root,) = by_name(done, sc.SPAN_GENERATE)
    steps = sorted(int(s.attributes[sc.DENOISE_STEP]) for s in by_name(done, sc.SPAN_DENOISE_STEP))  # type: ignore[index]
    return dict(root.attributes or {}), steps


def _raise_at(step: int) -> Callable[..., dict[str, Any]]:
    def callback(p: Any, index: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if index == step:
            raise RunInterrupted(signal.SIGTERM)
        return kwargs

    return callback


def test_a_signal_between_two_steps_names_the_step_it_kept_from_starting(
    tiny_pipe: Any, spans: SpanBackend
) -> None:
    root, steps = _interrupted_run(tiny_pipe, spans, callback_on_step_end=_raise_at(1))
    assert root[sc.RUN_INTERRUPT_SIGNAL] == "SIGTERM"
    assert root[sc.RUN_INTERRUPT_STAGE] == sc.SPAN_DENOISE
    assert root[sc.RUN_INTERRUPT_STEP] == 2  # steps 0 and 1 ran whole
    assert steps == [0, 1]


def test_a_signal_after_the_last_step_names_no_step(tiny_pipe: Any, spans: SpanBackend) -> None:
    root, steps = _interrupted_run(tiny_pipe, spans, callback_on_step_end=_raise_at(3))
    assert root[sc.RUN_INTERRUPT_STAGE] == sc.SPAN_DENOISE
    assert sc.RUN_INTERRUPT_STEP not in root  # no fifth step of four was kept from starting
    assert steps == [0, 1, 2, 3]


def test_a_signal_inside_a_step_names_that_step(tiny_pipe: Any, spans: SpanBackend) -> None:
    forwards = 0

    def stop_in_step_two(module: torch.nn.Module, args: Any) -> None:
        nonlocal forwards
        forwards += 1
        if forwards == 6:  # two forwards a step (guidance): the second of step 2
            raise RunInterrupted(signal.SIGINT)

    handle = tiny_pipe.transformer.register_forward_pre_hook(stop_in_step_two)
    try:
        root, steps = _interrupted_run(tiny_pipe, spans)
    finally:
        handle.remove()
    assert root[sc.RUN_INTERRUPT_SIGNAL] == "SIGINT"
    assert root[sc.RUN_INTERRUPT_STEP] == 2
    assert steps == [0, 1, 2]  # the interrupted step is written, failed
