"""WanPipelineInstrumentor: class-level instrumentation of diffusers' Wan pipelines, the
GenAI attributes on the root span, and the entry point the zero-code agent loads."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from importlib.metadata import entry_points, requires
from typing import Any

import diffusers
import pytest
import torch
from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from packaging.requirements import Requirement

from tests.pipeline.conftest import MetricBackend, SpanBackend
from tests.pipeline.helpers import build_tiny, by_name, call_tiny, span_tree
from wan_otel import semconv as sc
from wan_otel.pipeline import instrument, is_instrumented, uninstrument
from wan_otel.pipeline.instrumentation import instrument as per_instance
from wan_otel.pipeline.instrumentation import instrumentor as module
from wan_otel.pipeline.instrumentation.instrumentor import WanPipelineInstrumentor
from wan_otel.pipeline.instrumentation.wrappers import _CALL_PATCHES
from wan_otel.pipeline.runner.presets import TINY_A14B, build_preset

CLASSES = (diffusers.WanPipeline, diffusers.WanImageToVideoPipeline)
ORIGINAL_CALLS = {cls: vars(cls)["__call__"] for cls in CLASSES}


@pytest.fixture
def instrumentor() -> Iterator[WanPipelineInstrumentor]:
    started = WanPipelineInstrumentor()
    try:
        yield started
    finally:
        if started.is_instrumented_by_opentelemetry:
            started.uninstrument()
        assert {cls: vars(cls)["__call__"] for cls in CLASSES} == ORIGINAL_CALLS


def _label(span: ReadableSpan) -> str:
    branch = (span.attributes or {}).get(sc.TRANSFORMER_BRANCH)
    return f"{span.name}:{branch}" if branch else span.name


STEP = (
    sc.SPAN_DENOISE_STEP,
    ((f"{sc.SPAN_TRANSFORMER_FORWARD}:cond", ()), (f"{sc.SPAN_TRANSFORMER_FORWARD}:uncond", ())),
)
ONE_STEP_TREE = (
    sc.SPAN_GENERATE,
    (
        (sc.SPAN_TEXT_ENCODE, ()),
        (sc.SPAN_PREPROCESS, ()),
        (sc.SPAN_DENOISE, (STEP,)),
        (sc.SPAN_VAE_DECODE, ()),
    ),
)


def test_pipelines_made_before_and_after_instrument_each_make_the_span_tree(
    instrumentor: WanPipelineInstrumentor, spans: SpanBackend
) -> None:
    before = build_tiny()
    instrumentor.instrument(tracer_provider=spans.provider)
    after = build_tiny()
    assert not is_instrumented(before) and not is_instrumented(after)  # until their first call
    call_tiny(before, num_inference_steps=1)
    call_tiny(after, num_inference_steps=1)
    call_tiny(after, num_inference_steps=1)  # later calls: through the per-instance wrapper
    assert is_instrumented(before) and is_instrumented(after)
    assert span_tree(spans.spans(), _label) == [ONE_STEP_TREE] * 3


def test_providers_and_options_reach_every_pipeline(
    instrumentor: WanPipelineInstrumentor, spans: SpanBackend, metrics: MetricBackend
) -> None:
    instrumentor.instrument(
        tracer_provider=spans.provider,
        meter_provider=metrics.provider,
        run_id="fixed",
        record_prompt=True,
        model_name="tiny-wan",
        model_source="tiny",
    )
    call_tiny(build_tiny(), num_inference_steps=1)
    (root,) = by_name(spans.spans(), sc.SPAN_GENERATE)
    attributes = dict(root.attributes or {})
    assert attributes[sc.RUN_ID] == "fixed"
    assert attributes[sc.REQUEST_PROMPT] == "dance monkey"
    assert attributes[sc.MODEL_NAME] == "tiny-wan"
    assert attributes[sc.MODEL_SOURCE] == "tiny"
    assert [p.value for p in metrics.points(sc.METRIC_GENERATIONS)] == [1]


def test_root_carries_exactly_these_genai_attributes(
    instrumentor: WanPipelineInstrumentor, spans: SpanBackend
) -> None:
    instrumentor.instrument(tracer_provider=spans.provider, model_name="tiny-wan")
    pipe = build_tiny()
    call_tiny(pipe, num_inference_steps=1)  # seeded generator (7)
    call_tiny(pipe, num_inference_steps=1, generator=None)
    seeded, unseeded = by_name(spans.spans(), sc.SPAN_GENERATE)
    expected = {
        "gen_ai.operation.name": "generate_content",
        "gen_ai.provider.name": "diffusers",
        "gen_ai.output.type": "video",
        "gen_ai.request.model": "tiny-wan",
    }

    def genai(span: ReadableSpan) -> dict[str, Any]:
        return {k: v for k, v in (span.attributes or {}).items() if k.startswith("gen_ai.")}

    assert genai(seeded) == {**expected, "gen_ai.request.seed": 7}
    assert genai(unseeded) == expected
    # Only the root carries them, and none of the keys that do not fit appears anywhere.
    assert all(genai(s) == {} for s in spans.spans() if s.name != sc.SPAN_GENERATE)
    assert not {k for s in spans.spans() for k in (s.attributes or {})} & set(sc.GENAI_NOT_WRITTEN)


def test_image_to_video_pipelines_are_instrumented_too(
    instrumentor: WanPipelineInstrumentor, spans: SpanBackend
) -> None:
    from PIL import Image

    instrumentor.instrument(tracer_provider=spans.provider)
    pipe = build_tiny(image=True)
    assert isinstance(pipe, diffusers.WanImageToVideoPipeline)
    call_tiny(pipe, image=Image.new("RGB", (32, 32), (200, 30, 30)), num_inference_steps=1)
    (root,) = by_name(spans.spans(), sc.SPAN_GENERATE)
    assert (root.attributes or {})[sc.REQUEST_HAS_IMAGE] is True
    assert span_tree(spans.spans(), _label) == [ONE_STEP_TREE]


def test_uninstrument_leaves_no_spans_and_restores_the_classes(
    instrumentor: WanPipelineInstrumentor, spans: SpanBackend
) -> None:
    instrumentor.instrument(tracer_provider=spans.provider)
    assert all(vars(cls)["__call__"] is not ORIGINAL_CALLS[cls] for cls in CLASSES)
    pipe = build_tiny()
    call_tiny(pipe, num_inference_steps=1)
    assert spans.spans()
    instrumentor.uninstrument()
    spans.exporter.clear()
    call_tiny(pipe, num_inference_steps=1)
    assert spans.spans() == []
    assert not is_instrumented(pipe)
    assert {cls: vars(cls)["__call__"] for cls in CLASSES} == ORIGINAL_CALLS
    assert not set(CLASSES) & set(_CALL_PATCHES)  # the per-instance class wrapper is gone too


def test_instrument_and_uninstrument_are_idempotent(
    instrumentor: WanPipelineInstrumentor, spans: SpanBackend
) -> None:
    instrumentor.instrument(tracer_provider=spans.provider)
    wrappers = {cls: vars(cls)["__call__"] for cls in CLASSES}
    WanPipelineInstrumentor().instrument(tracer_provider=spans.provider)  # the same singleton
    assert {cls: vars(cls)["__call__"] for cls in CLASSES} == wrappers
    call_tiny(build_tiny(), num_inference_steps=1)
    assert len(by_name(spans.spans(), sc.SPAN_GENERATE)) == 1
    instrumentor.uninstrument()
    instrumentor.uninstrument()
    assert {cls: vars(cls)["__call__"] for cls in CLASSES} == ORIGINAL_CALLS
    # On again after off: pipelines are instrumented afresh.
    instrumentor.instrument(tracer_provider=spans.provider)
    call_tiny(build_tiny(), num_inference_steps=1)
    assert len(by_name(spans.spans(), sc.SPAN_GENERATE)) == 2


def test_pipelines_the_user_instrumented_keep_their_own_instrumentation(
    instrumentor: WanPipelineInstrumentor, spans: SpanBackend
) -> None:
    theirs = InMemorySpanExporter()
    their_provider = TracerProvider()
    their_provider.add_span_processor(SimpleSpanProcessor(theirs))
    pipe = build_tiny()
    instrument(pipe, their_provider, run_id="theirs")
    instrumentor.instrument(tracer_provider=spans.provider)
    call_tiny(pipe, num_inference_steps=1)
    assert spans.spans() == []
    assert len([s for s in theirs.get_finished_spans() if s.name == sc.SPAN_GENERATE]) == 1
    instrumentor.uninstrument()
    assert is_instrumented(pipe)
    call_tiny(pipe, num_inference_steps=1)
    assert len([s for s in theirs.get_finished_spans() if s.name == sc.SPAN_GENERATE]) == 2
    uninstrument(pipe)
    their_provider.shutdown()


def test_a_pipeline_the_user_uninstrumented_stays_so(
    instrumentor: WanPipelineInstrumentor, spans: SpanBackend
) -> None:
    instrumentor.instrument(tracer_provider=spans.provider)
    pipe = build_tiny()
    call_tiny(pipe, num_inference_steps=1)
    uninstrument(pipe)
    spans.exporter.clear()
    call_tiny(pipe, num_inference_steps=1)
    assert spans.spans() == [] and not is_instrumented(pipe)


def test_an_error_in_instrumenting_never_reaches_the_call(
    instrumentor: WanPipelineInstrumentor,
    spans: SpanBackend,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("broken instrumentation")

    monkeypatch.setattr(per_instance, "instrument", broken)
    instrumentor.instrument(tracer_provider=spans.provider)
    pipe = build_tiny()
    with caplog.at_level(logging.WARNING):
        frames = call_tiny(pipe, num_inference_steps=1).frames
        call_tiny(pipe, num_inference_steps=1)
    assert tuple(frames.shape) == (1, 9, 3, 32, 32)
    assert spans.spans() == []
    assert [r.message.count("broken instrumentation") for r in caplog.records] == [1]


def test_unknown_options_are_refused_and_nothing_is_patched(
    instrumentor: WanPipelineInstrumentor,
) -> None:
    with pytest.raises(TypeError, match="record_prompts"):
        instrumentor.instrument(record_prompts=True)
    assert not instrumentor.is_instrumented_by_opentelemetry
    assert {cls: vars(cls)["__call__"] for cls in CLASSES} == ORIGINAL_CALLS


def test_an_unsupported_diffusers_is_left_alone_even_when_the_agent_skips_the_check(
    instrumentor: WanPipelineInstrumentor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(module, "INSTRUMENTS", ("diffusers >= 999",))
    with caplog.at_level(logging.ERROR):
        instrumentor.instrument(skip_dep_check=True)  # what opentelemetry-instrument passes
    assert {cls: vars(cls)["__call__"] for cls in CLASSES} == ORIGINAL_CALLS
    assert any("diffusers >= 999" in r.getMessage() for r in caplog.records)


def test_the_agent_finds_the_instrumentor_through_its_entry_point() -> None:
    (found,) = [
        ep for ep in entry_points(group="opentelemetry_instrumentor") if ep.name == "wan_pipeline"
    ]
    assert found.load() is WanPipelineInstrumentor
    assert found.dist is not None and found.dist.name == "wan-otel"


def test_dependencies_name_the_diffusers_of_the_pipeline_extra() -> None:
    (declared,) = WanPipelineInstrumentor().instrumentation_dependencies()
    extra = [
        Requirement(r)
        for r in requires("wan-otel") or []
        if r.startswith(("diffusers", "diffusers "))
    ]
    assert [str(r.specifier) for r in extra] == [str(Requirement(declared).specifier)]
    assert get_dependency_conflicts([declared]) is None  # the installed diffusers is supported


def test_two_expert_pipelines_name_each_steps_expert(
    instrumentor: WanPipelineInstrumentor, spans: SpanBackend
) -> None:
    instrumentor.instrument(tracer_provider=spans.provider)
    torch.manual_seed(0)
    pipe = build_preset(TINY_A14B, device=torch.device("cpu"), dtype=torch.float32).pipe
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe) is diffusers.WanPipeline and pipe.transformer_2 is not None
    call_tiny(pipe, num_inference_steps=4)
    steps = by_name(spans.spans(), sc.SPAN_DENOISE_STEP)
    # UniPC, flow shift 3, 4 steps: timesteps 999, 900, 750, 500 about the boundary 875.
    experts = [(s.attributes or {})[sc.DENOISE_EXPERT] for s in steps]
    assert experts == ["transformer", "transformer", "transformer_2", "transformer_2"]
    (root,) = by_name(spans.spans(), sc.SPAN_GENERATE)
    assert (root.attributes or {})[sc.MODEL_BOUNDARY_RATIO] == 0.875
