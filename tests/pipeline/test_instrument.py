"""instrument() / uninstrument() on a stock diffusers WanPipeline: the span tree, complete
attribute dicts, privacy, idempotence, and that removal leaves nothing behind."""

from __future__ import annotations

import hashlib
import itertools
import logging
import socket
from typing import Any

import diffusers
import pytest
import torch
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from tests.pipeline.conftest import MetricBackend, SpanBackend
from tests.pipeline.helpers import build_tiny, by_name, call_tiny, span_tree
from wan_otel import semconv as sc
from wan_otel.pipeline import instrument, is_instrumented, uninstrument
from wan_otel.pipeline.instrumentation.call_stages import CallObserver
from wan_otel.pipeline.instrumentation.hooks import HOOK_NAME
from wan_otel.pipeline.instrumentation.instrument import observer_of

RUN = "run-1"


def _label(span: ReadableSpan) -> str:
    branch = (span.attributes or {}).get(sc.TRANSFORMER_BRANCH)
    return f"{span.name}:{branch}" if branch else span.name


def _weights(module: torch.nn.Module) -> int:
    tensors = itertools.chain(module.parameters(), module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def test_three_step_cfg_run_makes_exactly_this_span_tree(
    tiny_pipe: Any, spans: SpanBackend
) -> None:
    instrument(tiny_pipe, spans.provider, run_id=RUN)
    call_tiny(tiny_pipe, num_inference_steps=3)
    step = (
        sc.SPAN_DENOISE_STEP,
        (
            (f"{sc.SPAN_TRANSFORMER_FORWARD}:cond", ()),
            (f"{sc.SPAN_TRANSFORMER_FORWARD}:uncond", ()),
        ),
    )
    assert span_tree(spans.spans(), _label) == [
        (
            sc.SPAN_GENERATE,
            (
                (sc.SPAN_TEXT_ENCODE, ()),
                (sc.SPAN_PREPROCESS, ()),
                (sc.SPAN_DENOISE, (step, step, step)),
                (sc.SPAN_VAE_DECODE, ()),
            ),
        )
    ]


def test_root_attributes_are_exactly_config_request_and_system(
    tiny_pipe: Any, spans: SpanBackend
) -> None:
    instrument(tiny_pipe, spans.provider, run_id=RUN, model_name="tiny-wan", model_source="tiny")
    call_tiny(tiny_pipe)
    (root,) = by_name(spans.spans(), sc.SPAN_GENERATE)
    expected: dict[str, Any] = {
        sc.RUN_ID: RUN,
        sc.TIMING_SOURCE: "host",
        sc.MODEL_NAME: "tiny-wan",
        sc.MODEL_SOURCE: "tiny",
        sc.MODEL_TASK: "ti2v",
        sc.MODEL_ARCHITECTURE: "DiT",
        sc.OFFLOAD_MODE: "none",
        sc.REQUEST_HEIGHT: 32,
        sc.REQUEST_WIDTH: 32,
        sc.REQUEST_NUM_FRAMES: 9,
        sc.REQUEST_NUM_STEPS: 3,
        sc.REQUEST_GUIDANCE: 5.0,
        sc.REQUEST_SEED: 7,
        sc.REQUEST_HAS_IMAGE: False,
        sc.REQUEST_PROMPT_LENGTH: len("dance monkey"),
        sc.REQUEST_PROMPT_SHA256: hashlib.sha256(b"dance monkey").hexdigest(),
        sc.DTYPE_TRANSFORMER: "float32",
        sc.DTYPE_TEXT_ENCODER: "float32",
        sc.DTYPE_VAE: "float32",
        sc.weight_bytes_key("text_encoder"): _weights(tiny_pipe.text_encoder),
        sc.weight_bytes_key("transformer"): _weights(tiny_pipe.transformer),
        sc.weight_bytes_key("vae"): _weights(tiny_pipe.vae),
        sc.DEVICE: "cpu",
        sc.TORCH_VERSION: torch.__version__,
        sc.DIFFUSERS_VERSION: diffusers.__version__,
        sc.HOST_NAME: socket.gethostname(),
        sc.GENAI_OPERATION_NAME: sc.GENAI_OPERATION,
        sc.GENAI_PROVIDER_NAME: sc.GENAI_PROVIDER,
        sc.GENAI_OUTPUT_TYPE: sc.GENAI_OUTPUT_VIDEO,
        sc.GENAI_REQUEST_MODEL: "tiny-wan",
        sc.GENAI_REQUEST_SEED: 7,
    }
    if torch.version.cuda:
        expected[sc.CUDA_VERSION] = torch.version.cuda
    assert dict(root.attributes or {}) == expected
    assert root.status.status_code is StatusCode.UNSET


def test_step_and_forward_attributes_are_exact(tiny_pipe: Any, spans: SpanBackend) -> None:
    instrument(tiny_pipe, spans.provider, run_id=RUN)
    call_tiny(tiny_pipe)
    step = by_name(spans.spans(), sc.SPAN_DENOISE_STEP)[1]
    assert dict(step.attributes or {}) == {
        sc.DENOISE_STEP: 1,
        sc.DENOISE_TIMESTEP: float(tiny_pipe.scheduler.timesteps[1]),
        sc.RUN_ID: RUN,
        sc.TIMING_SOURCE: "host",
    }
    forward = by_name(spans.spans(), sc.SPAN_TRANSFORMER_FORWARD)[3]
    assert dict(forward.attributes or {}) == {
        sc.COMPONENT_NAME: "transformer",
        sc.TRANSFORMER_BRANCH: "uncond",
        sc.DENOISE_STEP: 1,
        sc.RUN_ID: RUN,
        sc.TIMING_SOURCE: "host",
    }
    (loop,) = by_name(spans.spans(), sc.SPAN_DENOISE)
    assert dict(loop.attributes or {})[sc.DENOISE_NUM_STEPS] == 3


@pytest.mark.parametrize(("steps", "guidance", "per_step"), [(1, 5.0, 2), (4, 1.0, 1)])
def test_one_step_span_per_step_and_one_forward_per_cfg_pass(
    tiny_pipe: Any, spans: SpanBackend, steps: int, guidance: float, per_step: int
) -> None:
    instrument(tiny_pipe, spans.provider, run_id=RUN)
    call_tiny(tiny_pipe, num_inference_steps=steps, guidance_scale=guidance)
    done = spans.spans()
    step_spans = by_name(done, sc.SPAN_DENOISE_STEP)
    assert [s.attributes[sc.DENOISE_STEP] for s in step_spans] == list(range(steps))  # type: ignore[index]
    forwards = by_name(done, sc.SPAN_TRANSFORMER_FORWARD)
    assert len(forwards) == steps * per_step
    branches = [f.attributes[sc.TRANSFORMER_BRANCH] for f in forwards]  # type: ignore[index]
    assert branches == (["cond", "uncond"] if per_step == 2 else ["cond"]) * steps


def test_every_span_carries_the_run_id_and_nests_in_time(
    tiny_pipe: Any, spans: SpanBackend
) -> None:
    instrument(tiny_pipe, spans.provider, run_id=RUN)
    call_tiny(tiny_pipe)
    done = spans.spans()
    by_id = {s.context.span_id: s for s in done}
    for span in done:
        assert (span.attributes or {})[sc.RUN_ID] == RUN
        assert span.start_time is not None and span.end_time is not None
        assert span.start_time <= span.end_time
        if span.parent is not None:
            parent = by_id[span.parent.span_id]
            assert parent.start_time <= span.start_time <= span.end_time <= parent.end_time  # type: ignore[operator]
    loop = by_name(done, sc.SPAN_DENOISE)[0]
    steps = by_name(done, sc.SPAN_DENOISE_STEP)
    assert loop.start_time == steps[0].start_time and loop.end_time == steps[-1].end_time


def test_each_call_is_a_generation_with_a_fresh_run_id(tiny_pipe: Any, spans: SpanBackend) -> None:
    ids = iter(["first", "second"])
    instrument(tiny_pipe, spans.provider, run_id=lambda: next(ids))
    call_tiny(tiny_pipe, num_inference_steps=1)
    call_tiny(tiny_pipe, num_inference_steps=1)
    roots = by_name(spans.spans(), sc.SPAN_GENERATE)
    assert [r.attributes[sc.RUN_ID] for r in roots] == ["first", "second"]  # type: ignore[index]
    assert roots[0].context.trace_id != roots[1].context.trace_id


def test_root_nests_under_the_callers_active_span(tiny_pipe: Any, spans: SpanBackend) -> None:
    instrument(tiny_pipe, spans.provider, run_id=RUN)
    tracer = spans.provider.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        call_tiny(tiny_pipe, num_inference_steps=1)
    (root,) = by_name(spans.spans(), sc.SPAN_GENERATE)
    assert root.parent is not None and root.parent.span_id == request.get_span_context().span_id


def test_prompt_text_only_with_record_prompt(spans: SpanBackend) -> None:
    private, public = build_tiny(), build_tiny()
    instrument(private, spans.provider, run_id="private")
    instrument(public, spans.provider, run_id="public", record_prompt=True)
    call_tiny(private, num_inference_steps=1)
    call_tiny(public, num_inference_steps=1)
    roots = {
        r.attributes[sc.RUN_ID]: r.attributes for r in by_name(spans.spans(), sc.SPAN_GENERATE)
    }  # type: ignore[index]
    assert sc.REQUEST_PROMPT not in roots["private"]
    assert "dance monkey" not in repr(
        [dict(s.attributes or {}) for s in spans.spans() if s.attributes[sc.RUN_ID] == "private"]
    )  # type: ignore[index]
    assert roots["public"][sc.REQUEST_PROMPT] == "dance monkey"


def test_instrument_is_idempotent(tiny_pipe: Any, spans: SpanBackend) -> None:
    instrument(tiny_pipe, spans.provider, run_id=RUN)
    observer = observer_of(tiny_pipe)
    instrument(tiny_pipe, spans.provider, run_id="other")
    assert observer_of(tiny_pipe) is observer
    call_tiny(tiny_pipe, num_inference_steps=2)
    assert len(by_name(spans.spans(), sc.SPAN_GENERATE)) == 1
    assert len(by_name(spans.spans(), sc.SPAN_TRANSFORMER_FORWARD)) == 4
    assert list(tiny_pipe.transformer._diffusers_hook.hooks).count(HOOK_NAME) == 1


def test_uninstrument_restores_everything_and_leaves_no_spans(
    tiny_pipe: Any, spans: SpanBackend
) -> None:
    cls_call = type(tiny_pipe).__dict__["__call__"]
    assert not getattr(cls_call, "_wan_otel_wrapper", False)
    instrument(tiny_pipe, spans.provider, run_id=RUN)
    assert getattr(type(tiny_pipe).__dict__["__call__"], "_wan_otel_wrapper", False)
    call_tiny(tiny_pipe, num_inference_steps=1)
    uninstrument(tiny_pipe)
    spans.exporter.clear()
    call_tiny(tiny_pipe, num_inference_steps=2)
    assert spans.spans() == []
    assert not is_instrumented(tiny_pipe)
    assert type(tiny_pipe).__dict__["__call__"] is cls_call
    for name in ("text_encoder", "transformer", "vae"):
        module = getattr(tiny_pipe, name)
        assert "forward" not in vars(module), name
        assert "to" not in vars(module), name
        registry = vars(module).get("_diffusers_hook")
        assert registry is None or registry.get_hook(HOOK_NAME) is None
    assert "decode" not in vars(tiny_pipe.vae)
    assert "step" not in vars(tiny_pipe.scheduler)
    uninstrument(tiny_pipe)  # a second time: nothing to do


def test_only_instrumented_instances_are_observed(spans: SpanBackend) -> None:
    observed, other = build_tiny(), build_tiny()
    instrument(observed, spans.provider, run_id=RUN)
    call_tiny(other, num_inference_steps=1)
    assert spans.spans() == []
    call_tiny(observed, num_inference_steps=1)
    assert len(by_name(spans.spans(), sc.SPAN_GENERATE)) == 1


def test_outputs_are_unchanged_by_instrumentation(spans: SpanBackend) -> None:
    bare, observed = build_tiny(), build_tiny()
    instrument(observed, spans.provider, run_id=RUN)
    assert torch.equal(call_tiny(bare).frames, call_tiny(observed).frames)


def test_the_users_step_callback_still_runs(tiny_pipe: Any, spans: SpanBackend) -> None:
    seen: list[int] = []

    def callback(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        seen.append(step)
        return kwargs

    instrument(tiny_pipe, spans.provider, run_id=RUN)
    call_tiny(tiny_pipe, callback_on_step_end=callback)
    assert seen == [0, 1, 2]
    assert len(by_name(spans.spans(), sc.SPAN_DENOISE_STEP)) == 3


def test_image_to_video_has_image_and_preprocess(spans: SpanBackend) -> None:
    from PIL import Image

    pipe = build_tiny(image=True)
    instrument(pipe, spans.provider, run_id=RUN)
    call_tiny(pipe, image=Image.new("RGB", (32, 32), (200, 30, 30)), num_inference_steps=2)
    done = spans.spans()
    (root,) = by_name(done, sc.SPAN_GENERATE)
    assert root.attributes[sc.REQUEST_HAS_IMAGE] is True  # type: ignore[index]
    stages = [name for name, _ in span_tree(done)[0][1]]
    assert stages == [sc.SPAN_TEXT_ENCODE, sc.SPAN_PREPROCESS, sc.SPAN_DENOISE, sc.SPAN_VAE_DECODE]


def test_a_vae_failure_ends_spans_with_error_and_reraises(
    tiny_pipe: Any, spans: SpanBackend, metrics: MetricBackend
) -> None:
    def explode(module: Any, args: Any) -> None:
        raise RuntimeError("decoder exploded")

    tiny_pipe.vae.decoder.register_forward_pre_hook(explode)
    instrument(tiny_pipe, spans.provider, metrics.provider, run_id=RUN)
    with pytest.raises(RuntimeError, match="decoder exploded"):
        call_tiny(tiny_pipe)
    done = spans.spans()
    failed = {s.name for s in done if s.status.status_code is StatusCode.ERROR}
    assert failed == {sc.SPAN_GENERATE, sc.SPAN_VAE_DECODE}
    for name in failed:
        (span,) = by_name(done, name)
        assert span.attributes[sc.ERROR_TYPE] == "RuntimeError"  # type: ignore[index]
        assert "decoder exploded" in (span.status.description or "")
    assert len(by_name(done, sc.SPAN_DENOISE_STEP)) == 3
    (failure,) = metrics.points(sc.METRIC_FAILURES)
    assert failure.value == 1 and failure.attributes[sc.LABEL_ERROR_TYPE] == "RuntimeError"
    # The pipeline recovers: the next call is observed normally.
    tiny_pipe.vae.decoder._forward_pre_hooks.clear()
    spans.exporter.clear()
    call_tiny(tiny_pipe, num_inference_steps=1)
    assert all(s.status.status_code is StatusCode.UNSET for s in spans.spans())


def test_an_error_in_our_code_is_logged_once_counted_and_never_reaches_the_model(
    tiny_pipe: Any,
    spans: SpanBackend,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    expected = call_tiny(build_tiny()).frames

    def broken(self: CallObserver, component: str, branch: str | None) -> None:
        raise ValueError("bug in wan-otel")

    monkeypatch.setattr(CallObserver, "denoiser_start", broken)
    instrument(tiny_pipe, spans.provider, run_id=RUN)
    with caplog.at_level(logging.WARNING, logger="wan_otel.pipeline"):
        result = call_tiny(tiny_pipe)
    assert torch.equal(result.frames, expected)
    observer = observer_of(tiny_pipe)
    assert observer is not None and observer.guard.errors == 6  # 3 steps x 2 forwards
    assert len([r for r in caplog.records if "bug in wan-otel" in r.getMessage()]) == 1
    assert len(by_name(spans.spans(), sc.SPAN_GENERATE)) == 1  # the rest is still traced


def test_metrics_per_generation_with_bounded_labels(
    tiny_pipe: Any, spans: SpanBackend, metrics: MetricBackend
) -> None:
    instrument(tiny_pipe, spans.provider, metrics.provider, run_id=RUN, model_name="tiny-wan")
    call_tiny(tiny_pipe)
    labels = {
        sc.LABEL_MODEL: "tiny-wan",
        sc.LABEL_RESOLUTION: "32x32",
        sc.LABEL_FRAMES: "9",
        sc.LABEL_OFFLOAD: "none",
        sc.LABEL_WORLD_SIZE: "1",
    }
    (generation,) = metrics.points(sc.METRIC_GENERATION_DURATION)
    assert dict(generation.attributes) == labels and generation.count == 1
    assert list(generation.explicit_bounds) == list(sc.DURATION_BUCKETS_S)
    (steps,) = metrics.points(sc.METRIC_STEP_DURATION)
    assert steps.count == 3
    stages = {
        p.attributes[sc.LABEL_STAGE]: p.count for p in metrics.points(sc.METRIC_STAGE_DURATION)
    }
    assert stages == {
        "pipeline.preprocess": 1,
        "text_encoder.encode": 1,
        "denoise.loop": 1,
        "vae.decode": 1,
    }
    (done,) = metrics.points(sc.METRIC_GENERATIONS)
    assert done.value == 1 and done.attributes[sc.LABEL_STATUS] == "ok"
    (frames,) = metrics.points(sc.METRIC_FRAMES)
    assert frames.value == 9
    for name in (sc.METRIC_GENERATION_DURATION, sc.METRIC_STAGE_DURATION, sc.METRIC_STEP_DURATION,
                 sc.METRIC_GENERATIONS, sc.METRIC_FRAMES):  # fmt: skip
        for point in metrics.points(name):
            assert sc.RUN_ID not in point.attributes and RUN not in point.attributes.values()


def test_two_pipelines_in_two_threads_make_two_separate_trees(spans: SpanBackend) -> None:
    import threading

    pipes = {"left": build_tiny(), "right": build_tiny()}
    for run_id, pipe in pipes.items():
        instrument(pipe, spans.provider, run_id=run_id)
    threads = [
        threading.Thread(target=call_tiny, args=(pipe,), kwargs={"num_inference_steps": 2})
        for pipe in pipes.values()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = spans.spans()
    for run_id in pipes:
        mine = [s for s in done if (s.attributes or {})[sc.RUN_ID] == run_id]
        assert [name for name, _ in span_tree(mine)] == [sc.SPAN_GENERATE]
        assert len(by_name(mine, sc.SPAN_DENOISE_STEP)) == 2
        assert len(by_name(mine, sc.SPAN_TRANSFORMER_FORWARD)) == 4
